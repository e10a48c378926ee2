"""IP deny profiles: an app's ranges, attached to environments, live; on SQLite and
PostgreSQL, with what the data plane reads of them."""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx
from sqlalchemy import select

from certward.model import AuditEvent, Environment
from certward.services.dataplane_access import applied_access
from tests.api.conftest import Api, expect

DENY = "/ip-deny-profiles"


def create(api: Api, name: str, ip_ranges: list[str], app: str = "shop") -> httpx.Response:
    return api.client.post(
        api.app_url(app, DENY),
        json={"name": name, "ip_ranges": ip_ranges},
        headers=api.admin_headers,
    )


def attach(api: Api, env: str, profiles: list[str], app: str = "shop") -> httpx.Response:
    return api.client.put(
        api.env_url(app, env, DENY), json={"profiles": profiles}, headers=api.admin_headers
    )


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = expect(response, status)
    assert body["code"] == code, body
    return body


def deny_ranges(api: Api, env: str) -> tuple[Any, ...]:
    with api.context.database.reading() as session:
        env_id = session.scalar(select(Environment.id).where(Environment.name == env))
        assert env_id is not None
        return applied_access(session)[env_id].deny_ranges


def test_ip_deny_profiles_are_created_attached_changed_and_deleted(api: Api) -> None:
    api.create_app("shop")
    api.create_environment("shop", "prod")
    api.create_environment("shop", "qa")
    created = expect(create(api, "abuse", ["203.0.113.0/24", "2001:DB8:BAD::/48"]), 201)
    assert created["ip_ranges"] == ["203.0.113.0/24", "2001:db8:bad::/48"]
    assert created["environments"] == []
    expect(create(api, "scanners", ["198.51.100.0/24", "203.0.113.0/24"]), 201)
    refused(create(api, "abuse", []), 409, "ip-deny-profile-exists")
    refused(create(api, "Abuse", []), 422, "invalid-name")
    refused(create(api, "bots", ["203.0.113.1/24"]), 422, "invalid-ip-range")

    assert expect(
        api.client.get(api.env_url("shop", "prod", DENY), headers=api.admin_headers), 200
    ) == {"profiles": []}
    assert expect(attach(api, "prod", ["scanners", "abuse", "abuse"]), 200) == {
        "profiles": ["abuse", "scanners"]
    }
    expect(attach(api, "qa", ["abuse"]), 200)
    assert expect(
        api.client.get(api.env_url("shop", "prod", DENY), headers=api.admin_headers), 200
    ) == {"profiles": ["abuse", "scanners"]}
    listing = expect(api.client.get(api.app_url("shop", DENY), headers=api.admin_headers), 200)
    assert [(p["name"], p["environments"]) for p in listing] == [
        ("abuse", ["prod", "qa"]),
        ("scanners", ["prod"]),
    ]

    # Live: attached ranges reach the data plane at once, merged without duplicates.
    assert deny_ranges(api, "prod") == (
        ipaddress.ip_network("203.0.113.0/24"),
        ipaddress.ip_network("2001:db8:bad::/48"),
        ipaddress.ip_network("198.51.100.0/24"),
    )
    one = api.app_url("shop", f"{DENY}/abuse")
    changed = expect(
        api.client.patch(one, json={"ip_ranges": ["192.0.2.0/24"]}, headers=api.admin_headers),
        200,
    )
    assert changed["environments"] == ["prod", "qa"]
    assert deny_ranges(api, "qa") == (ipaddress.ip_network("192.0.2.0/24"),)
    assert expect(api.client.get(one, headers=api.admin_headers), 200) == changed

    # Attached profiles cannot be deleted: that would lift the denial silently.
    body = refused(api.client.delete(one, headers=api.admin_headers), 409, "ip-deny-profile-in-use")
    assert body["environments"] == ["prod", "qa"]
    refused(attach(api, "prod", ["abuse", "nobody"]), 422, "unknown-ip-deny-profile")
    assert deny_ranges(api, "prod")  # the refused attach changed nothing
    expect(attach(api, "prod", ["scanners"]), 200)
    expect(attach(api, "qa", []), 200)
    expect(api.client.delete(one, headers=api.admin_headers), 204)
    refused(api.client.get(one, headers=api.admin_headers), 404, "ip-deny-profile-not-found")
    assert deny_ranges(api, "qa") == ()
    with api.context.database.reading() as session:
        actions = set(session.scalars(select(AuditEvent.action)))
    assert {
        "ip_deny_profile.create",
        "ip_deny_profile.update",
        "ip_deny_profile.delete",
        "environment.ip_deny_profiles",
    } <= actions


def test_another_apps_deny_profile_cannot_be_attached(api: Api) -> None:
    api.create_app("shop")
    api.create_app("blog")
    api.create_environment("shop", "prod")
    expect(create(api, "blog-only", ["192.0.2.0/24"], app="blog"), 201)
    body = refused(attach(api, "prod", ["blog-only"]), 422, "unknown-ip-deny-profile")
    assert body["profiles"] == ["blog-only"]


def test_deny_profiles_follow_the_token_roles(api: Api) -> None:
    api.create_app("shop")
    api.create_environment("shop", "prod")
    viewer = api.create_token("viewer", app="shop")
    expect(create(api, "abuse", ["192.0.2.0/24"]), 201)
    expect(api.client.get(api.app_url("shop", DENY), headers=viewer.headers), 200)
    expect(api.client.get(api.env_url("shop", "prod", DENY), headers=viewer.headers), 200)
    refused(
        api.client.put(
            api.env_url("shop", "prod", DENY), json={"profiles": []}, headers=viewer.headers
        ),
        403,
        "forbidden",
    )
    refused(
        api.client.patch(
            api.app_url("shop", f"{DENY}/abuse"), json={"ip_ranges": []}, headers=viewer.headers
        ),
        403,
        "forbidden",
    )
