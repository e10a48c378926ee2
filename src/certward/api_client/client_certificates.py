"""An environment's outgoing certificates: client certificates and trusted authorities."""

from __future__ import annotations

from collections.abc import Sequence

from certward.api_client.payloads import UNSET, JsonObject, Unset, UploadFile
from certward.api_client.transport import PAGE_SIZE, ApiTransport, add_password


class ClientCertificatesApi(ApiTransport):
    """Client certificates (paged listing, staged changes) and certificate authorities."""

    def upload_client_certificate(
        self,
        app: str,
        env: str,
        *,
        file: UploadFile,
        password: bytes | None = None,
        key: UploadFile | None = None,
        chain: UploadFile | None = None,
        pins: Sequence[str] = (),
        call_name: str | None = None,
        description: str | None = None,
    ) -> JsonObject:
        """Upload a PKCS12 file (with its password) or a PEM/DER certificate with ``key``."""
        files = [("file", (file.filename, file.data))]
        if key is not None:
            files.append(("key", (key.filename, key.data)))
        if chain is not None:
            files.append(("chain", (chain.filename, chain.data)))
        fields = [("pins", pin) for pin in pins]
        if call_name is not None:
            fields.append(("call_name", call_name))
        if description is not None:
            fields.append(("description", description))
        add_password(files, fields, password)
        return self._object(
            self._request(
                "POST",
                "/api/v1/apps/{app}/environments/{env}/client-certificates",
                files=files,
                fields=fields,
                app=app,
                env=env,
            )
        )

    def list_client_certificates(self, app: str, env: str) -> list[JsonObject]:
        """Every client certificate of the environment, reading page after page by id."""
        certificates: list[JsonObject] = []
        after: str | None = None
        while True:
            page = self._list(
                self._request(
                    "GET",
                    "/api/v1/apps/{app}/environments/{env}/client-certificates",
                    params={"limit": PAGE_SIZE, "after": after},
                    app=app,
                    env=env,
                )
            )
            certificates += page
            if len(page) < PAGE_SIZE:
                return certificates
            after = str(page[-1]["id"])

    def get_client_certificate(self, app: str, env: str, certificate_id: str) -> JsonObject:
        return self._object(
            self._request(
                "GET",
                "/api/v1/apps/{app}/environments/{env}/client-certificates/{certificate_id}",
                app=app,
                env=env,
                certificate_id=certificate_id,
            )
        )

    def update_client_certificate(
        self,
        app: str,
        env: str,
        certificate_id: str,
        *,
        pins: Sequence[str] | None = None,
        call_name: str | Unset | None = UNSET,
        description: str | None = None,
    ) -> JsonObject:
        """Replace the pins, set or clear (``None``) the call name, change the description."""
        body: JsonObject = {}
        if pins is not None:
            body["pins"] = list(pins)
        if call_name is not UNSET:
            body["call_name"] = call_name
        if description is not None:
            body["description"] = description
        return self._object(
            self._request(
                "PATCH",
                "/api/v1/apps/{app}/environments/{env}/client-certificates/{certificate_id}",
                body=body,
                app=app,
                env=env,
                certificate_id=certificate_id,
            )
        )

    def delete_client_certificate(self, app: str, env: str, certificate_id: str) -> None:
        self._request(
            "DELETE",
            "/api/v1/apps/{app}/environments/{env}/client-certificates/{certificate_id}",
            app=app,
            env=env,
            certificate_id=certificate_id,
        )

    def upload_authority(self, app: str, env: str, *, file: UploadFile) -> JsonObject:
        return self._object(
            self._request(
                "POST",
                "/api/v1/apps/{app}/environments/{env}/certificate-authorities",
                files=[("file", (file.filename, file.data))],
                app=app,
                env=env,
            )
        )

    def list_authorities(self, app: str, env: str) -> list[JsonObject]:
        return self._list(
            self._request(
                "GET",
                "/api/v1/apps/{app}/environments/{env}/certificate-authorities",
                app=app,
                env=env,
            )
        )

    def get_authority(self, app: str, env: str, authority_id: str) -> JsonObject:
        return self._object(
            self._request(
                "GET",
                "/api/v1/apps/{app}/environments/{env}/certificate-authorities/{authority_id}",
                app=app,
                env=env,
                authority_id=authority_id,
            )
        )

    def delete_authority(self, app: str, env: str, authority_id: str) -> None:
        self._request(
            "DELETE",
            "/api/v1/apps/{app}/environments/{env}/certificate-authorities/{authority_id}",
            app=app,
            env=env,
            authority_id=authority_id,
        )
