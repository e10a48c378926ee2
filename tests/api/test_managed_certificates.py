"""Managed default-domain certificates and the platform CA, through the API and the
services, on SQLite and PostgreSQL: issued with the environment, renewed when due (with
backoff on failure, by any number of workers, never twice), and CA rotation that keeps
what is still in use published."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID
from cryptography.x509.verification import PolicyBuilder, Store
from sqlalchemy import func, select, update

from certward.authorization import Principal
from certward.errors import SecretError
from certward.model import CaState, Environment, ManagedCertificate, PlatformCa
from certward.pki.material import load_stored_private_key
from certward.services import apps, managed, platform_ca
from certward.services.managed import managed_key_aad, renew_due
from certward.services.platform_ca import ca_key_aad
from certward.services.renewal_queue import CLAIM_LEASE, RenewalReport
from certward.vocabulary import Role
from certward.worker import RenewalWorker
from tests.api.conftest import API, Api, expect

ADMIN = Principal(token_id=None, role=Role.ADMIN)


def managed_certificate(api: Api, app: str = "shop", env: str = "prod") -> dict[str, Any]:
    body: dict[str, Any] = expect(
        api.client.get(api.env_url(app, env, "/managed-certificate"), headers=api.admin_headers),
        200,
    )
    return body


def public_roots(api: Api, *, every: bool = False) -> list[x509.Certificate]:
    """The PEM of GET /api/v1/platform/ca, fetched without a token."""
    response = api.client.get(f"{API}/platform/ca", params={"all": "true"} if every else None)
    assert response.status_code == 200
    return x509.load_pem_x509_certificates(response.content)


def verify(body: dict[str, Any], roots: list[x509.Certificate], api: Api) -> list[x509.Certificate]:
    """The verified chain of a managed-certificate answer, for its hostname, now."""
    leaf = x509.load_pem_x509_certificate(body["certificate_pem"].encode())
    chain = x509.load_pem_x509_certificates(body["chain_pem"].encode())
    verifier = (
        PolicyBuilder()
        .store(Store(roots))
        .time(api.clock.now())
        .build_server_verifier(x509.DNSName(body["hostname"]))
    )
    return verifier.verify(leaf, chain)


def rows(api: Api, env: str = "prod") -> list[ManagedCertificate]:
    with api.context.database.reading() as session:
        environment_id = session.scalar(select(Environment.id).where(Environment.name == env))
        return list(
            session.scalars(
                select(ManagedCertificate)
                .where(ManagedCertificate.environment_id == environment_id)
                .order_by(ManagedCertificate.created_at)
            )
        )


def make_due(api: Api) -> None:
    """Move the clock just past the newest renew_after of every active certificate."""
    with api.context.database.reading() as session:
        latest = session.scalar(
            select(func.max(ManagedCertificate.renew_after)).where(
                ManagedCertificate.state == "active"
            )
        )
    assert latest is not None
    api.clock.set(latest + timedelta(seconds=1))


def ca_rows(api: Api) -> dict[str, PlatformCa]:
    with api.context.database.reading() as session:
        return {row.id: row for row in session.scalars(select(PlatformCa))}


def test_creating_an_environment_issues_a_certificate_for_its_hostname(api: Api) -> None:
    """The new environment's default hostname has a certificate chaining to the public root,
    renewal scheduled inside its lifetime, and its key sealed to its row."""
    environment = api.create_app_and_environment("shop", "prod")
    viewer = api.create_token("viewer", app="shop")
    body = expect(
        api.client.get(api.env_url("shop", "prod", "/managed-certificate"), headers=viewer.headers),
        200,
    )
    assert body["hostname"] == environment["hostname"] == "prod-shop.apps.localhost"
    assert body["subject"] == "CN=prod-shop.apps.localhost"
    assert body["issuer"].startswith("CN=certward platform issuing CA")
    assert body["not_before"] < body["renew_after"] < body["not_after"]
    assert body["attempts"] == 0
    assert "PRIVATE KEY" not in str(body)
    verify(body, public_roots(api), api)
    [row] = rows(api)
    key = load_stored_private_key(
        api.context.secrets.decrypt(row.private_key_ciphertext, aad=managed_key_aad(row.id))
    )
    leaf = x509.load_pem_x509_certificate(row.certificate_pem.encode())
    assert key.public_key() == leaf.public_key()
    assert row.not_after - row.not_before + timedelta(seconds=1) == timedelta(days=7)


def test_managed_certificate_is_scoped_like_its_environment(api: Api) -> None:
    """No token: 401; a token of another app: 404, as for everything of that environment."""
    api.create_app_and_environment("shop", "prod")
    api.create_app("other")
    outsider = api.create_token("viewer", app="other")
    url = api.env_url("shop", "prod", "/managed-certificate")
    assert api.client.get(url).status_code == 401
    assert api.client.get(url, headers=outsider.headers).status_code == 404


def test_nothing_is_renewed_before_it_is_due(api: Api) -> None:
    """A pass before renew_after claims nothing."""
    api.create_app_and_environment("shop", "prod")
    api.clock.set(rows(api)[0].renew_after - timedelta(seconds=1))
    assert renew_due(api.context, worker="w", limit=10) == RenewalReport(
        claimed=0, renewed=0, failed=0, lost=0
    )


def test_due_certificate_is_renewed_and_the_old_one_superseded(api: Api) -> None:
    """Past renew_after a pass issues a new certificate, valid now, for the same hostname;
    the old row is superseded; the next renewal is scheduled from the new dates."""
    api.create_app_and_environment("shop", "prod")
    before = managed_certificate(api)
    make_due(api)
    report = renew_due(api.context, worker="w", limit=10)
    assert report == RenewalReport(claimed=1, renewed=1, failed=0, lost=0)
    after = managed_certificate(api)
    assert after["serial"] != before["serial"]
    assert after["hostname"] == before["hostname"]
    assert after["not_before"] > before["not_before"]
    assert after["renew_after"] > api.clock.now().isoformat()
    verify(after, public_roots(api), api)
    old, new = rows(api)
    assert (old.state, new.state) == ("superseded", "active")
    assert old.claimed_by is None
    assert renew_due(api.context, worker="w", limit=10).claimed == 0


def test_failed_renewal_backs_off_and_recovers_without_restart(api: Api) -> None:
    """With the CA key broken each pass fails, records why, and waits 1, then 2 minutes;
    once the key is restored the next pass renews, in the same process."""
    api.create_app_and_environment("shop", "prod")
    cas = ca_rows(api)
    intermediate = next(r for r in cas.values() if r.kind == "intermediate")
    root = next(r for r in cas.values() if r.kind == "root")
    with api.context.database.transaction() as session:  # a ciphertext bound to another row
        session.execute(
            update(PlatformCa)
            .where(PlatformCa.id == intermediate.id)
            .values(private_key_ciphertext=root.private_key_ciphertext)
        )
    failures_before = managed.COUNTERS.failed
    make_due(api)
    assert renew_due(api.context, worker="w", limit=10).failed == 1
    [row] = rows(api)
    assert row.attempts == 1
    assert row.next_attempt_at == api.clock.now() + timedelta(minutes=1)
    assert row.last_error is not None
    assert "cannot issue" in row.last_error
    assert row.claimed_by is None
    assert renew_due(api.context, worker="w", limit=10).claimed == 0  # backing off
    api.clock.advance(timedelta(minutes=1))
    assert renew_due(api.context, worker="w", limit=10).failed == 1
    [row] = rows(api)
    assert row.attempts == 2
    assert row.next_attempt_at == api.clock.now() + timedelta(minutes=2)
    assert managed.COUNTERS.failed - failures_before >= 2
    assert managed_certificate(api)["attempts"] == 2
    with api.context.database.transaction() as session:
        session.execute(
            update(PlatformCa)
            .where(PlatformCa.id == intermediate.id)
            .values(private_key_ciphertext=intermediate.private_key_ciphertext)
        )
    api.clock.advance(timedelta(minutes=2))
    assert renew_due(api.context, worker="w", limit=10).renewed == 1
    old, new = rows(api)
    assert (old.state, new.state, new.attempts, new.last_error) == (
        "superseded",
        "active",
        0,
        None,
    )


def test_environment_creation_fails_whole_when_the_ca_cannot_issue(api: Api) -> None:
    """Issuance is part of creating the environment: a broken CA key stores nothing."""
    api.create_app("shop")
    cas = ca_rows(api)
    intermediate = next(r for r in cas.values() if r.kind == "intermediate")
    with api.context.database.transaction() as session:
        session.execute(
            update(PlatformCa)
            .where(PlatformCa.id == intermediate.id)
            .values(private_key_ciphertext=b"\x01" + bytes(40))
        )
    with pytest.raises(SecretError):
        apps.create_environment(
            api.context, ADMIN, "shop", name="prod", upstream="http://10.0.0.1:80"
        )
    with api.context.database.reading() as session:
        assert session.scalar(select(func.count()).select_from(Environment)) == 0


def test_an_expired_claim_of_a_dead_worker_is_taken_over(api: Api) -> None:
    """A row claimed by a worker that died is left alone until the lease ends, then renewed."""
    api.create_app_and_environment("shop", "prod")
    make_due(api)
    with api.context.database.transaction() as session:
        session.execute(
            update(ManagedCertificate).values(
                claimed_by="dead-worker", claimed_until=api.clock.now() + CLAIM_LEASE
            )
        )
    assert renew_due(api.context, worker="w", limit=10).claimed == 0
    api.clock.advance(CLAIM_LEASE + timedelta(seconds=1))
    assert renew_due(api.context, worker="w", limit=10).renewed == 1


@pytest.mark.slow
def test_two_workers_never_renew_a_certificate_twice(api: Api) -> None:
    """Two workers racing over 40 due certificates in small batches renew each exactly once:
    one superseded and one active row per environment, every serial distinct."""
    api.create_app("shop")
    environments = 40
    for number in range(environments):
        apps.create_environment(
            api.context, ADMIN, "shop", name=f"e{number}", upstream="http://10.0.0.1:80"
        )
    make_due(api)
    start = threading.Barrier(2)
    reports: dict[str, list[RenewalReport]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            start.wait()
            while True:
                report = renew_due(api.context, worker=name, limit=3)
                reports[name].append(report)
                if report.claimed == 0:
                    return
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in reports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    renewed = sum(r.renewed for worker in reports.values() for r in worker)
    assert renewed == environments
    with api.context.database.reading() as session:
        per_environment = session.execute(
            select(
                ManagedCertificate.environment_id,
                ManagedCertificate.state,
                func.count(),
            ).group_by(ManagedCertificate.environment_id, ManagedCertificate.state)
        ).all()
        serials = session.scalars(select(ManagedCertificate.serial)).all()
    counts: dict[str, dict[str, int]] = {}
    for environment_id, state, count in per_environment:
        counts.setdefault(environment_id, {})[state] = count
    assert len(counts) == environments
    assert all(c == {"active": 1, "superseded": 1} for c in counts.values())
    assert len(set(serials)) == len(serials) == 2 * environments


def test_worker_thread_renews_and_stops(api: Api) -> None:
    """The loop ``certward serve`` runs in a thread renews what is due, and stops on request."""
    api.create_app_and_environment("shop", "prod")
    make_due(api)
    worker = RenewalWorker(api.context, name="serve-thread")
    worker.start()
    try:
        renewed = threading.Event()
        for _ in range(300):
            if len(rows(api)) == 2:
                renewed.set()
                break
            renewed.wait(0.1)
    finally:
        worker.stop(timeout=30)
    assert renewed.is_set()
    assert worker._thread is not None
    assert not worker._thread.is_alive()


# -- the platform CA ------------------------------------------------------------------------


def test_platform_ca_root_is_public(api: Api) -> None:
    """GET /api/v1/platform/ca needs no token and returns the active root as PEM."""
    response = api.client.get(f"{API}/platform/ca")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-pem-file")
    [root] = x509.load_pem_x509_certificates(response.content)
    view = platform_ca.show(api.context)
    assert root.public_bytes(serialization.Encoding.PEM).decode() == view.root.certificate_pem
    assert root.subject == root.issuer
    listing = expect(api.client.get(f"{API}/platform/ca/certificates"), 200)
    assert {(c["kind"], c["state"]) for c in listing} == {
        ("root", "active"),
        ("intermediate", "active"),
    }
    assert all("private" not in key for c in listing for key in c)


def test_issued_urls_point_at_the_published_certificate_and_crl(api: Api) -> None:
    """The caIssuers and CRL URLs of a managed certificate are routes of the API: the
    issuing certificate in DER, and a CRL that issuer signed."""
    api.create_app_and_environment("shop", "prod")
    leaf = x509.load_pem_x509_certificate(managed_certificate(api)["certificate_pem"].encode())
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    [ca_issuers] = [
        d.access_location.value
        for d in aia
        if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
    ]
    crl_points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    [crl_url] = [name.value for point in crl_points for name in point.full_name or ()]
    base = api.settings.ca_publication_url
    assert ca_issuers.startswith(base)
    assert crl_url.startswith(base)
    path = base.removeprefix("http://apps.localhost")
    issuer_der = api.client.get(path + ca_issuers.removeprefix(base))
    assert issuer_der.status_code == 200
    assert issuer_der.headers["content-type"] == "application/pkix-cert"
    issuer = x509.load_der_x509_certificate(issuer_der.content)
    assert issuer.subject == leaf.issuer
    crl_response = api.client.get(path + crl_url.removeprefix(base))
    assert crl_response.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(crl_response.content)
    assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    assert api.client.get(f"{API}/platform/ca/no-such-ca/crl").status_code == 404


def test_ca_keys_are_sealed_to_their_rows(api: Api) -> None:
    """Each CA key decrypts only with its own row's associated data and matches its cert."""
    for row in ca_rows(api).values():
        key = load_stored_private_key(
            api.context.secrets.decrypt(row.private_key_ciphertext, aad=ca_key_aad(row.id))
        )
        certificate = x509.load_pem_x509_certificate(row.certificate_pem.encode())
        assert key.public_key() == certificate.public_key()
        with pytest.raises(SecretError):
            api.context.secrets.decrypt(row.private_key_ciphertext, aad=ca_key_aad("other"))


