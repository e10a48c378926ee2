"""The Alembic migrations of certward's schema (``versions/``), run by `certward.db`."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

VERSIONS = Path(__file__).resolve().parent / "versions"


def revision_module(filename: str) -> ModuleType:
    """An earlier revision's module (``versions/FILENAME``), whose definitions a later
    revision reuses (e.g. the data-plane change triggers of revision 0007)."""
    path = VERSIONS / filename
    spec = importlib.util.spec_from_file_location(f"certward_migration_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
