"""Access profiles: IP ranges and client CAs of an app, live, on SQLite and PostgreSQL;
and what the data plane reads of them (`applied_access`)."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import event, select

from certward.dataplane.state import PathRule as DataPlaneRule
from certward.dataplane.state import RuleKind
from certward.model import AuditEvent, Environment
from certward.services.dataplane_access import EnvironmentAccess, applied_access
from tests.api.conftest import Api, client_leaf, expect
from tests.material.factory import NOW, TestCA, pem_certificates

PROFILES = "/access-profiles"


@pytest.fixture(scope="module")
def pki() -> dict[str, TestCA]:
    """A partner's root, its issuing intermediate and a CA below that (EC keys, cheap)."""
    root = TestCA.root(name="partner root CA")
    issuing = root.intermediate(name="partner issuing CA")
    team = issuing.intermediate(name="partner team CA")
    other = TestCA.root(name="other root CA")
    return {"root": root, "issuing": issuing, "team": team, "other": other}


# -- helpers --------------------------------------------------------------------------------


def fingerprint(ca: TestCA) -> str:
    return ca.certificate.fingerprint(hashes.SHA256()).hex()


def subject(ca: TestCA) -> str:
    return ca.certificate.subject.rfc4514_string()


def create_profile(
    api: Api, app: str, name: str, ip_ranges: list[str] | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"name": name}
    if ip_ranges is not None:
        body["ip_ranges"] = ip_ranges
    return api.client.post(api.app_url(app, PROFILES), json=body, headers=api.admin_headers)


def upload_cas(
    api: Api, app: str, name: str, data: bytes, *, filename: str = "cas.pem"
) -> httpx.Response:
    return api.client.post(
        api.app_url(app, f"{PROFILES}/{name}/client-cas"),
        files={"certificates": (filename, data)},
        headers=api.admin_headers,
    )


def select_cas(api: Api, app: str, name: str, selected: list[str]) -> httpx.Response:
    return api.client.patch(
        api.app_url(app, f"{PROFILES}/{name}/client-cas"),
        json={"selected": selected},
        headers=api.admin_headers,
    )


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = expect(response, status)
    assert body["code"] == code, body
    assert response.headers["content-type"] == "application/problem+json"
    return body


def shape(nodes: list[dict[str, Any]]) -> list[Any]:
    """A tree as nested (subject, children) pairs."""
    return [(n["subject"], shape(n["children"])) for n in nodes]


def put_rules(api: Api, app: str, env: str, rules: dict[str, Any]) -> httpx.Response:
    return api.client.put(
        api.env_url(app, env, "/path-rules"), json=rules, headers=api.admin_headers
    )


def environment_id(api: Api, app: str, env: str) -> str:
    with api.context.database.reading() as session:
        found = session.scalar(select(Environment.id).where(Environment.name == env))
    assert found is not None
    return found


def access_of(api: Api) -> dict[str, EnvironmentAccess]:
    with api.context.database.reading() as session:
        return applied_access(session)


# -- lifecycle ------------------------------------------------------------------------------


def test_an_access_profile_is_created_listed_read_changed_and_deleted(api: Api) -> None:
    api.create_app("shop")
    created = expect(create_profile(api, "shop", "office", ["10.0.0.0/8", "2001:DB8::/32"]), 201)
    assert created["name"] == "office"
    assert created["ip_ranges"] == ["10.0.0.0/8", "2001:db8::/32"]  # normalized
    assert created["certificates"] == []
    expect(create_profile(api, "shop", "partners"), 201)

    listing = expect(api.client.get(api.app_url("shop", PROFILES), headers=api.admin_headers), 200)
    assert [p["name"] for p in listing] == ["office", "partners"]
    one = api.app_url("shop", f"{PROFILES}/office")
    assert expect(api.client.get(one, headers=api.admin_headers), 200) == created

    api.clock.advance(timedelta(minutes=5))
    changed = expect(
        api.client.patch(
            one, json={"ip_ranges": ["192.0.2.7", "10.0.0.0/8"]}, headers=api.admin_headers
        ),
        200,
    )
    assert changed["ip_ranges"] == ["192.0.2.7/32", "10.0.0.0/8"]
    assert changed["updated_at"] > created["updated_at"]

    expect(api.client.delete(one, headers=api.admin_headers), 204)
    refused(api.client.get(one, headers=api.admin_headers), 404, "access-profile-not-found")
    refused(api.client.delete(one, headers=api.admin_headers), 404, "access-profile-not-found")
    with api.context.database.reading() as session:
        actions = list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert actions[-4:] == [
        "access_profile.create",
        "access_profile.create",
        "access_profile.update",
        "access_profile.delete",
    ]


