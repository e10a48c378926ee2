"""Choosing among candidate paths, leaving the root out, public CAs and client auth."""

from __future__ import annotations

from datetime import timedelta

from certward.pki.chains import RootStore
from certward.pki.checks import Purpose, judge
from certward.pki.material import Material, MaterialKind
from certward.pki.problems import ProblemCode, Severity
from tests.material.factory import NOW, TestCA
from tests.pki.path_cases import upload

PAST = {"not_before": NOW - timedelta(days=800), "not_after": NOW - timedelta(days=2)}


def test_an_expired_intermediate_is_passed_over_for_a_valid_one() -> None:
    """Browsers build the valid path; certward does too, and says what it passed over."""
    root = TestCA.root(name="paths root")
    issuing = root.intermediate(name="paths issuing CA")
    expired = issuing.recertified(root, **PAST)
    leaf = issuing.issue_leaf("shop.example.com")
    judgement = judge(
        upload(leaf, expired.certificate, issuing.certificate),
        at=NOW,
        purpose=Purpose.TLS_CERTIFICATE,
        hostnames=["shop.example.com"],
        known_roots=RootStore([root.certificate]),
    )
    assert judgement.ok
    assert judgement.chain == (leaf.certificate, issuing.certificate)
    assert judgement.unrelated == (expired.certificate,)
    (notice,) = [p for p in judgement.problems if p.code is ProblemCode.PATH_PASSED_OVER]
    assert notice.severity is Severity.WARNING
    assert "an expired intermediate CN=paths issuing CA" in notice.message
    assert "where the chosen path verifies" in notice.message


def test_a_cross_signed_copy_is_passed_over_for_the_known_root() -> None:
    """The shorter path to a known root wins over a cross-signature to an unknown one."""
    old_root, new_root = TestCA.root(name="paths old root"), TestCA.root(name="paths new root")
    cross = new_root.recertified(old_root)
    issuing = new_root.intermediate(name="paths cross issuing")
    leaf = issuing.issue_leaf("shop.example.com")
    judgement = judge(
        upload(leaf, issuing.certificate, cross.certificate),
        at=NOW,
        purpose=Purpose.TLS_CERTIFICATE,
        hostnames=["shop.example.com"],
        known_roots=RootStore([new_root.certificate]),
    )
    assert judgement.ok
    assert judgement.chain == (leaf.certificate, issuing.certificate)
    (notice,) = [p for p in judgement.problems if p.code is ProblemCode.PATH_PASSED_OVER]
    assert "does not end at a known root" in notice.message


def test_an_uploaded_root_is_left_out_of_the_served_chain() -> None:
    root = TestCA.root(name="paths served root")
    issuing = root.intermediate(name="paths served issuing")
    leaf = issuing.issue_leaf("shop.example.com")
    judgement = judge(
        upload(leaf, issuing.certificate, root.certificate),
        at=NOW,
        purpose=Purpose.TLS_CERTIFICATE,
        hostnames=["shop.example.com"],
    )
    assert judgement.chain == (leaf.certificate, issuing.certificate)
    assert [(p.code, p.severity, p.certificate) for p in judgement.problems] == [
        (ProblemCode.ROOT_NOT_SERVED, Severity.WARNING, "CN=paths served root")
    ]
    inspected = judge(upload(leaf, issuing.certificate, root.certificate), at=NOW)
    assert inspected.chain[-1] == root.certificate  # an inspection shows the whole path


def test_a_forged_signature_under_a_known_root_name_is_invalid() -> None:
    """Name and key identifier of the known root, signature of another key."""
    root = TestCA.root(name="paths forged root")
    forger = TestCA(certificate=root.certificate, private_key=TestCA.root().private_key)
    issuing = forger.intermediate(name="paths forged issuing")
    leaf = issuing.issue_leaf("shop.example.com")
    judgement = judge(
        upload(leaf, issuing.certificate),
        at=NOW,
        purpose=Purpose.TLS_CERTIFICATE,
        hostnames=["shop.example.com"],
        known_roots=RootStore([root.certificate]),
    )
    (invalid,) = [p for p in judgement.errors if p.code is ProblemCode.CHAIN_INVALID]
    assert "CN=paths forged root" in invalid.message
    renamed = TestCA.root(name="paths forged root")  # a re-keyed root the store lacks
    other = renamed.intermediate(name="paths forged issuing")
    kept = judge(
        upload(other.issue_leaf("shop.example.com"), other.certificate),
        at=NOW,
        purpose=Purpose.TLS_CERTIFICATE,
        hostnames=["shop.example.com"],
        known_roots=RootStore([root.certificate]),
    )
    assert ProblemCode.CHAIN_INVALID not in {p.code for p in kept.problems}


def test_a_client_certificate_from_a_public_ca_is_warned_about() -> None:
    public = TestCA.root(name="paths public root")
    issuing = public.intermediate(name="paths public issuing")
    leaf = issuing.issue_leaf("partner", eku=["clientAuth"])
    judgement = judge(
        upload(leaf, issuing.certificate),
        at=NOW,
        purpose=Purpose.CLIENT_CERTIFICATE,
        known_roots=RootStore([public.certificate]),
    )
    assert judgement.ok
    (sunset,) = [p for p in judgement.problems if p.code is ProblemCode.PUBLIC_CA_CLIENT_AUTH]
    assert sunset.severity is Severity.WARNING
    assert "CN=paths public root" in sunset.message
    assert "stopped issuing certificates with the clientAuth" in sunset.message
    assert "private CA" in sunset.message
    private = judge(upload(leaf, issuing.certificate), at=NOW, purpose=Purpose.CLIENT_CERTIFICATE)
    assert ProblemCode.PUBLIC_CA_CLIENT_AUTH not in {p.code for p in private.problems}


def test_a_client_ca_under_a_public_root_is_warned_about_but_not_an_outgoing_ca() -> None:
    public = TestCA.root(name="paths public client root")
    issuing = public.intermediate(name="paths public client issuing")
    material = Material(kind=MaterialKind.PEM, certificates=(issuing.certificate,))
    roots = RootStore([public.certificate])
    for_clients = judge(material, at=NOW, purpose=Purpose.CLIENT_AUTHORITY, known_roots=roots)
    assert for_clients.ok
    assert [p.code for p in for_clients.problems] == [ProblemCode.PUBLIC_CA_CLIENT_AUTH]
    root_itself = Material(kind=MaterialKind.PEM, certificates=(public.certificate,))
    assert [
        p.code
        for p in judge(
            root_itself, at=NOW, purpose=Purpose.CLIENT_AUTHORITY, known_roots=roots
        ).problems
    ] == [ProblemCode.PUBLIC_CA_CLIENT_AUTH]
    outgoing = judge(material, at=NOW, purpose=Purpose.AUTHORITY, known_roots=roots)
    assert outgoing.problems == ()
