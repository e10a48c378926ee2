"""Path rules: staged per environment, listed as changes, applied by restart, restored by
rollback, and validated on the way in; on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from certward.dataplane.state import RuleKind
from certward.model import AuditEvent, EnvironmentVersion
from certward.snapshot import EnvironmentSnapshot, PathRuleState
from tests.api.conftest import Api, expect

RULES = {
    "/": {"rule": "profile", "profile": "office"},
    "/ws/": {"rule": "allow-all"},
    "/api-doc": {"rule": "deny-all"},
}


def put_rules(
    api: Api, rules: Any, *, env: str = "prod", headers: dict[str, str] | None = None
) -> httpx.Response:
    return api.client.put(
        api.env_url("shop", env, "/path-rules"), json=rules, headers=headers or api.admin_headers
    )


def get_rules(api: Api, env: str = "prod") -> dict[str, Any]:
    body: dict[str, Any] = expect(
        api.client.get(api.env_url("shop", env, "/path-rules"), headers=api.admin_headers), 200
    )
    return body


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = expect(response, status)
    assert body["code"] == code, body
    return body


def shop(api: Api) -> None:
    api.create_app("shop")
    api.create_environment("shop", "prod")
    expect(
        api.client.post(
            api.app_url("shop", "/access-profiles"),
            json={"name": "office", "ip_ranges": ["10.0.0.0/8"]},
            headers=api.admin_headers,
        ),
        201,
    )


def path_rule_changes(api: Api) -> list[dict[str, Any]]:
    return [c for c in api.changes("shop", "prod") if c["object_type"] == "path_rule"]


def test_path_rules_are_staged_listed_as_changes_and_applied_by_restart(api: Api) -> None:
    shop(api)
    first = api.restart("shop", "prod")
    staged = expect(put_rules(api, RULES), 200)
    assert staged == {"staged": RULES, "applied": {}}
    assert get_rules(api) == staged
    assert path_rule_changes(api) == [
        {
            "object_type": "path_rule",
            "object_id": prefix,
            "change": "added",
            "before": None,
            "after": RULES[prefix],
        }
        for prefix in sorted(RULES)
    ]

    applied = api.restart("shop", "prod")
    assert applied["changed"] is True
    assert applied["version"] == first["version"] + 1
    assert get_rules(api) == {"staged": RULES, "applied": RULES}
    assert path_rule_changes(api) == []
    assert api.restart("shop", "prod")["changed"] is False

    # PUT replaces the whole set: one rule changed, one gone, one new.
    new = {
        "/": {"rule": "allow-all"},
        "/ws/": {"rule": "allow-all"},
        "/admin/": {"rule": "profile", "profile": "office"},
    }
    expect(put_rules(api, new), 200)
    assert get_rules(api) == {"staged": new, "applied": RULES}
    assert {(c["object_id"], c["change"]) for c in path_rule_changes(api)} == {
        ("/", "modified"),
        ("/api-doc", "removed"),
        ("/admin/", "added"),
    }
    modified = next(c for c in path_rule_changes(api) if c["object_id"] == "/")
    assert modified["before"] == {"rule": "profile", "profile": "office"}
    assert modified["after"] == {"rule": "allow-all"}
    api.restart("shop", "prod")
    assert get_rules(api) == {"staged": new, "applied": new}
    with api.context.database.reading() as session:
        events = list(
            session.scalars(select(AuditEvent).where(AuditEvent.action == "path_rules.stage"))
        )
    assert len(events) == 2
    assert events[0].before_digest != events[0].after_digest


def test_rollback_restores_the_path_rules_of_the_version(api: Api) -> None:
    shop(api)
    expect(put_rules(api, RULES), 200)
    with_rules = api.restart("shop", "prod")
    expect(put_rules(api, {"/": {"rule": "deny-all"}}), 200)
    api.restart("shop", "prod")
    back = expect(
        api.client.post(
            api.env_url("shop", "prod", "/rollback"),
            json={"version": with_rules["version"]},
            headers=api.admin_headers,
        ),
        200,
    )
    assert back["digest"] == with_rules["digest"]
    assert get_rules(api) == {"staged": RULES, "applied": RULES}


def test_rollback_to_rules_naming_a_deleted_profile_is_refused(api: Api) -> None:
    shop(api)
    expect(put_rules(api, RULES), 200)
    with_rules = api.restart("shop", "prod")
    expect(put_rules(api, {}), 200)
    api.restart("shop", "prod")
    expect(
        api.client.delete(
            api.app_url("shop", "/access-profiles/office"), headers=api.admin_headers
        ),
        204,
    )
    body = refused(
        api.client.post(
            api.env_url("shop", "prod", "/rollback"),
            json={"version": with_rules["version"]},
            headers=api.admin_headers,
        ),
        422,
        "version-incomplete",
    )
    assert body["access_profiles"] == ["office"]
    assert get_rules(api) == {"staged": {}, "applied": {}}


def test_versions_without_path_rules_keep_their_digests(api: Api) -> None:
    """Versions applied before path rules existed have no such key; an environment with
    no rules still writes none, so its digests are unchanged and restarts stay no-ops."""
    shop(api)
    before = api.restart("shop", "prod")
    with api.context.database.reading() as session:
        stored = session.scalar(select(EnvironmentVersion.snapshot))
    assert stored is not None
    assert "path_rules" not in stored
    snapshot = EnvironmentSnapshot.from_json(stored)
    assert snapshot.digest() == before["digest"]
    assert snapshot.path_rules == ()

    expect(put_rules(api, RULES), 200)
    assert api.restart("shop", "prod")["digest"] != before["digest"]
    expect(put_rules(api, {}), 200)
    again = api.restart("shop", "prod")
    assert again["changed"] is True
    assert again["digest"] == before["digest"]

    with_rules = EnvironmentSnapshot(
        pkcs12_profile="modern",
        client_certificates=(),
        authorities=(),
        path_rules=(
            PathRuleState(prefix="/b", rule=RuleKind.ALLOW_ALL),
            PathRuleState(prefix="/a", rule=RuleKind.PROFILE, profile="office"),
        ),
    )
    data = with_rules.to_json()
    assert data["path_rules"] == {
        "/a": {"rule": "profile", "profile": "office"},
        "/b": {"rule": "allow-all"},
    }
    assert EnvironmentSnapshot.from_json(data) == with_rules


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_prefixes_and_rules_are_validated_and_nothing_is_staged_when_refused(api: Api) -> None:
    shop(api)
    expect(put_rules(api, RULES), 200)
    cases: list[tuple[Any, str]] = [
        ({"ws/": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/a\u00a0b": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/a%2Fb": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/a%2f": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/a//b": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/a/./b": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/a/../b": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/a/%2e%2e": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/a%FF": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/100%": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/a%zz": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/a%25b": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/a%00": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/a%0Ab": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/a%3Fb": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/a%20b": {"rule": "allow-all"}, "/a b": {"rule": "deny-all"}}, "invalid-path-rule"),
        ({"/a\tb": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/a\u200bb": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/a\x7f": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/search?q=": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/page#top": {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/" + "a" * 1024: {"rule": "allow-all"}}, "invalid-path-prefix"),
        ({"/": {"rule": "profile"}}, "invalid-path-rule"),
        ({"/": {"rule": "allow-all", "profile": "office"}}, "invalid-path-rule"),
        ({"/": {"rule": "profile", "profile": "nobody"}}, "unknown-access-profile"),
        ({"/": {"rule": "allow-some"}}, "invalid-request"),
        ({"/": {"rule": "allow-all", "extra": 1}}, "invalid-request"),
        ({"/": "allow-all"}, "invalid-request"),
        (["/"], "invalid-request"),
        ({"/\x00": {"rule": "allow-all"}}, "invalid-request"),
        ({f"/p{n}": {"rule": "allow-all"} for n in range(201)}, "too-many-path-rules"),
    ]
    for body, code in cases:
        problem = refused(put_rules(api, body), 422, code)
        if code.startswith("invalid-path"):
            assert "/" in problem["detail"] or "prefix" in problem["detail"], problem
    unknown = refused(
        put_rules(api, {"/x": {"rule": "profile", "profile": "nobody"}}),
        422,
        "unknown-access-profile",
    )
    assert "'/x'" in unknown["detail"]
    assert "'nobody'" in unknown["detail"]
    assert get_rules(api)["staged"] == RULES
    longest = "/" + "a" * 1023
    expect(put_rules(api, {longest: {"rule": "allow-all"}}), 200)
    expect(put_rules(api, {f"/p{n}": {"rule": "allow-all"} for n in range(200)}), 200)
    expect(put_rules(api, {"/caf%C3%A9/": {"rule": "deny-all"}, "/é": {"rule": "inherit"}}), 200)


def test_prefixes_are_stored_decoded_and_read_back_unchanged(api: Api) -> None:
    """``/files/a%20b`` once never matched: paths are decoded before they are matched.
    Now it is stored as the path it means, and what is read back can be sent again."""
    shop(api)
    sent = {
        "/files/a%20b": {"rule": "deny-all"},
        "/caf%C3%A9": {"rule": "allow-all"},
        "/docs/": {"rule": "inherit"},
        "/api%2Ddoc": {"rule": "allow-all"},
    }
    staged = expect(put_rules(api, sent), 200)["staged"]
    assert staged == {
        "/files/a b": {"rule": "deny-all"},
        "/café": {"rule": "allow-all"},
        "/docs/": {"rule": "inherit"},
        "/api-doc": {"rule": "allow-all"},
    }
    assert expect(put_rules(api, staged), 200)["staged"] == staged


def test_path_rules_follow_the_token_roles(api: Api) -> None:
    shop(api)
    viewer = api.create_token("viewer", app="shop")
    runtime = api.create_token("runtime", app="shop", environment="prod")
    expect(put_rules(api, RULES), 200)
    expect(api.client.get(api.env_url("shop", "prod", "/path-rules"), headers=viewer.headers), 200)
    refused(put_rules(api, {}, headers=viewer.headers), 403, "forbidden")
    refused(put_rules(api, {}, headers=runtime.headers), 403, "forbidden")
    refused(put_rules(api, {}, env="staging"), 404, "environment-not-found")
