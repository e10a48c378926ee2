"""The matrix's test PKI, made once per session (key generation is the slow part)."""

from __future__ import annotations

import pytest

from tests.dataplane.matrix import MatrixPki


@pytest.fixture(scope="session")
def matrix_pki(tmp_path_factory: pytest.TempPathFactory) -> MatrixPki:
    return MatrixPki(tmp_path_factory.mktemp("matrix-pki"))