def test_profile_names_are_dns_labels_and_unique_per_app(api: Api) -> None:
    api.create_app("shop")
    api.create_app("blog")
    expect(create_profile(api, "shop", "office"), 201)
    refused(create_profile(api, "shop", "office"), 409, "access-profile-exists")
    expect(create_profile(api, "blog", "office"), 201)  # another app's namespace
    for name in ("Office", "-office", "office-", "of fice", "office.hq", "o" * 64):
        response = create_profile(api, "shop", name)
        assert response.status_code == 422, name
        assert response.json()["code"] in {"invalid-name", "invalid-request"}, name
    refused(
        api.client.post(
            api.app_url("shop", PROFILES),
            json={"name": "x", "ip_ranges": [], "extra": 1},
            headers=api.admin_headers,
        ),
        422,
        "invalid-request",
    )


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_ip_ranges_are_strict_networks_and_every_wrong_entry_is_named(api: Api) -> None:
    api.create_app("shop")
    cases = {
        "10.0.0.1/8": ["host bits", "10.0.0.0/8", "10.0.0.1/32"],
        "2001:db8::1/32": ["host bits", "2001:db8::/32"],
        "banana": ["not an IP range"],
        "10.0.0.0/33": ["not an IP range"],
        "10.0.0.0/255.0.0.0": ["prefix length"],
        "10.0.0.0/": ["prefix length"],
        "fe80::%eth0/64": ["scope id"],
        " 10.0.0.0/8": ["spaces"],
        "::ffff:10.0.0.0/104": ["IPv4-mapped"],
        "010.0.0.0/8": ["not an IP range"],
        "": ["empty"],
    }
    for entry, words in cases.items():
        body = refused(create_profile(api, "shop", "office", [entry]), 422, "invalid-ip-range")
        assert body["detail"].startswith("ip_ranges[0]"), body
        for word in words:
            assert word in body["detail"], (entry, body["detail"])
        assert body["invalid"] == [
            {"index": 0, "entry": entry, "reason": body["invalid"][0]["reason"]}
        ]
    body = refused(
        create_profile(api, "shop", "office", ["10.0.0.0/8", "10.1.0.1/16", "x", "::/0"]),
        422,
        "invalid-ip-range",
    )
    assert [e["index"] for e in body["invalid"]] == [1, 2]
    assert "1 more entries are wrong" in body["detail"]
    created = expect(
        create_profile(api, "shop", "office", ["10.0.0.0/8", "10.0.0.0/8", "::1", "0.0.0.0/0"]),
        201,
    )
    assert created["ip_ranges"] == ["10.0.0.0/8", "::1/128", "0.0.0.0/0"]
    refused(
        api.client.patch(
            api.app_url("shop", f"{PROFILES}/office"),
            json={"ip_ranges": ["10.0.0.1/8"]},
            headers=api.admin_headers,
        ),
        422,
        "invalid-ip-range",
    )
    refused(create_profile(api, "shop", "many", ["10.0.0.0/8"] * 501), 422, "invalid-request")


# -- client CAs -----------------------------------------------------------------------------


