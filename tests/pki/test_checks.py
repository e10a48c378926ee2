"""Judging material for a purpose: every problem found, with the right code and severity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certward.pki.chains import RootStore
from certward.pki.checks import Judgement, Policy, Purpose, judge
from certward.pki.material import Material, load_material
from certward.pki.problems import ProblemCode, Severity
from tests.material.factory import NOW, IssuedCert, TestCA, pem_certificates

PASSWORD = b"correct horse"


@pytest.fixture(scope="module")
def root() -> TestCA:
    return TestCA.root(name="certward checks root")


@pytest.fixture(scope="module")
def intermediate(root: TestCA) -> TestCA:
    return root.intermediate(name="certward checks intermediate")


def codes(judgement: Judgement, severity: Severity | None = None) -> set[str]:
    return {p.code.value for p in judgement.problems if severity is None or p.severity is severity}


def apart_from_root(judgement: Judgement, root: str = "CN=certward checks root") -> list[str]:
    """The codes of every problem but the one saying the uploaded ``root`` is not served."""
    left_out = [p for p in judgement.problems if p.code is ProblemCode.ROOT_NOT_SERVED]
    assert [(p.certificate, p.severity) for p in left_out] == [(root, Severity.WARNING)]
    return [p.code.value for p in judgement.problems if p not in left_out]


def pem(*parts: bytes) -> Material:
    return load_material(b"".join(parts), password=PASSWORD)


def full(leaf: IssuedCert) -> Material:
    """Leaf, key and chain in the right order, as a careful user uploads them."""
    return pem(leaf.cert_pem(), leaf.chain_pem(), leaf.key_pem())


# -- client certificates ---------------------------------------------------------------


def test_a_sound_client_certificate_has_no_problems(intermediate: TestCA) -> None:
    """Leaf with clientAuth, its key and full chain pass without even a warning."""
    leaf = intermediate.issue_leaf("shop-production", eku=["clientAuth"])
    material = load_material(leaf.pkcs12(PASSWORD), password=PASSWORD)
    judgement = judge(material, at=NOW, purpose=Purpose.CLIENT_CERTIFICATE)
    assert apart_from_root(judgement) == []
    assert judgement.leaf == leaf.certificate
    assert judgement.chain == leaf.full_chain[:-1]  # the root is never sent
    assert judgement.unrelated == leaf.full_chain[-1:]


def test_client_certificates_without_san_are_accepted(intermediate: TestCA) -> None:
    """Corporate client certificates often carry no SAN; strict verification allows that."""
    leaf = intermediate.issue_leaf("CN-only client", eku=["clientAuth"], no_san=True)
    judgement = judge(full(leaf), at=NOW, purpose=Purpose.CLIENT_CERTIFICATE)
    assert apart_from_root(judgement) == []


@pytest.mark.parametrize("eku", [["serverAuth"], None])
def test_a_missing_client_auth_usage_is_a_warning(
    intermediate: TestCA, eku: list[str] | None
) -> None:
    """Without clientAuth the certificate is kept, with one warning saying why it may fail."""
    leaf = intermediate.issue_leaf("client", eku=eku)
    judgement = judge(full(leaf), at=NOW, purpose=Purpose.CLIENT_CERTIFICATE)
    assert apart_from_root(judgement) == [ProblemCode.MISSING_CLIENT_AUTH.value]
    assert judgement.ok


def test_a_client_certificate_needs_its_private_key(intermediate: TestCA) -> None:
    """A certificate alone cannot authenticate: no-private-key."""
    leaf = intermediate.issue_leaf("client", eku=["clientAuth"])
    judgement = judge(pem(leaf.cert_pem()), at=NOW, purpose=Purpose.CLIENT_CERTIFICATE)
    assert ProblemCode.NO_PRIVATE_KEY.value in codes(judgement, Severity.ERROR)


def test_a_key_of_another_certificate_is_a_mismatch(intermediate: TestCA) -> None:
    """The key must belong to a certificate of the upload, and the message names them."""
    leaf = intermediate.issue_leaf("client", eku=["clientAuth"])
    other = intermediate.issue_leaf("other", eku=["clientAuth"])
    judgement = judge(
        pem(leaf.cert_pem(), other.key_pem()), at=NOW, purpose=Purpose.CLIENT_CERTIFICATE
    )
    mismatch = [p for p in judgement.problems if p.code is ProblemCode.KEY_MISMATCH]
    assert mismatch
    assert mismatch[0].is_error
    assert "CN=client" in mismatch[0].message


def test_a_client_certificate_issued_by_an_absent_ca_is_only_a_warning(root: TestCA) -> None:
    """The partner may trust the issuing CA directly, so a lone leaf is not refused."""
    leaf = root.issue_leaf("client", eku=["clientAuth"])
    judgement = judge(
        pem(leaf.cert_pem(), leaf.key_pem()), at=NOW, purpose=Purpose.CLIENT_CERTIFICATE
    )
    incomplete = [p for p in judgement.problems if p.code is ProblemCode.CHAIN_INCOMPLETE]
    assert [p.severity for p in incomplete] == [Severity.WARNING]
    assert "certward checks root" in incomplete[0].message
    assert judgement.ok


# -- validity, keys, signatures ----------------------------------------------------------


@pytest.mark.parametrize(
    ("not_before", "not_after", "code", "severity"),
    [
        (NOW - timedelta(days=400), NOW - timedelta(days=1), ProblemCode.EXPIRED, Severity.ERROR),
        (
            NOW + timedelta(days=1),
            NOW + timedelta(days=400),
            ProblemCode.NOT_YET_VALID,
            Severity.ERROR,
        ),
        (
            NOW - timedelta(days=300),
            NOW + timedelta(days=10),
            ProblemCode.EXPIRES_SOON,
            Severity.WARNING,
        ),
    ],
)
def test_validity_window_is_checked_at_the_given_time(
    intermediate: TestCA,
    not_before: datetime,
    not_after: datetime,
    code: ProblemCode,
    severity: Severity,
) -> None:
    """Expired and not-yet-valid refuse; expiring within 30 days warns."""
    leaf = intermediate.issue_leaf(
        "client", eku=["clientAuth"], not_before=not_before, not_after=not_after
    )
    judgement = judge(full(leaf), at=NOW, purpose=Purpose.CLIENT_CERTIFICATE)
    found = [p for p in judgement.problems if p.code is code]
    assert [p.severity for p in found] == [severity]
    assert found[0].certificate == "CN=client"


def test_the_expiry_warning_window_is_a_policy(intermediate: TestCA) -> None:
    """With a 5-day window, a certificate with 10 days left raises no warning."""
    leaf = intermediate.issue_leaf("client", eku=["clientAuth"], not_after=NOW + timedelta(days=10))
    judgement = judge(
        full(leaf),
        at=NOW,
        purpose=Purpose.CLIENT_CERTIFICATE,
        policy=Policy(expires_soon=timedelta(days=5)),
    )
    assert ProblemCode.EXPIRES_SOON.value not in codes(judgement)


def test_an_expired_intermediate_is_reported_too(root: TestCA) -> None:
    """Every certificate of the chain is checked, not only the leaf."""
    old = root.intermediate(
        name="old intermediate",
        not_before=NOW - timedelta(days=800),
        not_after=NOW - timedelta(days=2),
    )
    leaf = old.issue_leaf("client", eku=["clientAuth"], not_before=NOW - timedelta(days=700))
    judgement = judge(full(leaf), at=NOW, purpose=Purpose.CLIENT_CERTIFICATE)
    expired = [p for p in judgement.problems if p.code is ProblemCode.EXPIRED]
    assert [p.certificate for p in expired] == ["CN=old intermediate"]


def test_rsa_keys_below_2048_bits_are_weak(intermediate: TestCA) -> None:
    """RSA-1024 is refused for the certificate and for the private key."""
    leaf = intermediate.issue_leaf("client", eku=["clientAuth"], key_type="rsa-1024")
    judgement = judge(full(leaf), at=NOW, purpose=Purpose.CLIENT_CERTIFICATE)
    weak = [p for p in judgement.problems if p.code is ProblemCode.WEAK_KEY]
    assert len(weak) == 2
    assert all("1024" in p.message for p in weak)


@pytest.mark.parametrize("digest", ["sha1", "md5"])
def test_weak_signatures_on_issued_certificates_are_refused(digest: str) -> None:
    """MD5 and SHA-1 signatures are broken: refused on anything but a self-signed root."""
    root = TestCA.root(name="rsa root", key_type="rsa-2048")
    leaf = root.issue_leaf("client", eku=["clientAuth"], key_type="rsa-2048", hash=digest)
    judgement = judge(full(leaf), at=NOW, purpose=Purpose.CLIENT_CERTIFICATE)
    weak = [p for p in judgement.problems if p.code is ProblemCode.WEAK_SIGNATURE]
    assert [p.certificate for p in weak] == ["CN=client"]
    assert digest.upper() in weak[0].message


def test_a_sha1_self_signature_on_a_root_is_not_a_problem() -> None:
    """A root's self-signature carries no trust, so its hash does not matter."""
    old_root = TestCA.root(name="sha1 root", key_type="rsa-2048", hash="sha1")
    judgement = judge(load_material(old_root.cert_pem()), at=NOW, purpose=Purpose.AUTHORITY)
    assert judgement.problems == ()


