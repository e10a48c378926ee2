"""``GET /api/v1/platform/data-plane/excluded-sites`` and the console's data-plane page:
what the nginx agent recorded, for platform administrators only."""

from __future__ import annotations

import pytest

from certward.dataplane.state import DataPlaneState, Site
from certward.services import dataplane_exclusions
from tests.api.conftest import API, Api, bearer


def _state(hostname: str) -> DataPlaneState:
    site = Site(
        hostname=hostname,
        kind="managed",
        app="evil",
        environment="prod",
        environment_id="env-1",
        upstream="http://[fe80::1%;}x]/",
        certificate=None,
    )
    return DataPlaneState(sites={hostname: site}, version="v1")


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_excluded_sites_are_listed_for_platform_admins_only(api: Api) -> None:
    api.create_app_and_environment("evil", "prod")
    state = _state("prod-evil.apps.localhost")
    added = dataplane_exclusions.record(
        api.context, state, {"prod-evil.apps.localhost": "upstream not allowed: scope id"}
    )
    assert added == ["prod-evil.apps.localhost"]
    # Reported again: still one row, its first time kept.
    assert dataplane_exclusions.record(api.context, state, {"prod-evil.apps.localhost": "x"}) == []
    response = api.client.get(
        f"{API}/platform/data-plane/excluded-sites", headers=api.admin_headers
    )
    assert response.status_code == 200
    (listed,) = response.json()
    assert listed["hostname"] == "prod-evil.apps.localhost"
    assert (listed["app"], listed["environment"], listed["reason"]) == ("evil", "prod", "x")
    assert listed["since"]
    member = api.create_token("member", app="evil")
    refused = api.client.get(
        f"{API}/platform/data-plane/excluded-sites", headers=bearer(member.value)
    )
    assert refused.status_code == 403
    assert refused.json()["code"]
    # Served again: no longer listed.
    dataplane_exclusions.record(api.context, state, {})
    again = api.client.get(f"{API}/platform/data-plane/excluded-sites", headers=api.admin_headers)
    assert again.json() == []
