"""The built-in CA and renewal timing, pure: chains verify, pkilint finds no error,
renewals spread out and follow the certificate's own dates, retries back off."""

from __future__ import annotations

import random
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from certward.issuing import ca
from certward.issuing.renewal import (
    RETRY_BASE,
    RETRY_CAP,
    SAFETY_FRACTION,
    renew_after,
    retry_at,
)
from certward.pki.convert import to_pem
from tests.material import lint
from tests.material.factory import NOW

LOCATIONS = ca.IssuerLocations(
    certificate_url="http://apps.example.net/api/v1/platform/ca/1/certificate",
    crl_url="http://apps.example.net/api/v1/platform/ca/1/crl",
)
HOST = "prod-shop.apps.example.net"
LONG_HOST = "a" * 63 + ".prod-shop.apps.example.net"  # too long for a common name
WEEK = timedelta(days=7)


@pytest.fixture(scope="module")
def root() -> ca.Authority:
    """A platform root made at NOW."""
    return ca.create_root(at=NOW, common_name="certward platform root CA R1")


@pytest.fixture(scope="module")
def intermediate(root: ca.Authority) -> ca.Authority:
    """An issuing intermediate under ``root``."""
    return ca.create_intermediate(
        root, at=NOW, common_name="certward platform issuing CA I1", parent_locations=LOCATIONS
    )


def issue(
    intermediate: ca.Authority, hostname: str = HOST, lifetime: timedelta = WEEK
) -> ca.ServerCertificate:
    return ca.issue_server_certificate(
        intermediate, hostname, at=NOW, lifetime=lifetime, issuer_locations=LOCATIONS
    )


def verify(root: ca.Authority, issued: ca.ServerCertificate, hostname: str, at: datetime) -> None:
    verifier = (
        PolicyBuilder()
        .store(Store([root.certificate]))
        .time(at)
        .build_server_verifier(x509.DNSName(hostname))
    )
    verifier.verify(issued.certificate, list(issued.chain))


# -- chains -----------------------------------------------------------------------------------


@pytest.mark.parametrize("hostname", [HOST, LONG_HOST])
def test_issued_chain_verifies_for_its_hostname(
    root: ca.Authority, intermediate: ca.Authority, hostname: str
) -> None:
    """pyca's strict server verifier accepts leaf + intermediate up to the root, at issuance
    and just before expiry."""
    issued = issue(intermediate, hostname)
    verify(root, issued, hostname, NOW)
    verify(root, issued, hostname, issued.certificate.not_valid_after_utc - timedelta(seconds=1))


def test_issued_certificate_is_refused_for_another_hostname_or_after_expiry(
    root: ca.Authority, intermediate: ca.Authority
) -> None:
    """The verifier refuses the certificate for a name it does not carry, and once expired."""
    issued = issue(intermediate)
    with pytest.raises(x509.verification.VerificationError):
        verify(root, issued, "other.apps.example.net", NOW)
    with pytest.raises(x509.verification.VerificationError):
        verify(root, issued, HOST, issued.certificate.not_valid_after_utc + timedelta(seconds=1))