def test_every_problem_is_reported_not_only_the_first(intermediate: TestCA) -> None:
    """Expired, weak and not covering the host name: all three in one verdict."""
    leaf = intermediate.issue_leaf(
        "shop.example.com",
        key_type="rsa-1024",
        not_before=NOW - timedelta(days=400),
        not_after=NOW - timedelta(days=3),
    )
    judgement = judge(
        full(leaf), at=NOW, purpose=Purpose.TLS_CERTIFICATE, hostnames=["other.example.com"]
    )
    assert {"expired", "weak-key", "name-not-covered"} <= codes(judgement, Severity.ERROR)


def test_judging_requires_an_aware_time(intermediate: TestCA) -> None:
    """A naive datetime is a programming error, not a silent local-time guess."""
    leaf = intermediate.issue_leaf("client")
    with pytest.raises(ValueError, match="timezone"):
        judge(full(leaf), at=datetime(2026, 11, 26))


# -- authorities ------------------------------------------------------------------------


def test_a_root_and_intermediate_make_a_sound_authority(root: TestCA, intermediate: TestCA) -> None:
    """Given in any order, the CAs come back lowest first and without problems."""
    judgement = judge(
        pem(root.cert_pem(), intermediate.cert_pem()), at=NOW, purpose=Purpose.AUTHORITY
    )
    assert judgement.problems == ()
    assert judgement.chain == (intermediate.certificate, root.certificate)


