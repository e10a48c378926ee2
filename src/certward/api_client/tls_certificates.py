"""Custom-domain TLS certificates (upload, CSR, ACME, replace) and an environment's domains."""

from __future__ import annotations

from collections.abc import Sequence

from certward.api_client.payloads import JsonObject, UploadFile
from certward.api_client.transport import ApiTransport, add_password


class TlsCertificatesApi(ApiTransport):
    """Custom-domain TLS certificates and domains."""

    def upload_tls_certificate(
        self,
        app: str,
        *,
        certificate: UploadFile,
        private_key: UploadFile,
        chain: UploadFile | None = None,
        password: bytes | None = None,
        description: str | None = None,
    ) -> JsonObject:
        files = [
            ("certificate", (certificate.filename, certificate.data)),
            ("private_key", (private_key.filename, private_key.data)),
        ]
        if chain is not None:
            files.append(("chain", (chain.filename, chain.data)))
        fields = [] if description is None else [("description", description)]
        add_password(files, fields, password)
        return self._object(
            self._request(
                "POST", "/api/v1/apps/{app}/tls-certificates", files=files, fields=fields, app=app
            )
        )

    def create_tls_csr(
        self,
        app: str,
        *,
        common_name: str,
        sans: Sequence[str] = (),
        key_type: str | None = None,
        description: str = "",
    ) -> JsonObject:
        """A key certward generates and keeps, and a CSR for the names (``pending``)."""
        body: JsonObject = {"common_name": common_name, "sans": list(sans)}
        if key_type is not None:
            body["key_type"] = key_type
        if description:
            body["description"] = description
        return self._object(
            self._request("POST", "/api/v1/apps/{app}/tls-certificates/csr", body=body, app=app)
        )

    def order_acme_tls_certificate(
        self, app: str, *, sans: Sequence[str], description: str = ""
    ) -> JsonObject:
        """A certificate for ``sans`` from the platform's ACME CA, renewed by certward."""
        body: JsonObject = {"sans": list(sans)}
        if description:
            body["description"] = description
        return self._object(
            self._request("POST", "/api/v1/apps/{app}/tls-certificates/acme", body=body, app=app)
        )

    def complete_tls_csr(
        self,
        app: str,
        tls_certificate_id: str,
        *,
        certificate: UploadFile,
        chain: UploadFile | None = None,
    ) -> JsonObject:
        """Give a pending CSR the certificate its CA signed."""
        files = [("certificate", (certificate.filename, certificate.data))]
        if chain is not None:
            files.append(("chain", (chain.filename, chain.data)))
        return self._object(
            self._request(
                "POST",
                "/api/v1/apps/{app}/tls-certificates/{tls_certificate_id}/signed-certificate",
                files=files,
                app=app,
                tls_certificate_id=tls_certificate_id,
            )
        )

    def list_tls_certificates(self, app: str, *, status: str | None = None) -> list[JsonObject]:
        return self._list(
            self._request(
                "GET", "/api/v1/apps/{app}/tls-certificates", params={"status": status}, app=app
            )
        )

    def get_tls_certificate(self, app: str, tls_certificate_id: str) -> JsonObject:
        return self._object(
            self._request(
                "GET",
                "/api/v1/apps/{app}/tls-certificates/{tls_certificate_id}",
                app=app,
                tls_certificate_id=tls_certificate_id,
            )
        )

    def replace_tls_certificate(
        self, app: str, tls_certificate_id: str, *, replacement_id: str
    ) -> JsonObject:
        """Move every custom domain using the certificate to ``replacement_id``."""
        return self._object(
            self._request(
                "POST",
                "/api/v1/apps/{app}/tls-certificates/{tls_certificate_id}/replace",
                body={"replacement_id": replacement_id},
                app=app,
                tls_certificate_id=tls_certificate_id,
            )
        )

    def delete_tls_certificate(self, app: str, tls_certificate_id: str) -> None:
        self._request(
            "DELETE",
            "/api/v1/apps/{app}/tls-certificates/{tls_certificate_id}",
            app=app,
            tls_certificate_id=tls_certificate_id,
        )

    def add_custom_domain(
        self, app: str, env: str, *, hostname: str, certificate_id: str
    ) -> JsonObject:
        return self._object(
            self._request(
                "POST",
                "/api/v1/apps/{app}/environments/{env}/custom-domains",
                body={"hostname": hostname, "certificate_id": certificate_id},
                app=app,
                env=env,
            )
        )

    def remove_custom_domain(self, app: str, env: str, hostname: str) -> None:
        self._request(
            "DELETE",
            "/api/v1/apps/{app}/environments/{env}/custom-domains/{hostname}",
            app=app,
            env=env,
            hostname=hostname,
        )

    def list_domains(self, app: str, env: str) -> list[JsonObject]:
        """The default hostname first, then the custom domains by name."""
        return self._list(
            self._request("GET", "/api/v1/apps/{app}/environments/{env}/domains", app=app, env=env)
        )
