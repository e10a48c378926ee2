"""A client of certward's REST API, for the command line and for scripts written in Python.

`ApiClient` has one typed method per API operation and returns the API's JSON as it
came (dicts and lists), so that ``--json`` output is exactly what the API said. Every
failure becomes one of three exceptions, so callers handle each once:

- `ServerUnreachable`: no HTTP answer at all (refused, unknown host, TLS, timeout);
- `ApiProblem`: the API answered 4xx/5xx; carries the ``application/problem+json``
  body (``code``, ``title``, ``detail``, ``problems`` and any further members such as
  ``conflicts`` or ``invalid``);
- `UnexpectedAnswer`: something answered 2xx that certward would not (another service
  on that port, a proxy's HTML page).

Passwords and tokens are sent, never kept in an exception or a message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import quote

import httpx

from certward import __version__
from certward.errors import CertwardError

JsonObject = dict[str, Any]
"""An object of the API's JSON, as the API sent it."""

DEFAULT_SERVER: Final = "http://127.0.0.1:8700"
API_PREFIX: Final = "/api/v1"
DEFAULT_TIMEOUT_SECONDS: Final = 60.0
PAGE_SIZE: Final = 1000  # the largest page the client-certificate listing serves

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
_STANDARD_PROBLEM_MEMBERS = frozenset({"type", "title", "status", "code", "detail", "problems"})


class _Unset(Enum):
    """Marks an argument left out, where ``None`` is a value the API takes (clear it)."""

    UNSET = "unset"


UNSET: Final = _Unset.UNSET


class ApiClientError(CertwardError):
    """A request to the certward API did not succeed."""


class ServerUnreachable(ApiClientError):
    """Nothing answered at ``server``: the message is one line saying why."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"certward server unreachable at {server} ({reason})")
        self.server = server
        self.reason = reason


class UnexpectedAnswer(ApiClientError):
    """A success answer that is not what the certward API sends (wrong URL, a proxy)."""


class ApiProblem(ApiClientError):
    """The API refused: an ``application/problem+json`` answer (or a stand-in for one)."""

    def __init__(self, status: int, body: JsonObject) -> None:
        self.status = status
        self.body = body
        self.code = str(body.get("code") or "http-error")
        self.title = str(body.get("title") or f"HTTP {status}")
        self.detail = str(body.get("detail") or "")
        problems = body.get("problems")
        self.problems: tuple[JsonObject, ...] = tuple(
            p for p in (problems if isinstance(problems, list) else []) if isinstance(p, dict)
        )
        super().__init__(f"{status} {self.code}: {self.detail or self.title}")

    @property
    def extra(self) -> JsonObject:
        """Members beyond RFC 9457's and certward's own, e.g. ``conflicts`` or ``domains``."""
        return {k: v for k, v in self.body.items() if k not in _STANDARD_PROBLEM_MEMBERS}

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiProblem:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # Not certward speaking (a proxy, a load balancer): say what came back.
            text = " ".join(response.text.split())[:200]
            body = {
                "code": "http-error",
                "title": response.reason_phrase or f"HTTP {response.status_code}",
                "detail": text or "The answer has no body.",
            }
        return cls(response.status_code, body)


@dataclass(frozen=True, slots=True)
class UploadFile:
    """A file for a multipart upload: the name shown in the API's messages, and its bytes."""

    filename: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Download:
    """A binary answer (a runtime bundle, a DER certificate, a CRL) and what names it."""

    content: bytes = field(repr=False)
    media_type: str
    version: int | None = None  # the runtime bundle's version, from X-Certward-Version


def normalize_server(server: str) -> str:
    """``server`` without a trailing slash or ``/api/v1``: people paste either form."""
    base = server.strip().rstrip("/")
    if base.endswith(API_PREFIX):
        base = base[: -len(API_PREFIX)]
    return base


