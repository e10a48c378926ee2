"""Who may call an app: access profiles and their client CAs, IP deny profiles, path rules.

Access profiles and IP deny profiles are both range profiles (a named set of IP ranges
of an app): one set of operations serves both, each kind given by its `RangeProfilePaths`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypedDict

from certward.api_client.payloads import JsonObject, UploadFile
from certward.api_client.transport import API_PREFIX, ApiTransport


class ClientCaOf(TypedDict):
    """The path names of one client CA of an access profile."""

    app: str
    profile: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class RangeProfilePaths:
    """Where the API keeps one kind of range profile: the segment of its collection below
    an app (``access-profiles``) and the name of the path parameter naming one profile."""

    segment: str
    parameter: str

    @property
    def collection(self) -> str:
        """The kind's path template below an app (``/api/v1/apps/{app}/access-profiles``)."""
        return f"{API_PREFIX}/apps/{{app}}/{self.segment}"

    @property
    def item(self) -> str:
        """The path template of one profile (``.../access-profiles/{profile}``)."""
        return f"{self.collection}/{{{self.parameter}}}"

    def names(self, app: str, profile: str) -> dict[str, Any]:
        """The names filling `item`: ``app`` and ``profile`` (values typed ``Any`` only so
        that they can be passed as ``**names`` beside `_request`'s other options)."""
        return {"app": app, self.parameter: profile}


ACCESS_PROFILES: Final = RangeProfilePaths("access-profiles", "profile")
IP_DENY_PROFILES: Final = RangeProfilePaths("ip-deny-profiles", "deny_profile")
RANGE_PROFILES: Final = (ACCESS_PROFILES, IP_DENY_PROFILES)


class AccessApi(ApiTransport):
    """Access profiles, IP deny profiles and path rules."""

    def create_range_profile(
        self, paths: RangeProfilePaths, app: str, name: str, *, ip_ranges: Sequence[str] = ()
    ) -> JsonObject:
        return self._object(
            self._request(
                "POST",
                paths.collection,
                body={"name": name, "ip_ranges": list(ip_ranges)},
                app=app,
            )
        )

    def list_range_profiles(self, paths: RangeProfilePaths, app: str) -> list[JsonObject]:
        return self._list(self._request("GET", paths.collection, app=app))

    def get_range_profile(self, paths: RangeProfilePaths, app: str, profile: str) -> JsonObject:
        return self._object(self._request("GET", paths.item, **paths.names(app, profile)))

    def update_range_profile(
        self, paths: RangeProfilePaths, app: str, profile: str, *, ip_ranges: Sequence[str]
    ) -> JsonObject:
        """Replace the profile's IP ranges (live)."""
        return self._object(
            self._request(
                "PATCH",
                paths.item,
                body={"ip_ranges": list(ip_ranges)},
                **paths.names(app, profile),
            )
        )

    def delete_range_profile(self, paths: RangeProfilePaths, app: str, profile: str) -> None:
        self._request("DELETE", paths.item, **paths.names(app, profile))

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
        where = ClientCaOf(app=app, profile=profile, fingerprint=fingerprint)
        crl = [("crl", (file.filename, file.data))]
        return self._object(
            self._request(
                "PUT",
                "/api/v1/apps/{app}/access-profiles/{profile}/client-cas/{fingerprint}/crl",
                files=crl,
                **where,
            )
        )

    def get_crl(self, app: str, profile: str, fingerprint: str) -> JsonObject:
        where = ClientCaOf(app=app, profile=profile, fingerprint=fingerprint)
        return self._object(
            self._request(
                "GET",
                "/api/v1/apps/{app}/access-profiles/{profile}/client-cas/{fingerprint}/crl",
                **where,
            )
        )

    def remove_crl(self, app: str, profile: str, fingerprint: str) -> None:
        where = ClientCaOf(app=app, profile=profile, fingerprint=fingerprint)
        self._request(
            "DELETE",
            "/api/v1/apps/{app}/access-profiles/{profile}/client-cas/{fingerprint}/crl",
            **where,
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
