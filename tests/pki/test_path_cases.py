"""The path-building harness: certward's verdict on every generated and PKITS case.

The figures asserted here are the ones docs/material.md publishes; a false accept
(certward accepting what a strict client refuses) is never allowed.
"""

from __future__ import annotations

import time

import pytest

from certward.pki.checks import Purpose, judge
from certward.pki.paths import MAX_CANDIDATE_PATHS
from certward.pki.problems import ProblemCode
from tests.material.factory import NOW
from tests.pki.path_cases import (
    Case,
    decision,
    generated_cases,
    hostile_upload,
    pkits_cases,
    pkits_directory,
)


def tally(cases: list[Case]) -> tuple[int, list[str], list[str]]:
    """Right verdicts, and the names of the false accepts and false rejects."""
    right, false_accepts, false_rejects = 0, [], []
    for case in cases:
        accepted = decision(case, case.judge())
        if accepted == case.expected:
            right += 1
        elif accepted:
            false_accepts.append(case.name)
        else:
            false_rejects.append(case.name)
    return right, false_accepts, false_rejects


def test_generated_cases() -> None:
    cases = generated_cases()
    right, false_accepts, false_rejects = tally(cases)
    assert (len(cases), right, false_accepts, false_rejects) == (33, 33, [], [])


@pytest.mark.skipif(pkits_directory() is None, reason="cryptography_vectors without PKITS")
def test_pkits_path_cases() -> None:
    directory = pkits_directory()
    assert directory is not None
    cases = list(pkits_cases(directory))
    right, false_accepts, false_rejects = tally(cases)
    assert false_accepts == []
    # The false rejects are deliberate or webpki strictness: DSA (weak-key), a CA
    # certificate as the end entity, basicConstraints not critical, GeneralizedTime
    # before 2050, self-issued certificates under pathLen, and issuer names that match
    # only after RFC 5280 case and whitespace folding (certward compares them exactly).
    assert (len(cases), right, len(false_rejects)) == (43, 31, 12), false_rejects


def test_a_hostile_upload_of_same_name_issuers_is_answered_quickly() -> None:
    """625 candidate paths in 20 certificates: the search stops at the cap, in time."""
    material = hostile_upload(levels=4, width=5)
    assert len(material.certificates) == 21
    start = time.process_time()
    judgement = judge(material, at=NOW, purpose=Purpose.TLS_CERTIFICATE,
                      hostnames=["shop.example.com"])  # fmt: skip
    assert time.process_time() - start < 1.0
    (notice,) = [p for p in judgement.problems if p.code is ProblemCode.PATH_PASSED_OVER]
    assert f"stopped at {MAX_CANDIDATE_PATHS} candidate paths" in notice.message
    assert judgement.ok
