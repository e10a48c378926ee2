"""Apps, environments, and their staged and applied versions (runtime bundles)."""

from __future__ import annotations

from collections.abc import Sequence

from certward.api_client.payloads import Download, JsonObject
from certward.api_client.transport import ApiTransport


class AppsApi(ApiTransport):
    """Apps and environments; staged changes, restart, rollback, versions, runtime bundles."""

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
