"""Who may call an app: access profiles and their client CAs, IP deny profiles, path rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from certward.api_client.payloads import JsonObject, UploadFile
from certward.api_client.transport import ApiTransport


class AccessApi(ApiTransport):
    """Access profiles, IP deny profiles and path rules."""

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

    def upload_crl(
        self, app: str, profile: str, fingerprint: str, *, file: UploadFile
    ) -> JsonObject:
        """Set or replace the CRL of one client CA of the profile."""
        return self._object(
            self._request(
                "PUT",
                "/api/v1/apps/{app}/access-profiles/{profile}/client-cas/{fingerprint}/crl",
                files=[("crl", (file.filename, file.data))],
                app=app,
                profile=profile,
                fingerprint=fingerprint,
            )
        )

    def get_crl(self, app: str, profile: str, fingerprint: str) -> JsonObject:
        return self._object(
            self._request(
                "GET",
                "/api/v1/apps/{app}/access-profiles/{profile}/client-cas/{fingerprint}/crl",
                app=app,
                profile=profile,
                fingerprint=fingerprint,
            )
        )

    def remove_crl(self, app: str, profile: str, fingerprint: str) -> None:
        self._request(
            "DELETE",
            "/api/v1/apps/{app}/access-profiles/{profile}/client-cas/{fingerprint}/crl",
            app=app,
            profile=profile,
            fingerprint=fingerprint,
        )

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