def test_an_intermediate_without_its_root_is_a_valid_authority(intermediate: TestCA) -> None:
    """Roots need not be uploaded: trusting an intermediate alone is legitimate."""
    judgement = judge(pem(intermediate.cert_pem()), at=NOW, purpose=Purpose.AUTHORITY)
    assert judgement.ok
    assert ProblemCode.CHAIN_INCOMPLETE.value not in codes(judgement)


def test_a_leaf_in_an_authority_upload_is_refused_by_name(
    root: TestCA, intermediate: TestCA
) -> None:
    """An end-entity certificate is not a CA; the message names it and says what to upload."""
    leaf = intermediate.issue_leaf("partner.example.com")
    judgement = judge(pem(root.cert_pem(), leaf.cert_pem()), at=NOW, purpose=Purpose.AUTHORITY)
    refused = [p for p in judgement.problems if p.code is ProblemCode.NOT_A_CA]
    assert [p.certificate for p in refused] == ["CN=partner.example.com"]
    assert "issued it" in refused[0].message


def test_a_ca_without_key_cert_sign_is_not_a_ca(root: TestCA) -> None:
    """CA:TRUE without keyCertSign cannot issue anything trustworthy."""
    crippled = root.intermediate(name="no signing", key_cert_sign=False)
    judgement = judge(pem(crippled.cert_pem()), at=NOW, purpose=Purpose.AUTHORITY)
    refused = [p for p in judgement.problems if p.code is ProblemCode.NOT_A_CA]
    assert len(refused) == 1
    assert "keyCertSign" in refused[0].message


def test_a_private_key_in_an_authority_upload_is_ignored_with_a_warning(
    intermediate: TestCA,
) -> None:
    """A CA upload needs no key; one given by mistake is not an error but is said."""
    judgement = judge(
        pem(intermediate.cert_pem(), intermediate.issue_leaf("x").key_pem()),
        at=NOW,
        purpose=Purpose.AUTHORITY,
    )
    assert judgement.ok
    assert any("never stored" in p.message for p in judgement.problems)


