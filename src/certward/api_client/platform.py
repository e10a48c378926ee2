"""Health, metrics, tokens, the audit log, the platform CA and the certificate inventory."""

from __future__ import annotations

from certward.api_client.payloads import Download, JsonObject
from certward.api_client.transport import ApiTransport


class PlatformApi(ApiTransport):
    """The platform as a whole: health and metrics, tokens and audit, the CA, the inventory."""

    def health(self) -> JsonObject:
        """``{"status": "ok"}`` when the API is up (no token needed)."""
        return self._object(self._request("GET", "/api/v1/healthz"))

    def metrics(self) -> str:
        """Prometheus text (an admin token)."""
        return self._request("GET", "/metrics").text

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

    def excluded_sites(self) -> list[JsonObject]:
        """The sites the nginx data plane leaves out, with the reason (platform admin)."""
        return self._list(self._request("GET", "/api/v1/platform/data-plane/excluded-sites"))

    def data_plane_nodes(self) -> JsonObject:
        """The current change sequence and every data-plane node's (platform admin)."""
        return self._object(self._request("GET", "/api/v1/platform/data-plane/nodes"))

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