def test_client_cas_are_shown_as_a_tree_and_uploads_merge(api: Api, pki: dict[str, TestCA]) -> None:
    api.create_app("shop")
    expect(create_profile(api, "shop", "partners"), 201)
    root, issuing, team = pki["root"], pki["issuing"], pki["team"]

    # An intermediate whose issuer is not in the profile is a top-level node.
    tree = expect(upload_cas(api, "shop", "partners", issuing.cert_pem()), 201)
    assert shape(tree["certificates"]) == [(subject(issuing), [])]
    node = tree["certificates"][0]
    assert node["sha256_fingerprint"] == fingerprint(issuing)
    assert node["issuer"] == subject(root)
    assert node["selected"] is False
    assert node["not_after"].startswith(str(issuing.certificate.not_valid_after_utc.year))

    # The root and a CA below, in any order: the tree is redrawn over everything stored.
    tree = expect(
        upload_cas(api, "shop", "partners", pem_certificates([team.certificate, root.certificate])),
        201,
    )
    assert shape(tree["certificates"]) == [
        (subject(root), [(subject(issuing), [(subject(team), [])])])
    ]
    # Same certificates again: nothing added, same tree.
    again = expect(
        upload_cas(
            api,
            "shop",
            "partners",
            pem_certificates([root.certificate, issuing.certificate, team.certificate]),
        ),
        201,
    )
    assert again["certificates"] == tree["certificates"]
    # A single DER certificate is accepted too; another root is a second top-level node.
    other = pki["other"]
    der_file = other.certificate.public_bytes(serialization.Encoding.DER)
    der = expect(upload_cas(api, "shop", "partners", der_file, filename="other.cer"), 201)
    assert sorted(n["subject"] for n in der["certificates"]) == sorted(
        [subject(root), subject(other)]
    )
    profile = expect(
        api.client.get(api.app_url("shop", f"{PROFILES}/partners"), headers=api.admin_headers),
        200,
    )
    assert profile["certificates"] == der["certificates"]
    with api.context.database.reading() as session:
        events = list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == "access_profile.client_cas.upload")
            )
        )
    assert [len(e.detail["added"]) for e in events] == [1, 2, 0, 1]


def test_leaves_and_garbage_are_refused_with_clear_codes(api: Api, pki: dict[str, TestCA]) -> None:
    api.create_app("shop")
    expect(create_profile(api, "shop", "partners"), 201)
    leaf = client_leaf(pki["issuing"], "someone.partner.example")
    body = refused(upload_cas(api, "shop", "partners", leaf.full_chain_pem()), 422, "not-a-ca")
    assert "someone.partner.example" in body["detail"]
    assert any(p["code"] == "not-a-ca" for p in body["problems"])
    refused(upload_cas(api, "shop", "partners", b"hello, world"), 422, "not-certificate-material")
    refused(upload_cas(api, "shop", "partners", b"   \n"), 422, "no-certificate")
    broken = pki["root"].cert_pem().replace(b"MII", b"MIX", 1)
    response = upload_cas(api, "shop", "partners", broken)
    assert response.status_code == 422
    assert response.json()["code"] in {"corrupted", "not-certificate-material"}
    expired = TestCA.root(
        name="expired CA", not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=1)
    )
    refused(upload_cas(api, "shop", "partners", expired.cert_pem()), 422, "expired")
    refused(
        api.client.post(
            api.app_url("shop", f"{PROFILES}/partners/client-cas"),
            files={"file": ("cas.pem", pki["root"].cert_pem())},
            headers=api.admin_headers,
        ),
        422,
        "unknown-field",
    )
    refused(
        upload_cas(api, "shop", "nobody", pki["root"].cert_pem()), 404, "access-profile-not-found"
    )
    profile = expect(
        api.client.get(api.app_url("shop", f"{PROFILES}/partners"), headers=api.admin_headers),
        200,
    )
    assert profile["certificates"] == []


def test_selection_and_removal_of_client_cas(api: Api, pki: dict[str, TestCA]) -> None:
    api.create_app("shop")
    expect(create_profile(api, "shop", "partners"), 201)
    root, issuing, other = pki["root"], pki["issuing"], pki["other"]
    expect(
        upload_cas(
            api,
            "shop",
            "partners",
            pem_certificates([root.certificate, issuing.certificate, other.certificate]),
        ),
        201,
    )
    tree = expect(select_cas(api, "shop", "partners", [fingerprint(issuing).upper()]), 200)
    flags = {n["subject"]: n["selected"] for n in _flatten(tree["certificates"])}
    assert flags == {subject(root): False, subject(issuing): True, subject(other): False}

    unknown = "ab" * 32
    body = refused(select_cas(api, "shop", "partners", [unknown]), 422, "unknown-client-ca")
    assert body["fingerprints"] == [unknown]
    refused(select_cas(api, "shop", "partners", ["not-a-fingerprint"]), 422, "unknown-client-ca")
    # Nothing changed by the refusals.
    assert _selected(api) == {fingerprint(issuing)}

    # The only selected CA cannot be removed while others remain: that would accept all.
    one = api.app_url("shop", f"{PROFILES}/partners/client-cas/{fingerprint(issuing)}")
    refused(api.client.delete(one, headers=api.admin_headers), 409, "last-selected-client-ca")
    expect(select_cas(api, "shop", "partners", []), 200)
    assert _selected(api) == set()
    expect(api.client.delete(one, headers=api.admin_headers), 204)
    refused(api.client.delete(one, headers=api.admin_headers), 404, "client-ca-not-found")
    tree = expect(
        api.client.get(api.app_url("shop", f"{PROFILES}/partners"), headers=api.admin_headers),
        200,
    )
    assert sorted(shape(tree["certificates"])) == sorted(
        [(subject(root), []), (subject(other), [])]
    )