# -- TLS certificates -------------------------------------------------------------------


def test_a_sound_tls_certificate_covers_its_hosts(intermediate: TestCA) -> None:
    """SANs with a wildcard cover the apex-less subdomains asked for."""
    leaf = intermediate.issue_leaf(
        "shop.example.com", sans=["shop.example.com", "*.shop.example.com"]
    )
    judgement = judge(
        full(leaf),
        at=NOW,
        purpose=Purpose.TLS_CERTIFICATE,
        hostnames=["shop.example.com", "WWW.shop.example.com"],
    )
    assert apart_from_root(judgement) == []


def test_a_missing_intermediate_is_named_and_explained(intermediate: TestCA) -> None:
    """The most common real-world failure: browsers work, curl and Java fail."""
    leaf = intermediate.issue_leaf("shop.example.com")
    judgement = judge(
        pem(leaf.cert_pem(), leaf.key_pem()),
        at=NOW,
        purpose=Purpose.TLS_CERTIFICATE,
        hostnames=["shop.example.com"],
    )
    incomplete = [p for p in judgement.problems if p.code is ProblemCode.CHAIN_INCOMPLETE]
    assert [p.severity for p in incomplete] == [Severity.ERROR]
    assert "certward checks intermediate" in incomplete[0].message
    assert "curl" in incomplete[0].message


def test_a_chain_ending_at_an_intermediate_needs_no_root(intermediate: TestCA) -> None:
    """Leaf plus intermediate is complete: servers never need to send the root."""
    leaf = intermediate.issue_leaf("shop.example.com")
    judgement = judge(
        pem(leaf.cert_pem(), intermediate.cert_pem(), leaf.key_pem()),
        at=NOW,
        purpose=Purpose.TLS_CERTIFICATE,
        hostnames=["shop.example.com"],
    )
    assert judgement.ok, judgement.problems
    assert judgement.chain == (leaf.certificate, intermediate.certificate)


def test_an_issuer_among_the_known_public_roots_completes_the_chain(root: TestCA) -> None:
    """A leaf issued directly by a known root is complete without uploading that root."""
    leaf = root.issue_leaf("shop.example.com")
    judgement = judge(
        pem(leaf.cert_pem(), leaf.key_pem()),
        at=NOW,
        purpose=Purpose.TLS_CERTIFICATE,
        hostnames=["shop.example.com"],
        known_roots=RootStore([root.certificate]),
    )
    assert judgement.problems == ()


def test_an_unordered_chain_is_put_in_order_and_said_so(root: TestCA, intermediate: TestCA) -> None:
    """Root first, leaf last: fixed automatically, with a chain-unordered warning."""
    leaf = intermediate.issue_leaf("shop.example.com")
    judgement = judge(
        pem(root.cert_pem(), leaf.key_pem(), intermediate.cert_pem(), leaf.cert_pem()),
        at=NOW,
        purpose=Purpose.TLS_CERTIFICATE,
        hostnames=["shop.example.com"],
    )
    assert apart_from_root(judgement) == [ProblemCode.CHAIN_UNORDERED.value]
    assert judgement.chain == (leaf.certificate, intermediate.certificate)
    assert judgement.unrelated == (root.certificate,)


def test_an_unrelated_certificate_is_left_out_with_a_warning(
    root: TestCA, intermediate: TestCA
) -> None:
    """A stray certificate in the bundle does not break the chain; it is named and dropped."""
    leaf = intermediate.issue_leaf("shop.example.com")
    stray = TestCA.root(name="stray root")
    judgement = judge(
        pem(leaf.cert_pem(), intermediate.cert_pem(), stray.cert_pem(), leaf.key_pem()),
        at=NOW,
        purpose=Purpose.TLS_CERTIFICATE,
        hostnames=["shop.example.com"],
    )
    unrelated = [p for p in judgement.problems if p.code is ProblemCode.UNRELATED_CERTIFICATE]
    assert [p.certificate for p in unrelated] == ["CN=stray root"]
    assert judgement.ok