def test_starting_again_keeps_the_same_ca(api: Api) -> None:
    """ensure_platform_ca at every start creates the CA once only."""
    first = platform_ca.ensure_platform_ca(api.context)
    second = platform_ca.ensure_platform_ca(api.context)
    assert len(second.certificates) == 2
    assert second.root.id == first.root.id
    assert second.intermediate.id == first.intermediate.id


def test_rotation_keeps_the_old_intermediate_published_until_replaced(api: Api) -> None:
    """After rotation the old intermediate is retiring and still served while a certificate
    it issued is active; once that is renewed by the new one, it is retired."""
    api.create_app_and_environment("shop", "prod")
    old = platform_ca.show(api.context)
    rotated = platform_ca.rotate(api.context, new_root=False)
    assert rotated.root.id == old.root.id
    assert rotated.intermediate.id != old.intermediate.id
    states = {c.id: c.state for c in rotated.certificates}
    assert states[old.intermediate.id] is CaState.RETIRING
    published = expect(api.client.get(f"{API}/platform/ca/certificates"), 200)
    assert {c["id"] for c in published} == {
        old.root.id,
        old.intermediate.id,
        rotated.intermediate.id,
    }
    served = {c.subject for c in public_roots(api, every=True)}
    assert len(served) == 3
    verify(managed_certificate(api), public_roots(api), api)  # trust is not broken
    make_due(api)
    assert renew_due(api.context, worker="w", limit=10).renewed == 1
    body = managed_certificate(api)
    assert body["issuer"] == rotated.intermediate.subject
    verify(body, public_roots(api), api)
    after = platform_ca.show(api.context)
    states = {c.id: c.state for c in after.certificates}
    assert states[old.intermediate.id] is CaState.RETIRED
    published = expect(api.client.get(f"{API}/platform/ca/certificates"), 200)
    assert old.intermediate.id not in {c["id"] for c in published}
    everything = expect(api.client.get(f"{API}/platform/ca/certificates?all=true"), 200)
    assert old.intermediate.id in {c["id"] for c in everything}


def test_new_root_rotation_overlaps_until_every_certificate_moved(api: Api) -> None:
    """With a new root the old root stays published (``all=true``) and keeps verifying the
    certificates it covers; after renewal they chain to the new root and the old one retires."""
    api.create_app_and_environment("shop", "prod")
    old = platform_ca.show(api.context)
    old_roots = public_roots(api)
    rotated = platform_ca.rotate(api.context, new_root=True)
    assert rotated.root.id != old.root.id
    new_roots = public_roots(api)
    assert new_roots != old_roots
    assert {r.subject for r in old_roots} <= {r.subject for r in public_roots(api, every=True)}
    verify(managed_certificate(api), old_roots, api)
    make_due(api)
    assert renew_due(api.context, worker="w", limit=10).renewed == 1
    renewed = managed_certificate(api)
    verify(renewed, new_roots, api)
    with pytest.raises(x509.verification.VerificationError):
        verify(renewed, old_roots, api)
    states = {c.id: c.state for c in platform_ca.show(api.context).certificates}
    assert states[old.root.id] is CaState.RETIRED
    assert states[old.intermediate.id] is CaState.RETIRED
    assert states[rotated.root.id] is CaState.ACTIVE
