"""Issuance throughput of the built-in CA, and time to renew 10,000 due certificates.

1. **Throughput**: certificates per second through the service (`renew_due` over
   batches of due certificates: claim, key generation, build and sign, key sealed with
   AES-GCM, rows stored) as a ratio of the bare ``cryptography`` rate (key generation +
   build + sign of a certificate with the same extensions, written out with pyca
   alone) measured in the same run, interleaved. Target: ratio >= 0.5. For reference
   the ratio to a minimal certificate (name and SAN only) is printed too.
2. **Renewal of 10,000 due certificates** on SQLite and on PostgreSQL: 10,000
   environments and their certificates are seeded with bulk inserts (copies of one
   issued certificate: renewal never reads the old key), the clock moved past their
   renewal time, then `renew_due` runs in batches until nothing is due.

PostgreSQL is ``CERTWARD_TEST_DATABASE_URL`` (default: the local test server), in a
schema of its own that is dropped afterwards; skipped when it does not answer.
"""

from __future__ import annotations

import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from _harness import per_call_seconds
from certward.authorization import Principal
from certward.clock import FixedClock
from certward.issuing.ca import DOMAIN_VALIDATED_POLICY, Authority
from certward.model import App, Environment, ManagedCertificate, new_id
from certward.platform import Platform, open_platform
from certward.services import apps, platform_ca
from certward.services.managed import renew_due
from certward.settings import Settings
from certward.vocabulary import Plan, Role
from certward.worker import BATCH
from tests.material.factory import NOW

ADMIN = Principal(token_id=None, role=Role.ADMIN)
THROUGHPUT_CERTIFICATES = 1000  # per measured round: two of the worker's batches
THROUGHPUT_ROUNDS = 7
RENEWALS = 10_000
TARGET_RATIO = 0.5
DEFAULT_POSTGRESQL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextmanager
def installation(database: str) -> Iterator[Platform]:
    """A fresh installation on ``database`` (``sqlite`` or ``postgresql``), clock at NOW."""
    with tempfile.TemporaryDirectory() as data_dir:
        environ = {"CERTWARD_DATA_DIR": data_dir}
        if database == "sqlite":
            yield _open(environ)
            return
        base = make_url(os.environ.get("CERTWARD_TEST_DATABASE_URL", DEFAULT_POSTGRESQL))
        schema = f"certward_bench_{secrets.token_hex(6)}"
        admin = create_engine(base, connect_args={"connect_timeout": 5})
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            url = base.update_query_dict({"options": f"-csearch_path={schema}"})
            environ["CERTWARD_DATABASE_URL"] = url.render_as_string(hide_password=False)
            yield _open(environ)
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()


def _open(environ: dict[str, str]) -> Platform:
    return open_platform(Settings.from_env(environ), clock=FixedClock(NOW))


def seed(platform: Platform, count: int) -> None:
    """``count`` environments of one app, each with an active certificate due at NOW + 1 h."""
    ctx = platform.context
    apps.create_app(ctx, ADMIN, name="bench", plan=Plan.LICENSED)
    apps.create_environment(ctx, ADMIN, "bench", name="template", upstream="http://10.0.0.1:80")
    with ctx.database.transaction() as session:
        app_id = session.scalar(select(App.id).where(App.name == "bench"))
        template = session.scalar(select(ManagedCertificate))
        assert template is not None
        environments = [
            {
                "id": new_id(),
                "app_id": app_id,
                "name": f"e{n}",
                "upstream": "http://10.0.0.1:80",
                "hostname": f"e{n}-bench.{ctx.settings.platform_domain}",
                "no_client_certificate": [],
                "created_at": NOW,
            }
            for n in range(count)
        ]
        session.execute(insert(Environment), environments)
        copied = {
            c.key: getattr(template, c.key)
            for c in ManagedCertificate.__table__.columns
            if c.key not in {"id", "environment_id", "hostname"}
        }
        session.execute(
            insert(ManagedCertificate),
            [
                {
                    **copied,
                    "id": new_id(),
                    "environment_id": e["id"],
                    "hostname": e["hostname"],
                    "renew_after": NOW + timedelta(hours=1),
                }
                for e in environments
            ],
        )
        session.execute(
            ManagedCertificate.__table__.delete().where(ManagedCertificate.id == template.id)
        )