def test_issued_certificate_completes_a_tls_handshake(
    root: ca.Authority, intermediate: ca.Authority, tmp_path: Path
) -> None:
    """OpenSSL (Python's ssl) accepts the served chain for the hostname with only the root
    trusted."""
    issued = ca.issue_server_certificate(
        intermediate,
        HOST,
        at=datetime.now(UTC),  # OpenSSL checks validity against the real clock
        lifetime=WEEK,
        issuer_locations=LOCATIONS,
    )
    chain_file = tmp_path / "chain.pem"
    chain_file.write_bytes(
        to_pem([issued.certificate, *issued.chain], private_key=issued.private_key)
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(chain_file)
    client_context = ssl.create_default_context(
        cadata=root.certificate.public_bytes(serialization.Encoding.PEM).decode()
    )
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    client = client_context.wrap_bio(client_in, client_out, server_hostname=HOST)
    done = {"client": False, "server": False}
    for _ in range(10):
        for side, connection, outgoing, peer_incoming in (
            ("client", client, client_out, server_in),
            ("server", server, server_out, client_in),
        ):
            if not done[side]:
                try:
                    connection.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
            peer_incoming.write(outgoing.read())
        if all(done.values()):
            break
    assert all(done.values())
    peer = client.getpeercert()
    assert peer is not None
    assert ("DNS", HOST) in peer["subjectAltName"]


# -- profile ----------------------------------------------------------------------------------


def test_leaf_profile(intermediate: ca.Authority) -> None:
    """serverAuth only, CA:FALSE, critical digitalSignature, the hostname as SAN and CN, a
    random positive serial of at least 64 bits, backdated, validity exactly the lifetime."""
    certificate = issue(intermediate).certificate
    extensions = certificate.extensions
    assert extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    constraints = extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca is False
    usage = extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [HOST]
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == HOST
    assert certificate.serial_number > 0
    assert certificate.serial_number.bit_length() >= 64
    assert certificate.not_valid_before_utc == NOW - ca.BACKDATE
    period = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert period + timedelta(seconds=1) == WEEK  # RFC 5280 counts both ends
    assert isinstance(certificate.signature_hash_algorithm, hashes.SHA256)


def test_serials_differ(intermediate: ca.Authority) -> None:
    """Two certificates for the same hostname at the same instant get different serials."""
    serials = {issue(intermediate).certificate.serial_number for _ in range(20)}
    assert len(serials) == 20


def test_one_issuer_prepares_once_and_issues_the_same_profile_for_every_hostname(
    intermediate: ca.Authority,
) -> None:
    """A `ServerCertificateIssuer` reused for many hostnames gives each the profile a
    one-off issuance gives (the same extensions, criticality and values; its own SAN,
    subject and serial), and `certificate_pem` writes what ``public_bytes(PEM)`` does."""
    issuer = ca.ServerCertificateIssuer(intermediate, LOCATIONS)
    one_off = issue(intermediate).certificate
    shared = {e.oid: e for e in one_off.extensions if e.oid != x509.SubjectAlternativeName.oid}
    serials = set()
    for hostname in (HOST, "api." + HOST, LONG_HOST):
        issued = issuer.issue(hostname, at=NOW, lifetime=WEEK)
        certificate = issued.certificate
        assert issued.chain == (intermediate.certificate,)
        assert {e.oid: e for e in certificate.extensions if e.oid in shared} == shared
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert san.value.get_values_for_type(x509.DNSName) == [hostname]
        assert san.critical == (hostname == LONG_HOST)
        assert certificate.issuer == intermediate.certificate.subject
        assert certificate.public_key() == issued.private_key.public_key()
        certificate.verify_directly_issued_by(intermediate.certificate)
        der = certificate.public_bytes(serialization.Encoding.DER)
        pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        assert ca.certificate_pem(der) == pem
        serials.add(certificate.serial_number)
    assert len(serials) == 3


def test_long_hostname_goes_into_a_critical_san_with_an_empty_subject(
    intermediate: ca.Authority,
) -> None:
    """A hostname longer than a common name may be leaves the subject empty, SAN critical."""
    certificate = issue(intermediate, LONG_HOST).certificate
    assert len(certificate.subject) == 0
    assert certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


def test_ca_profiles(root: ca.Authority, intermediate: ca.Authority) -> None:
    """The root is unconstrained; the intermediate has path length 0 and serverAuth only;
    both sign certificates and CRLs, with key identifiers that link them."""
    for authority, path_length in ((root, None), (intermediate, 0)):
        extensions = authority.certificate.extensions
        constraints = extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.critical
        assert constraints.value.ca
        assert constraints.value.path_length == path_length
        usage = extensions.get_extension_for_class(x509.KeyUsage)
        assert usage.critical
        assert usage.value.key_cert_sign
        assert usage.value.crl_sign
    intermediate_aki = intermediate.certificate.extensions.get_extension_for_class(
        x509.AuthorityKeyIdentifier
    ).value.key_identifier
    root_ski = root.certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value.digest
    assert intermediate_aki == root_ski
    assert intermediate.not_after <= root.not_after


@pytest.mark.parametrize(
    "hostname", ["Shop.apps.example.net", "münchen.example.net", "-a.example.net", "a..b", "host"]
)
def test_non_dns_hostnames_are_refused(intermediate: ca.Authority, hostname: str) -> None:
    """Only lower-case A-label DNS names with two labels or more get a certificate."""
    with pytest.raises(ValueError, match="DNS name"):
        issue(intermediate, hostname)


def test_lifetime_ends_with_the_issuer(root: ca.Authority) -> None:
    """A certificate never outlives its issuer: the CA shortens it instead."""
    short = ca.create_intermediate(
        root,
        at=NOW,
        common_name="short-lived issuing CA",
        parent_locations=LOCATIONS,
        lifetime=timedelta(days=2),
    )
    certificate = issue(short).certificate
    assert certificate.not_valid_after_utc == short.not_after


def test_an_expired_issuer_refuses_to_issue(root: ca.Authority) -> None:
    """Issuing with an issuer that has expired by then says to rotate the platform CA."""
    short = ca.create_intermediate(
        root,
        at=NOW,
        common_name="short-lived issuing CA",
        parent_locations=LOCATIONS,
        lifetime=timedelta(hours=1),
    )
    with pytest.raises(ValueError, match="rotate the platform CA"):
        ca.issue_server_certificate(
            short, HOST, at=NOW + timedelta(hours=2), lifetime=WEEK, issuer_locations=LOCATIONS
        )


def test_crl_is_empty_and_signed_by_its_issuer(intermediate: ca.Authority) -> None:
    """The CRL verifies with the issuer's key, lists nothing, and its number grows."""
    first = ca.sign_crl(intermediate, at=NOW)
    later = ca.sign_crl(intermediate, at=NOW + timedelta(hours=1))
    assert first.is_signature_valid(intermediate.certificate.public_key())
    assert len(first) == 0
    assert first.issuer == intermediate.certificate.subject
    assert first.next_update_utc is not None
    assert first.next_update_utc > NOW
    numbers = [
        crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        for crl in (first, later)
    ]
    assert numbers[0] < numbers[1]


def test_issuer_locations_must_be_plain_http() -> None:
    """caIssuers and CRL URLs are http:// (relying parties fetch them without TLS)."""
    with pytest.raises(ValueError, match="http://"):
        ca.IssuerLocations(certificate_url="https://x.example/c", crl_url="http://x.example/l")


# -- cross-certificates ----------------------------------------------------------------------

LATER = NOW + timedelta(days=400)  # a rotation, a year and more after the first root


@pytest.fixture(scope="module")
def new_root() -> ca.Authority:
    """The root a rotation at LATER makes."""
    return ca.create_root(at=LATER, common_name="certward platform root CA R2")


def cross(root: ca.Authority, new_root: ca.Authority) -> x509.Certificate:
    return ca.cross_certify(root, new_root.certificate, at=LATER, issuer_locations=LOCATIONS)


def test_cross_certificate_is_the_new_root_issued_by_the_old_one(
    root: ca.Authority, new_root: ca.Authority
) -> None:
    """Subject, key and key identifier of the new root; issuer, authority key identifier
    and signature of the old root; a CA without a path length; validity from LATER to the
    old root's end (the new root outlives it)."""
    certificate = cross(root, new_root)
    extensions = certificate.extensions
    new_extensions = new_root.certificate.extensions
    assert certificate.subject == new_root.certificate.subject
    assert certificate.issuer == root.certificate.subject
    assert certificate.public_key() == new_root.certificate.public_key()
    certificate.verify_directly_issued_by(root.certificate)
    ski = extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == new_extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    root_ski = root.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert aki.key_identifier == root_ski.value.digest
    constraints = extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert (constraints.value.ca, constraints.value.path_length) == (True, None)
    assert extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert certificate.not_valid_before_utc == LATER - ca.BACKDATE
    assert certificate.not_valid_after_utc == root.not_after


def test_cross_certificate_ends_with_the_new_root_when_that_ends_first(root: ca.Authority) -> None:
    """A cross-certificate never outlives the root it certifies either."""
    short = ca.create_root(at=LATER, common_name="short root", lifetime=timedelta(days=30))
    certificate = ca.cross_certify(root, short.certificate, at=LATER, issuer_locations=LOCATIONS)
    assert certificate.not_valid_after_utc == short.not_after


def test_cross_certifying_refuses_a_leaf_and_an_expired_old_root(
    root: ca.Authority, intermediate: ca.Authority, new_root: ca.Authority
) -> None:
    """Only a CA certificate is cross-certified, and only by a root still valid."""
    with pytest.raises(ValueError, match="not a CA certificate"):
        ca.cross_certify(root, issue(intermediate).certificate, at=NOW, issuer_locations=LOCATIONS)
    with pytest.raises(ValueError, match="rotate the platform CA"):
        ca.cross_certify(
            root,
            new_root.certificate,
            at=root.not_after + timedelta(seconds=1),
            issuer_locations=LOCATIONS,
        )


def test_either_root_verifies_what_the_new_root_issues_through_the_bridge(
    root: ca.Authority, new_root: ca.Authority
) -> None:
    """pyca's strict verifier, given intermediate and cross-certificate: trusting only the
    old root, the path is leaf, intermediate, cross-certificate, old root; trusting only
    the new root, leaf, intermediate, new root (the cross-certificate is left out)."""
    new_intermediate = ca.create_intermediate(
        new_root,
        at=LATER,
        common_name="certward platform issuing CA I2",
        parent_locations=LOCATIONS,
    )
    bridge = cross(root, new_root)
    issued = ca.issue_server_certificate(
        new_intermediate,
        HOST,
        at=LATER,
        lifetime=WEEK,
        issuer_locations=LOCATIONS,
        chain=[new_intermediate.certificate, bridge],
    )
    paths = {}
    for trusted in (root, new_root):
        verifier = (
            PolicyBuilder()
            .store(Store([trusted.certificate]))
            .time(LATER + timedelta(hours=1))
            .build_server_verifier(x509.DNSName(HOST))
        )
        paths[trusted] = verifier.verify(issued.certificate, list(issued.chain))
    assert paths[root] == [
        issued.certificate,
        new_intermediate.certificate,
        bridge,
        root.certificate,
    ]
    assert paths[new_root] == [
        issued.certificate,
        new_intermediate.certificate,
        new_root.certificate,
    ]
    with pytest.raises(x509.verification.VerificationError):
        verify(
            root,
            ca.issue_server_certificate(
                new_intermediate, HOST, at=LATER, lifetime=WEEK, issuer_locations=LOCATIONS
            ),
            HOST,
            LATER + timedelta(hours=1),
        )


# -- pkilint ----------------------------------------------------------------------------------


@pytest.mark.parametrize("hostname", [HOST, LONG_HOST])
@pytest.mark.parametrize(
    "lifetime", [timedelta(minutes=5), WEEK, timedelta(days=47)], ids=["5min", "7d", "47d"]
)
def test_issued_certificates_pass_pkilint_dv_profile(
    intermediate: ca.Authority, hostname: str, lifetime: timedelta
) -> None:
    """pkilint's CA/B Forum DV subscriber profile finds no error (the CN, when present, is
    only a warning), and detects the certificate as a DV subscriber certificate."""
    certificate = issue(intermediate, hostname, lifetime).certificate
    findings = lint.serverauth_findings(certificate, lint.CertificateType.DV_FINAL_CERTIFICATE)
    assert lint.errors(findings) == []
    assert {f.code for f in findings} <= {"cabf.serverauth.dv.common_name_attribute_present"}
    assert lint.detected_type(certificate) is lint.CertificateType.DV_FINAL_CERTIFICATE


def test_ca_certificates_pass_pkilint_rfc5280(
    root: ca.Authority, intermediate: ca.Authority
) -> None:
    """pkilint's RFC 5280 profile finds no error or warning in the root and intermediate."""
    for authority in (root, intermediate):
        findings = lint.pkix_findings(authority.certificate)
        assert [f for f in findings if f.severity in {"FATAL", "ERROR", "WARNING"}] == []


def test_cross_certificate_passes_pkilint(root: ca.Authority, new_root: ca.Authority) -> None:
    """pkilint's RFC 5280 profile finds no error or warning in a cross-certificate, nor
    its CA/B Forum cross-certified subordinate CA profile any error but the two about the
    subject, which must be the new root's own (these roots name no country and
    organization)."""
    certificate = cross(root, new_root)
    findings = lint.pkix_findings(certificate)
    assert [f for f in findings if f.severity in {"FATAL", "ERROR", "WARNING"}] == []
    cabf = lint.serverauth_findings(certificate, lint.CertificateType.INTERNAL_CROSS_CA)
    assert {f.code for f in lint.errors(cabf)} <= {
        "cabf.serverauth.ca.country_attribute_absent",
        "cabf.serverauth.ca.organization_name_attribute_absent",
    }


def test_pkilint_harness_reports_errors(intermediate: ca.Authority) -> None:
    """The lint harness does fail: a leaf without policies, AIA or CRL is full of errors."""
    issued = issue(intermediate).certificate
    builder = (
        x509.CertificateBuilder()
        .subject_name(issued.subject)
        .issuer_name(issued.issuer)
        .public_key(ca.generate_key().public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued.not_valid_before_utc)
        .not_valid_after(issued.not_valid_after_utc)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
    )
    bare = builder.sign(intermediate.private_key, hashes.SHA256())
    codes = {
        f.code
        for f in lint.errors(
            lint.serverauth_findings(bare, lint.CertificateType.DV_FINAL_CERTIFICATE)
        )
    }
    assert "cabf.serverauth.subscriber.certificate_policies_extension_absent" in codes


# -- renewal timing ---------------------------------------------------------------------------


def test_renewal_is_at_two_thirds_of_the_lifetime_without_jitter() -> None:
    """With no jitter a 7-day certificate is renewed 112 hours after its notBefore."""
    due = renew_after(NOW, NOW + WEEK, jitter=0, rng=random.Random(1))
    assert due == NOW + timedelta(hours=112)


def test_renewal_follows_the_real_lifetime() -> None:
    """A CA that returns a shorter certificate than asked moves renewal earlier, and never
    past the certificate's end minus the safety margin."""
    rng = random.Random(2)
    asked = renew_after(NOW, NOW + WEEK, jitter=0, rng=rng)
    shortened = renew_after(NOW, NOW + timedelta(days=3), jitter=0, rng=rng)
    assert shortened == NOW + timedelta(days=2)
    assert shortened < asked


def test_renewal_jitter_spreads_many_certificates() -> None:
    """1,000 certificates issued together are due across a window of 10% of the lifetime
    after two thirds of it (never earlier), hundreds of distinct minutes, every one
    before the safety margin."""
    rng = random.Random(3)
    lifetime = WEEK
    dues = [renew_after(NOW, NOW + lifetime, rng=rng) for _ in range(1000)]
    two_thirds = NOW + lifetime * 2 / 3
    offsets = [(d - two_thirds) / lifetime for d in dues]
    assert all(0 <= o <= 0.1 for o in offsets)
    assert max(offsets) - min(offsets) > 0.09  # the whole window is used
    assert len({d.replace(second=0, microsecond=0) for d in dues}) > 500
    assert all(d <= NOW + lifetime * (1 - SAFETY_FRACTION) for d in dues)


def test_large_jitter_is_capped_by_the_safety_margin() -> None:
    """Even a jitter of 90% never schedules renewal before notBefore or after the margin."""
    rng = random.Random(4)
    dues = [renew_after(NOW, NOW + WEEK, jitter=0.9, rng=rng) for _ in range(500)]
    assert min(dues) >= NOW
    assert max(dues) == NOW + WEEK * (1 - SAFETY_FRACTION)


def test_earliest_prevents_a_renewal_loop() -> None:
    """A certificate too short to schedule sensibly is not due again before ``earliest``."""
    issued_at = NOW
    earliest = issued_at + timedelta(minutes=1)
    due = renew_after(
        issued_at - ca.BACKDATE,
        issued_at + timedelta(seconds=30),
        rng=random.Random(5),
        earliest=earliest,
    )
    assert due == earliest


@pytest.mark.parametrize("jitter", [-0.1, 1.0, 2.0])
def test_jitter_outside_a_fraction_is_refused(jitter: float) -> None:
    """Jitter is a fraction of the lifetime in [0, 1)."""
    with pytest.raises(ValueError, match="jitter"):
        renew_after(NOW, NOW + WEEK, jitter=jitter, rng=random.Random(6))


def test_inverted_dates_are_refused() -> None:
    """A certificate whose notAfter precedes its notBefore has no schedule."""
    with pytest.raises(ValueError, match="notAfter"):
        renew_after(NOW, NOW - WEEK, rng=random.Random(7))


# -- backoff ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [
        (1, RETRY_BASE),
        (2, RETRY_BASE * 2),
        (3, RETRY_BASE * 4),
        (6, RETRY_BASE * 32),
        (7, RETRY_CAP),
        (1000, RETRY_CAP),
    ],
)
def test_retry_backs_off_exponentially_up_to_the_cap(attempts: int, delay: timedelta) -> None:
    """One minute after the first failure, doubling, at most one hour."""
    assert retry_at(NOW, attempts) == NOW + delay


def test_retry_delays_never_shrink() -> None:
    """Each further failure waits at least as long as the one before."""
    delays = [retry_at(NOW, n) - NOW for n in range(1, 40)]
    assert delays == sorted(delays)


def test_retry_counts_failures_from_one() -> None:
    """``attempts`` is the number of failures so far: zero is a caller's mistake."""
    with pytest.raises(ValueError, match="at least 1"):
        retry_at(NOW, 0)