@pytest.mark.parametrize(
    ("sans", "hostname"),
    [
        (["shop.example.com"], "www.shop.example.com"),
        (["*.example.com"], "a.b.example.com"),
        (["*.example.com"], "example.com"),
        (["10.0.0.1"], "10.0.0.2"),
    ],
)
def test_hosts_outside_the_sans_are_not_covered(
    intermediate: TestCA, sans: list[str], hostname: str
) -> None:
    """name-not-covered lists the SANs the certificate does have."""
    leaf = intermediate.issue_leaf("cn.example.com", sans=sans)
    judgement = judge(full(leaf), at=NOW, purpose=Purpose.TLS_CERTIFICATE, hostnames=[hostname])
    uncovered = [p for p in judgement.problems if p.code is ProblemCode.NAME_NOT_COVERED]
    assert len(uncovered) == 1
    assert sans[0] in uncovered[0].message


def test_a_client_only_certificate_cannot_serve_tls(intermediate: TestCA) -> None:
    """EKU without serverAuth: browsers refuse it."""
    leaf = intermediate.issue_leaf("shop.example.com", eku=["clientAuth"])
    judgement = judge(
        full(leaf), at=NOW, purpose=Purpose.TLS_CERTIFICATE, hostnames=["shop.example.com"]
    )
    assert ProblemCode.MISSING_SERVER_AUTH.value in codes(judgement, Severity.ERROR)


def test_a_ca_certificate_cannot_be_a_tls_leaf(intermediate: TestCA) -> None:
    """A CA posing as a server certificate is refused."""
    leaf = intermediate.issue_leaf("shop.example.com", is_ca=True)
    judgement = judge(
        full(leaf), at=NOW, purpose=Purpose.TLS_CERTIFICATE, hostnames=["shop.example.com"]
    )
    assert ProblemCode.CA_AS_LEAF.value in codes(judgement, Severity.ERROR)


def test_a_name_constraint_violation_fails_strict_verification(root: TestCA) -> None:
    """An intermediate limited to example.com cannot vouch for evil.test."""
    constrained = root.intermediate(name="constrained", permitted_dns=["example.com"])
    leaf = constrained.issue_leaf("evil.test")
    judgement = judge(full(leaf), at=NOW, purpose=Purpose.TLS_CERTIFICATE, hostnames=["evil.test"])
    invalid = [p for p in judgement.problems if p.code is ProblemCode.CHAIN_INVALID]
    assert [p.severity for p in invalid] == [Severity.ERROR]
    inside = constrained.issue_leaf("shop.example.com")
    assert judge(
        full(inside), at=NOW, purpose=Purpose.TLS_CERTIFICATE, hostnames=["shop.example.com"]
    ).ok


def test_a_tampered_chain_fails_verification(root: TestCA) -> None:
    """An intermediate with the right name but another key does not verify the leaf."""
    real = root.intermediate(name="same name")
    impostor = root.intermediate(name="same name")
    leaf = real.issue_leaf("shop.example.com")
    judgement = judge(
        pem(
            leaf.cert_pem(),
            pem_certificates([impostor.certificate, root.certificate]),
            leaf.key_pem(),
        ),
        at=NOW,
        purpose=Purpose.TLS_CERTIFICATE,
        hostnames=["shop.example.com"],
    )
    assert not judgement.ok


def test_a_generic_inspection_judges_validity_but_not_purpose_rules(intermediate: TestCA) -> None:
    """Without a purpose: no key needed, but an expired certificate is still an error."""
    leaf = intermediate.issue_leaf(
        "x", not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1)
    )
    judgement = judge(pem(leaf.cert_pem()), at=NOW)
    assert codes(judgement) == {ProblemCode.EXPIRED.value, ProblemCode.CHAIN_INCOMPLETE.value}
    assert judgement.leaf == leaf.certificate


def test_problems_serialise_with_code_severity_and_message(intermediate: TestCA) -> None:
    """The JSON form of a problem carries the stable code and one human sentence."""
    leaf = intermediate.issue_leaf("client", eku=["serverAuth"])
    judgement = judge(
        full(leaf), at=datetime(2026, 11, 26, tzinfo=UTC), purpose=Purpose.CLIENT_CERTIFICATE
    )
    assert apart_from_root(judgement) == ["missing-client-auth"]
    (problem,) = [p.to_dict() for p in judgement.problems if p.code.value != "root-not-served"]
    assert problem["code"] == "missing-client-auth"
    assert problem["severity"] == "warning"
    assert problem["message"].endswith(".")