def _flatten(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for n in nodes for m in (n, *_flatten(n["children"]))]


def _selected(api: Api) -> set[str]:
    profile = expect(
        api.client.get(api.app_url("shop", f"{PROFILES}/partners"), headers=api.admin_headers),
        200,
    )
    return {n["sha256_fingerprint"] for n in _flatten(profile["certificates"]) if n["selected"]}


def test_a_profile_named_by_staged_or_applied_path_rules_cannot_be_deleted(api: Api) -> None:
    api.create_app("shop")
    api.create_environment("shop", "prod")
    api.create_environment("shop", "qa")
    expect(create_profile(api, "shop", "office", ["10.0.0.0/8"]), 201)
    one = api.app_url("shop", f"{PROFILES}/office")
    expect(put_rules(api, "shop", "prod", {"/": {"rule": "profile", "profile": "office"}}), 200)
    body = refused(api.client.delete(one, headers=api.admin_headers), 409, "access-profile-in-use")
    assert body["environments"] == [{"environment": "prod", "staged": True, "applied": False}]
    assert "prod (staged)" in body["detail"]

    api.restart("shop", "prod")
    expect(put_rules(api, "shop", "qa", {"/admin": {"rule": "profile", "profile": "office"}}), 200)
    expect(put_rules(api, "shop", "prod", {}), 200)  # staged away, still applied
    body = refused(api.client.delete(one, headers=api.admin_headers), 409, "access-profile-in-use")
    assert body["environments"] == [
        {"environment": "prod", "staged": False, "applied": True},
        {"environment": "qa", "staged": True, "applied": False},
    ]
    api.restart("shop", "prod")
    expect(put_rules(api, "shop", "qa", {}), 200)
    expect(api.client.delete(one, headers=api.admin_headers), 204)


def test_viewers_read_and_members_of_the_app_change_profiles(api: Api) -> None:
    api.create_app("shop")
    viewer = api.create_token("viewer", app="shop")
    member = api.create_token("member", app="shop")
    expect(
        api.client.post(
            api.app_url("shop", PROFILES), json={"name": "office"}, headers=member.headers
        ),
        201,
    )
    expect(api.client.get(api.app_url("shop", PROFILES), headers=viewer.headers), 200)
    refused(
        api.client.post(api.app_url("shop", PROFILES), json={"name": "x"}, headers=viewer.headers),
        403,
        "forbidden",
    )
    refused(
        api.client.delete(api.app_url("shop", f"{PROFILES}/office"), headers=viewer.headers),
        403,
        "forbidden",
    )


# -- what the data plane reads --------------------------------------------------------------


