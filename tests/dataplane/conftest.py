"""The matrix's test PKI, made once per session (key generation is the slow part)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dataplane.matrix import MatrixPki


@pytest.fixture(scope="session")
def matrix_pki(tmp_path_factory: pytest.TempPathFactory) -> MatrixPki:
    return MatrixPki(tmp_path_factory.mktemp("matrix-pki"))


@pytest.fixture(autouse=True)
def _nginx_workers_reach_tmp_path(nginx_may_enter_tmp_path: Path) -> None:
    """Every data-plane test may run nginx on a directory under ``tmp_path``."""