class ApiClient:
    """One certward server and one bearer token; a context manager closing its connections.

    Each method is one API operation (see ``docs/api.md``); path templates are the API's
    own, so ``tests/cli`` can prove every operation of the OpenAPI document is covered.
    """

    def __init__(
        self,
        server: str,
        token: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = normalize_server(server)
        headers = {"User-Agent": f"certward-cli/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # Loading the CA bundle takes a noticeable part of a command's run; a plain-HTTP
        # server never needs it, as redirects (to https or anywhere) are not followed.
        self._http = httpx.Client(
            base_url=self.server,
            headers=headers,
            timeout=timeout,
            transport=transport,
            verify=self.server.lower().startswith("https://"),
            follow_redirects=False,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the transport ---------------------------------------------------------------------

    def _request(
        self,
        method: Method,
        template: str,
        /,
        *,
        params: Mapping[str, str | int | bool | None] | None = None,
        body: Any = None,
        files: Sequence[tuple[str, tuple[str, bytes]]] | None = None,
        fields: Sequence[tuple[str, str]] | None = None,
        **names: str,
    ) -> httpx.Response:
        """Send one request to ``template`` (the API's path, ``{name}`` filled from
        ``names``, each escaped whole so a name cannot reach another path)."""
        path = template.format_map({k: quote(v, safe="") for k, v in names.items()})
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        try:
            if files is not None:
                response = self._http.request(
                    method, path, params=query, files=list(files), data=_form(fields or ())
                )
            elif body is not None:
                response = self._http.request(
                    method,
                    path,
                    params=query,
                    content=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"},
                )
            else:
                response = self._http.request(method, path, params=query)
        except httpx.TimeoutException as exc:
            raise ServerUnreachable(self.server, "no answer in time") from exc
        except httpx.HTTPError as exc:
            raise ServerUnreachable(self.server, _reason(exc)) from exc
        if response.status_code >= 400:
            raise ApiProblem.from_response(response)
        return response

    def _object(self, response: httpx.Response) -> JsonObject:
        body = self._decode(response)
        if not isinstance(body, dict):
            raise UnexpectedAnswer(
                f"{self.server} answered {response.request.url.path} with JSON that is not an "
                "object: is this certward's URL?"
            )
        return body

    def _list(self, response: httpx.Response) -> list[JsonObject]:
        body = self._decode(response)
        if not isinstance(body, list):
            raise UnexpectedAnswer(
                f"{self.server} answered {response.request.url.path} with JSON that is not a "
                "list: is this certward's URL?"
            )
        return body

    def _decode(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise UnexpectedAnswer(
                f"{self.server} answered {response.request.url.path} with something other "
                "than JSON: is this certward's URL?"
            ) from exc

    @staticmethod
    def _download(response: httpx.Response) -> Download:
        version = response.headers.get("X-Certward-Version")
        return Download(
            content=response.content,
            media_type=response.headers.get("Content-Type", "application/octet-stream"),
            version=int(version) if version and version.isdigit() else None,
        )

    # -- health and metrics ----------------------------------------------------------------

    def health(self) -> JsonObject:
        """``{"status": "ok"}`` when the API is up (no token needed)."""
        return self._object(self._request("GET", "/api/v1/healthz"))

    def metrics(self) -> str:
        """Prometheus text (an admin token)."""
        return self._request("GET", "/metrics").text

    # -- apps ------------------------------------------------------------------------------

    def list_apps(self) -> list[JsonObject]:
        return self._list(self._request("GET", "/api/v1/apps"))

    def create_app(self, name: str, plan: str) -> JsonObject:
        return self._object(
            self._request("POST", "/api/v1/apps", body={"name": name, "plan": plan})
        )

    def get_app(self, app: str) -> JsonObject:
        return self._object(self._request("GET", "/api/v1/apps/{app}", app=app))

    def update_app(self, app: str, *, plan: str) -> JsonObject:
        return self._object(
            self._request("PATCH", "/api/v1/apps/{app}", body={"plan": plan}, app=app)
        )

    def delete_app(self, app: str) -> None:
        self._request("DELETE", "/api/v1/apps/{app}", app=app)

    # -- environments ----------------------------------------------------------------------

    def list_environments(self, app: str) -> list[JsonObject]:
        return self._list(self._request("GET", "/api/v1/apps/{app}/environments", app=app))

    def create_environment(self, app: str, name: str, *, upstream: str) -> JsonObject:
        return self._object(
            self._request(
                "POST",
                "/api/v1/apps/{app}/environments",
                body={"name": name, "upstream": upstream},
                app=app,
            )
        )

    def get_environment(self, app: str, env: str) -> JsonObject:
        return self._object(
            self._request("GET", "/api/v1/apps/{app}/environments/{env}", app=app, env=env)
        )

    def update_environment(
        self,
        app: str,
        env: str,
        *,
        upstream: str | None = None,
        pkcs12_profile: str | None = None,
        no_client_certificate: Sequence[str] | None = None,
    ) -> JsonObject:
        """``upstream`` is live; the PKCS12 profile and ``no_client_certificate`` are staged."""
        body: JsonObject = {}
        if upstream is not None:
            body["upstream"] = upstream
        if pkcs12_profile is not None:
            body["pkcs12_profile"] = pkcs12_profile
        if no_client_certificate is not None:
            body["no_client_certificate"] = list(no_client_certificate)
        return self._object(
            self._request(
                "PATCH", "/api/v1/apps/{app}/environments/{env}", body=body, app=app, env=env
            )
        )

    def delete_environment(self, app: str, env: str) -> None:
        self._request("DELETE", "/api/v1/apps/{app}/environments/{env}", app=app, env=env)

    def managed_certificate(self, app: str, env: str) -> JsonObject:
        """The platform-issued certificate of the environment's default hostname."""
        return self._object(
            self._request(
                "GET",
                "/api/v1/apps/{app}/environments/{env}/managed-certificate",
                app=app,
                env=env,
            )
        )

    # -- client certificates ---------------------------------------------------------------

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
        _add_password(files, fields, password)
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
        call_name: str | _Unset | None = UNSET,
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

    # -- certificate authorities -----------------------------------------------------------

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

    # -- staged changes, restart, versions, runtime bundles --------------------------------

    def changes(self, app: str, env: str) -> JsonObject:
        """The staged state against the applied version."""
        return self._object(
            self._request("GET", "/api/v1/apps/{app}/environments/{env}/changes", app=app, env=env)
        )

    def restart(self, app: str, env: str) -> JsonObject:
        return self._object(
            self._request("POST", "/api/v1/apps/{app}/environments/{env}/restart", app=app, env=env)
        )

    def rollback(self, app: str, env: str, *, version: int) -> JsonObject:
        return self._object(
            self._request(
                "POST",
                "/api/v1/apps/{app}/environments/{env}/rollback",
                body={"version": version},
                app=app,
                env=env,
            )
        )

    def versions(self, app: str, env: str) -> list[JsonObject]:
        return self._list(
            self._request("GET", "/api/v1/apps/{app}/environments/{env}/versions", app=app, env=env)
        )

    def runtime_bundle(self, app: str, env: str, *, version: int | None = None) -> Download:
        """The applied (or ``version``'s) runtime bundle, a gzipped tar."""
        return self._download(
            self._request(
                "GET",
                "/api/v1/apps/{app}/environments/{env}/runtime-bundle",
                params={"version": version},
                app=app,
                env=env,
            )
        )

    # -- tokens and audit ------------------------------------------------------------------

    def create_token(
        self,
        *,
        role: str,
        app: str | None = None,
        environment: str | None = None,
        description: str = "",
    ) -> JsonObject:
        """A new token; its value is in this answer only."""
        return self._object(
            self._request(
                "POST",
                "/api/v1/tokens",
                body={
                    "role": role,
                    "app": app,
                    "environment": environment,
                    "description": description,
                },
            )
        )

    def list_tokens(self, *, app: str | None = None) -> list[JsonObject]:
        return self._list(self._request("GET", "/api/v1/tokens", params={"app": app}))

    def revoke_token(self, token_id: str) -> JsonObject:
        return self._object(self._request("DELETE", "/api/v1/tokens/{token_id}", token_id=token_id))

    def audit(
        self, *, app: str | None = None, before: int | None = None, limit: int | None = None
    ) -> list[JsonObject]:
        """Audit events, newest first; ``before`` (an event id) reads further back."""
        return self._list(
            self._request(
                "GET", "/api/v1/audit", params={"app": app, "before": before, "limit": limit}
            )
        )

    # -- the platform CA -------------------------------------------------------------------

    def platform_ca_pem(self, *, every: bool = False) -> str:
        """The active root as PEM (``every``: every published root and intermediate)."""
        return self._request("GET", "/api/v1/platform/ca", params={"all": every or None}).text

    def platform_ca_certificates(self, *, every: bool = False) -> list[JsonObject]:
        return self._list(
            self._request("GET", "/api/v1/platform/ca/certificates", params={"all": every or None})
        )

    def platform_ca_certificate(self, ca_id: str) -> Download:
        """One CA certificate in DER."""
        return self._download(
            self._request("GET", "/api/v1/platform/ca/{ca_id}/certificate", ca_id=ca_id)
        )

    def platform_ca_crl(self, ca_id: str) -> Download:
        """One CA's revocation list in DER."""
        return self._download(self._request("GET", "/api/v1/platform/ca/{ca_id}/crl", ca_id=ca_id))

    def excluded_sites(self) -> list[JsonObject]:
        """The sites the nginx data plane leaves out, with the reason (platform admin)."""
        return self._list(self._request("GET", "/api/v1/platform/data-plane/excluded-sites"))

    # -- TLS certificates and domains ------------------------------------------------------

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
        _add_password(files, fields, password)
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

    # -- inventory -------------------------------------------------------------------------

    def inventory(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        app: str | None = None,
        limit: int | None = None,
    ) -> list[JsonObject]:
        """Every certificate the token may see, soonest expiry first."""
        return self._list(
            self._request(
                "GET",
                "/api/v1/certificates",
                params={"status": status, "kind": kind, "app": app, "limit": limit},
            )
        )

    # -- access profiles -------------------------------------------------------------------

    def create_access_profile(
        self, app: str, name: str, *, ip_ranges: Sequence[str] = ()
    ) -> JsonObject:
        return self._object(
            self._request(
                "POST",
                "/api/v1/apps/{app}/access-profiles",
                body={"name": name, "ip_ranges": list(ip_ranges)},
                app=app,
            )
        )

    def list_access_profiles(self, app: str) -> list[JsonObject]:
        return self._list(self._request("GET", "/api/v1/apps/{app}/access-profiles", app=app))

    def get_access_profile(self, app: str, profile: str) -> JsonObject:
        return self._object(
            self._request(
                "GET", "/api/v1/apps/{app}/access-profiles/{profile}", app=app, profile=profile
            )
        )

    def update_access_profile(
        self, app: str, profile: str, *, ip_ranges: Sequence[str]
    ) -> JsonObject:
        """Replace the profile's IP ranges (live)."""
        return self._object(
            self._request(
                "PATCH",
                "/api/v1/apps/{app}/access-profiles/{profile}",
                body={"ip_ranges": list(ip_ranges)},
                app=app,
                profile=profile,
            )
        )

    def delete_access_profile(self, app: str, profile: str) -> None:
        self._request(
            "DELETE", "/api/v1/apps/{app}/access-profiles/{profile}", app=app, profile=profile
        )

    def upload_client_cas(self, app: str, profile: str, *, file: UploadFile) -> JsonObject:
        """Merge CA certificates into the profile; answers with its whole CA tree."""
        return self._object(
            self._request(
                "POST",
                "/api/v1/apps/{app}/access-profiles/{profile}/client-cas",
                files=[("certificates", (file.filename, file.data))],
                app=app,
                profile=profile,
            )
        )

    def select_client_cas(self, app: str, profile: str, *, selected: Sequence[str]) -> JsonObject:
        """Accept client certificates issued below these CAs only (``[]``: every CA)."""
        return self._object(
            self._request(
                "PATCH",
                "/api/v1/apps/{app}/access-profiles/{profile}/client-cas",
                body={"selected": list(selected)},
                app=app,
                profile=profile,
            )
        )

    def remove_client_ca(self, app: str, profile: str, fingerprint: str) -> None:
        self._request(
            "DELETE",
            "/api/v1/apps/{app}/access-profiles/{profile}/client-cas/{fingerprint}",
            app=app,
            profile=profile,
            fingerprint=fingerprint,
        )

    # -- IP deny profiles ------------------------------------------------------------------

    def create_ip_deny_profile(
        self, app: str, name: str, *, ip_ranges: Sequence[str] = ()
    ) -> JsonObject:
        return self._object(
            self._request(
                "POST",
                "/api/v1/apps/{app}/ip-deny-profiles",
                body={"name": name, "ip_ranges": list(ip_ranges)},
                app=app,
            )
        )

    def list_ip_deny_profiles(self, app: str) -> list[JsonObject]:
        return self._list(self._request("GET", "/api/v1/apps/{app}/ip-deny-profiles", app=app))

    def get_ip_deny_profile(self, app: str, deny_profile: str) -> JsonObject:
        return self._object(
            self._request(
                "GET",
                "/api/v1/apps/{app}/ip-deny-profiles/{deny_profile}",
                app=app,
                deny_profile=deny_profile,
            )
        )

    def update_ip_deny_profile(
        self, app: str, deny_profile: str, *, ip_ranges: Sequence[str]
    ) -> JsonObject:
        return self._object(
            self._request(
                "PATCH",
                "/api/v1/apps/{app}/ip-deny-profiles/{deny_profile}",
                body={"ip_ranges": list(ip_ranges)},
                app=app,
                deny_profile=deny_profile,
            )
        )

    def delete_ip_deny_profile(self, app: str, deny_profile: str) -> None:
        self._request(
            "DELETE",
            "/api/v1/apps/{app}/ip-deny-profiles/{deny_profile}",
            app=app,
            deny_profile=deny_profile,
        )

    def attached_ip_deny_profiles(self, app: str, env: str) -> JsonObject:
        return self._object(
            self._request(
                "GET", "/api/v1/apps/{app}/environments/{env}/ip-deny-profiles", app=app, env=env
            )
        )

    def attach_ip_deny_profiles(self, app: str, env: str, *, profiles: Sequence[str]) -> JsonObject:
        """Make ``profiles`` the whole set attached to the environment (live)."""
        return self._object(
            self._request(
                "PUT",
                "/api/v1/apps/{app}/environments/{env}/ip-deny-profiles",
                body={"profiles": list(profiles)},
                app=app,
                env=env,
            )
        )

    # -- path rules ------------------------------------------------------------------------

    def path_rules(self, app: str, env: str) -> JsonObject:
        """``{"staged": {...}, "applied": {...}}``."""
        return self._object(
            self._request(
                "GET", "/api/v1/apps/{app}/environments/{env}/path-rules", app=app, env=env
            )
        )

    def replace_path_rules(self, app: str, env: str, rules: Mapping[str, Any]) -> JsonObject:
        """Stage ``rules`` (``{prefix: {"rule", "profile"?}}``) as the whole set."""
        return self._object(
            self._request(
                "PUT",
                "/api/v1/apps/{app}/environments/{env}/path-rules",
                body=dict(rules),
                app=app,
                env=env,
            )
        )


def _add_password(
    files: list[tuple[str, tuple[str, bytes]]],
    fields: list[tuple[str, str]],
    password: bytes | None,
) -> None:
    """Send the password exactly: as text when it is UTF-8, else as a file part, which
    the API reads without one trailing line break (so one is added for it to remove)."""
    if password is None:
        return
    try:
        fields.append(("password", password.decode("utf-8")))
    except UnicodeDecodeError:
        files.append(("password", ("password", password + b"\n")))


def _form(fields: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Form fields for httpx: a repeated name (``pins``) becomes repeated parts."""
    form: dict[str, list[str]] = {}
    for name, value in fields:
        form.setdefault(name, []).append(value)
    return form


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _reason(exc: httpx.HTTPError) -> str:
    """One short reason: the innermost OS error's text when there is one."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
