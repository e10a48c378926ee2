"""Fixtures for the runtime tests: CAs, two client certificates of one CA, partner servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.material.factory import IssuedCert, TestCA
from tests.runtime.partners import Partner, loopback_names, three_partners

__all__ = ["loopback_names"]  # a fixture, re-exported for pytest


@pytest.fixture(scope="module")
def server_ca() -> TestCA:
    return TestCA.root(name="partners' private server CA")


@pytest.fixture(scope="module")
def client_ca() -> TestCA:
    """One issuing CA for both client certificates: the pin alone must tell them apart."""
    return TestCA.root(name="client issuing CA")


@pytest.fixture(scope="module")
def clients(client_ca: TestCA) -> dict[str, IssuedCert]:
    return {
        name: client_ca.issue_leaf(name, eku=["clientAuth"], key_type=key_type)
        for name, key_type in (("client-a", "ec-p256"), ("client-b", "rsa-2048"))
    }


@pytest.fixture
def partners(
    tmp_path: Path, server_ca: TestCA, client_ca: TestCA, loopback_names: None
) -> Iterator[dict[str, Partner]]:
    with three_partners(tmp_path, server_ca=server_ca, client_ca=client_ca) as running:
        yield running