def test_applied_access_gives_applied_rules_live_profiles_and_accepted_issuers(
    api: Api, pki: dict[str, TestCA]
) -> None:
    root, issuing, team, other = pki["root"], pki["issuing"], pki["team"], pki["other"]
    api.create_app("shop")
    api.create_environment("shop", "prod")
    api.create_environment("shop", "qa")
    expect(create_profile(api, "shop", "office", ["10.0.0.0/8", "2001:db8::/32"]), 201)
    expect(create_profile(api, "shop", "partners"), 201)
    expect(
        upload_cas(
            api,
            "shop",
            "partners",
            pem_certificates(
                [root.certificate, issuing.certificate, team.certificate, other.certificate]
            ),
        ),
        201,
    )
    rules = {
        "/": {"rule": "profile", "profile": "office"},
        "/partner-api/": {"rule": "profile", "profile": "partners"},
        "/ws/": {"rule": "allow-all"},
        "/ws/admin": {"rule": "inherit"},
        "/api-doc": {"rule": "deny-all"},
    }
    expect(put_rules(api, "shop", "prod", rules), 200)
    prod, qa = environment_id(api, "shop", "prod"), environment_id(api, "shop", "qa")

    before = access_of(api)
    assert before[prod].path_rules == ()  # staged only
    api.restart("shop", "prod")
    access = access_of(api)
    assert set(access) >= {prod, qa}
    assert access[prod].path_rules == (
        DataPlaneRule(prefix="/", rule=RuleKind.PROFILE, profile="office"),
        DataPlaneRule(prefix="/api-doc", rule=RuleKind.DENY_ALL),
        DataPlaneRule(prefix="/partner-api/", rule=RuleKind.PROFILE, profile="partners"),
        DataPlaneRule(prefix="/ws/", rule=RuleKind.ALLOW_ALL),
        DataPlaneRule(prefix="/ws/admin", rule=RuleKind.INHERIT),
    )
    assert access[qa].path_rules == ()
    assert access[qa].profiles is access[prod].profiles  # the app's profiles, shared
    office = access[prod].profiles["office"]
    assert office.ip_ranges == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert office.client_cas == ()
    assert not office.wants_client_certificate

    # Nothing selected: every CA is accepted, and every one may issue.
    partners = access[prod].profiles["partners"]
    assert {ca.sha256_fingerprint for ca in partners.client_cas} == {
        fingerprint(ca) for ca in (root, issuing, team, other)
    }
    assert partners.accepted_issuers == {subject(ca) for ca in (root, issuing, team, other)}
    for ca in partners.client_cas:
        loaded = x509.load_pem_x509_certificate(ca.certificate_pem)
        assert loaded.subject.rfc4514_string() == ca.subject
        assert ca.sha256_fingerprint == loaded.fingerprint(hashes.SHA256()).hex()

    # The issuing CA selected: it and the CA below it issue; the root and the other do not.
    expect(select_cas(api, "shop", "partners", [fingerprint(issuing)]), 200)
    partners = access_of(api)[prod].profiles["partners"]  # live: no restart
    assert [ca.subject for ca in partners.client_cas] == [subject(issuing)]
    assert partners.accepted_issuers == {subject(issuing), subject(team)}
    trusted = x509.load_pem_x509_certificates(partners.trust_pem)
    assert {c.subject.rfc4514_string() for c in trusted} == {subject(issuing), subject(team)}

    # Profile edits are live too; path rules wait for the restart.
    expect(
        api.client.patch(
            api.app_url("shop", f"{PROFILES}/office"),
            json={"ip_ranges": ["192.0.2.0/24"]},
            headers=api.admin_headers,
        ),
        200,
    )
    expect(put_rules(api, "shop", "prod", {"/": {"rule": "deny-all"}}), 200)
    access = access_of(api)
    assert access[prod].profiles["office"].ip_ranges == (ipaddress.ip_network("192.0.2.0/24"),)
    assert len(access[prod].path_rules) == 5


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_applied_access_costs_the_same_few_queries_for_any_number_of_environments(
    api: Api,
) -> None:
    def statements() -> int:
        count = 0

        def count_one(*_: Any) -> None:
            nonlocal count
            count += 1

        engine = api.context.database.engine
        event.listen(engine, "before_cursor_execute", count_one)
        try:
            access_of(api)
        finally:
            event.remove(engine, "before_cursor_execute", count_one)
        return count

    api.create_app("shop")
    expect(create_profile(api, "shop", "office", ["10.0.0.0/8"]), 201)
    expect(
        api.client.post(
            api.app_url("shop", "/ip-deny-profiles"),
            json={"name": "abuse", "ip_ranges": ["203.0.113.0/24"]},
            headers=api.admin_headers,
        ),
        201,
    )

    def grow(first: int, last: int) -> None:
        for n in range(first, last):
            env = f"e{n}"
            api.create_environment("shop", env)
            expect(
                put_rules(api, "shop", env, {"/": {"rule": "profile", "profile": "office"}}), 200
            )
            api.restart("shop", env)
            expect(
                api.client.put(
                    api.env_url("shop", env, "/ip-deny-profiles"),
                    json={"profiles": ["abuse"]},
                    headers=api.admin_headers,
                ),
                200,
            )

    grow(0, 3)
    few = statements()
    grow(3, 15)
    first = statements()  # new versions read once...
    again = statements()  # ...then kept
    assert first == few, (few, first)
    assert again <= few
    assert few <= 8
    access = access_of(api)
    assert len(access) == 15
    assert all(a.deny_ranges == (ipaddress.ip_network("203.0.113.0/24"),) for a in access.values())
    assert all(len(a.path_rules) == 1 for a in access.values())
