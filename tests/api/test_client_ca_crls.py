"""CRLs of client CAs: uploaded, checked, shown and removed through the API."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from certward.model import AuditEvent
from certward.services.client_ca_crls import reconcile_stale_crls
from certward.services.dataplane_feed import DataPlaneFeed
from certward.services.dataplane_follower import StateFollower
from certward.settings import ExpiredCrl
from tests.api.conftest import Api, expect
from tests.api.test_access_profiles import create_profile, fingerprint, refused, upload_cas
from tests.material.crls import make_crl
from tests.material.factory import NOW, TestCA


@pytest.fixture(scope="module")
def cas() -> dict[str, TestCA]:
    root = TestCA.root(name="partner root CA")
    return {"root": root, "other": TestCA.root(name="other root CA")}


def crl_url(api: Api, ca: TestCA, profile: str = "partners") -> str:
    return api.app_url("shop", f"/access-profiles/{profile}/client-cas/{fingerprint(ca)}/crl")


def put_crl(api: Api, ca: TestCA, data: bytes, filename: str = "ca.crl") -> object:
    return api.client.put(
        crl_url(api, ca), files={"crl": (filename, data)}, headers=api.admin_headers
    )


def setup_profile(api: Api, root: TestCA) -> None:
    api.create_app("shop")
    expect(create_profile(api, "shop", "partners"), 201)
    expect(upload_cas(api, "shop", "partners", root.cert_pem()), 201)


def test_a_crl_is_uploaded_shown_replaced_and_removed(api: Api, cas: dict[str, TestCA]) -> None:
    root = cas["root"]
    setup_profile(api, root)
    response = api.client.get(crl_url(api, root), headers=api.admin_headers)
    refused(response, 404, "crl-not-found")  # type: ignore[arg-type]

    view = expect(put_crl(api, root, make_crl(root, [5, 6, 7])), 200)  # type: ignore[arg-type]
    assert view["issuer"] == root.certificate.subject.rfc4514_string()
    assert view["revoked"] == 3
    assert view["stale"] is False
    assert view["next_update"].startswith(str((NOW + timedelta(days=7)).date()))
    shown = expect(api.client.get(crl_url(api, root), headers=api.admin_headers), 200)
    assert shown == view
    profile = expect(
        api.client.get(api.app_url("shop", "/access-profiles/partners"), headers=api.admin_headers),
        200,
    )
    assert profile["certificates"][0]["crl"]["revoked"] == 3  # the tree shows it too

    # DER is read too, and replaces the earlier CRL.
    view = expect(put_crl(api, root, make_crl(root, [5], pem=False)), 200)  # type: ignore[arg-type]
    assert view["revoked"] == 1

    expect(api.client.delete(crl_url(api, root), headers=api.admin_headers), 204)
    with api.context.database.reading() as session:
        actions = list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.action.like("access_profile.client_ca_crl.%"))
                .order_by(AuditEvent.id)
            )
        )
    assert sorted(actions) == sorted(["access_profile.client_ca_crl.upload"] * 2
                                     + ["access_profile.client_ca_crl.remove"])  # fmt: skip
    refused(api.client.get(crl_url(api, root), headers=api.admin_headers), 404, "crl-not-found")
    refused(api.client.delete(crl_url(api, root), headers=api.admin_headers), 404, "crl-not-found")


def test_wrong_crls_are_refused_with_precise_codes(api: Api, cas: dict[str, TestCA]) -> None:
    root, other = cas["root"], cas["other"]
    setup_profile(api, root)
    cases = [
        (b"not a crl at all", "invalid-crl"),
        (make_crl(other), "crl-issuer-mismatch"),
        (make_crl(root, signer=other), "crl-signature-invalid"),
        (make_crl(root, this_update=NOW + timedelta(days=1)), "crl-not-yet-valid"),
        (
            make_crl(
                root, this_update=NOW - timedelta(days=9), next_update=NOW - timedelta(days=2)
            ),
            "crl-expired",
        ),
    ]
    for data, code in cases:
        refused(put_crl(api, root, data), 422, code)  # type: ignore[arg-type]
    refused(api.client.get(crl_url(api, root), headers=api.admin_headers), 404, "crl-not-found")
    refused(put_crl(api, other, make_crl(other)), 404, "client-ca-not-found")  # type: ignore[arg-type]


def test_a_crl_reaches_a_following_data_plane_through_the_change_feed(
    api: Api, cas: dict[str, TestCA]
) -> None:
    root = cas["root"]
    setup_profile(api, root)
    api.create_environment("shop", "prod")
    feed = DataPlaneFeed(api.context)
    follower = StateFollower(feed, kind="gateway", node="test/gateway/crl")

    def crls() -> set[tuple[bytes, ...]]:
        state = follower.load()
        assert state.version == feed.load().version
        return {
            tuple(c.der for c in site.profiles["partners"].crls) for site in state.sites.values()
        }

    assert crls() == {()}
    first = make_crl(root, [1], pem=False)
    expect(put_crl(api, root, first), 200)  # type: ignore[arg-type]
    assert crls() == {(first,)}
    second = make_crl(root, [1, 2], pem=False)
    expect(put_crl(api, root, second), 200)  # type: ignore[arg-type]
    assert crls() == {(second,)}
    expect(api.client.delete(crl_url(api, root), headers=api.admin_headers), 204)
    assert crls() == {()}
    assert follower.full_loads == 1


def test_a_stale_crl_is_set_aside_under_warn_and_taken_back_under_refuse(
    api: Api, cas: dict[str, TestCA], caplog: pytest.LogCaptureFixture
) -> None:
    root = cas["root"]
    setup_profile(api, root)
    api.create_environment("shop", "prod")
    crl = make_crl(root, [1], pem=False)
    expect(put_crl(api, root, crl), 200)  # type: ignore[arg-type]
    feed = DataPlaneFeed(api.context)
    warn = replace(api.context, settings=replace(api.context.settings, expired_crl=ExpiredCrl.WARN))

    def served() -> set[tuple[bytes, ...]]:
        return {
            tuple(c.der for c in site.profiles["partners"].crls)
            for site in feed.load().sites.values()
        }

    assert reconcile_stale_crls(warn) == 0  # current: nothing to set aside
    api.clock.advance(timedelta(days=8))  # past nextUpdate
    assert reconcile_stale_crls(api.context) == 0  # refuse: stays, OpenSSL refuses
    assert served() == {(crl,)}
    with caplog.at_level(logging.WARNING, logger="certward.services.client_ca_crls"):
        assert reconcile_stale_crls(warn) == 1
    assert "set aside" in caplog.text
    assert served() == {()}
    shown = expect(api.client.get(crl_url(api, root), headers=api.admin_headers), 200)
    assert (shown["stale"], shown["set_aside"]) == (True, True)
    assert reconcile_stale_crls(warn) == 0

    assert reconcile_stale_crls(api.context) == 1  # back to refuse
    assert served() == {(crl,)}
    # A newer CRL is used whatever the setting.
    newer = make_crl(root, [2], this_update=NOW + timedelta(days=7),
                     next_update=NOW + timedelta(days=14), pem=False)  # fmt: skip
    reconcile_stale_crls(warn)
    expect(put_crl(api, root, newer), 200)  # type: ignore[arg-type]
    assert served() == {(newer,)}
