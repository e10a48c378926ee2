"""HSTS as an app option: ``hsts_max_age`` on create and PATCH, checked, audited as part of
the app, and carried into the data plane's state for every hostname of the app."""

from __future__ import annotations

import pytest

from certward.services.apps import HSTS_MAX_AGE_LIMIT
from certward.services.dataplane_feed import DataPlaneFeed
from tests.api.conftest import API, Api, expect


def test_hsts_max_age_is_set_changed_and_turned_off(api: Api) -> None:
    environment = api.create_app_and_environment("shop", "prod")
    feed = DataPlaneFeed(api.context)
    hostname = environment["hostname"]
    assert feed.load().sites[hostname].hsts_max_age is None

    url = f"{API}/apps/shop"
    changed = expect(
        api.client.patch(url, json={"hsts_max_age": 31536000}, headers=api.admin_headers), 200
    )
    assert changed["hsts_max_age"] == 31536000
    before = feed.load()
    assert before.sites[hostname].hsts_header == b"max-age=31536000"

    # Another field alone leaves it as it is; an explicit null turns it off.
    kept = expect(api.client.patch(url, json={"plan": "licensed"}, headers=api.admin_headers), 200)
    assert kept["hsts_max_age"] == 31536000
    off = expect(api.client.patch(url, json={"hsts_max_age": None}, headers=api.admin_headers), 200)
    assert off["hsts_max_age"] is None
    after = feed.load()
    assert after.sites[hostname].hsts_max_age is None
    assert after.version != before.version


def test_an_app_can_be_created_with_hsts(api: Api) -> None:
    created = expect(
        api.client.post(
            f"{API}/apps",
            json={"name": "blog", "plan": "licensed", "hsts_max_age": 0},
            headers=api.admin_headers,
        ),
        201,
    )
    assert created["hsts_max_age"] == 0
    assert (
        expect(api.client.get(f"{API}/apps/blog", headers=api.admin_headers), 200)["hsts_max_age"]
        == 0
    )


@pytest.mark.parametrize("value", [-1, HSTS_MAX_AGE_LIMIT + 1])
def test_an_hsts_max_age_out_of_range_is_refused_with_its_own_code(api: Api, value: int) -> None:
    api.create_app_and_environment("shop", "prod")
    for method, url, body in (
        ("PATCH", f"{API}/apps/shop", {"hsts_max_age": value}),
        ("POST", f"{API}/apps", {"name": "blog", "plan": "licensed", "hsts_max_age": value}),
    ):
        response = api.client.request(method, url, json=body, headers=api.admin_headers)
        assert expect(response, 422)["code"] == "invalid-hsts-max-age"
    assert (
        expect(api.client.get(f"{API}/apps/shop", headers=api.admin_headers), 200)["hsts_max_age"]
        is None
    )