def renew_all(platform: Platform) -> tuple[int, float]:
    """Renew everything due in the worker's batches; the count and the seconds it took."""
    renewed = 0
    start = time.perf_counter()
    while True:
        report = renew_due(platform.context, worker="bench", limit=BATCH)
        renewed += report.renewed
        if report.failed:
            raise RuntimeError(f"{report.failed} renewal(s) failed")
        if report.claimed < BATCH:
            return renewed, time.perf_counter() - start


def bare_issue(issuer: Authority, hostname: str) -> x509.Certificate:
    """Key generation + build + sign with ``cryptography`` alone, of the same profile as the
    built-in CA's (the Baseline Requirements' extensions; the URLs fixed strings)."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    issuer_ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, **usage), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski.value),
            critical=False,
        )
        .add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(DOMAIN_VALIDATED_POLICY, None)]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier("http://ca.example/1/certificate"),
                    )
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier("http://ca.example/1/crl")],
                        None,
                        None,
                        None,
                    )
                ]
            ),
            critical=False,
        )
    )
    return builder.sign(issuer.private_key, hashes.SHA256())


def minimal_issue(issuer: Authority, hostname: str) -> x509.Certificate:
    """The least a server certificate can be (key, name, SAN): for reference only."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
    )
    return builder.sign(issuer.private_key, hashes.SHA256())


def throughput(database: str) -> None:
    with installation(database) as platform:
        ctx = platform.context
        seed(platform, THROUGHPUT_CERTIFICATES)
        with ctx.database.reading() as session:
            issuer = platform_ca.issuing_ca(session, ctx)
        authority, host = issuer.authority, "e1-bench.apps.localhost"
        ours: list[float] = []
        theirs: list[float] = []
        minimal: list[float] = []
        bare_issue(authority, host)
        for _ in range(THROUGHPUT_ROUNDS):
            theirs.append(per_call_seconds(lambda: bare_issue(authority, host), 200))
            minimal.append(per_call_seconds(lambda: minimal_issue(authority, host), 200))
            # Make every certificate due again, then renew them all through the service.
            with ctx.database.reading() as session:
                latest = session.scalar(select(func.max(ManagedCertificate.renew_after)))
            assert latest is not None
            ctx.clock.set(latest + timedelta(seconds=1))  # type: ignore[attr-defined]
            renewed, seconds = renew_all(platform)
            assert renewed == THROUGHPUT_CERTIFICATES, renewed
            ours.append(seconds / renewed)
        service, bare = statistics.median(ours), statistics.median(theirs)
        least = statistics.median(minimal)
        ratio = bare / service
        verdict = "ok" if ratio >= TARGET_RATIO else f"BELOW {TARGET_RATIO}"
        print(
            f"{database:<10} issuance via renew_due {1 / service:6.0f} certificates/s vs bare "
            f"cryptography, same profile, {1 / bare:6.0f}/s: ratio {ratio:.2f}  {verdict}  "
            f"(minimal 3-field certificate {1 / least:6.0f}/s: ratio {least / service:.2f})"
        )
        platform.close()


def renewal_run(database: str) -> None:
    with installation(database) as platform:
        start = time.perf_counter()
        seed(platform, RENEWALS)
        seeded = time.perf_counter() - start
        platform.context.clock.set(NOW + timedelta(hours=1, seconds=1))  # type: ignore[attr-defined]
        renewed, seconds = renew_all(platform)
        assert renewed == RENEWALS, renewed
        print(
            f"{database:<10} renewed {renewed:,} due certificates in {seconds:6.1f} s "
            f"({renewed / seconds:6.0f} certificates/s; seeding took {seeded:.1f} s)"
        )
        platform.close()


def main() -> None:
    print(__doc__.splitlines()[0])
    databases = ["sqlite"]
    try:
        with installation("postgresql") as platform:
            platform.close()
        databases.append("postgresql")
    except OperationalError as exc:
        print(f"PostgreSQL skipped: {str(exc.orig).strip().splitlines()[0]}")
    for database in databases:
        throughput(database)
    for database in databases:
        renewal_run(database)


if __name__ == "__main__":
    main()
