"""What every use case needs, built once at start."""

from __future__ import annotations

from dataclasses import dataclass

from certward.bundles.store import BundleStore
from certward.clock import Clock
from certward.db import Database
from certward.material_workers import MaterialWorkers
from certward.pki.chains import RootStore
from certward.pki.limits import Limits
from certward.randomness import Randomness
from certward.rate_limits import UploadLimits
from certward.secrets import SecretBox
from certward.settings import Settings


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """The database, the secret box, the clock, randomness and the settings of one process."""

    database: Database
    secrets: SecretBox
    clock: Clock
    randomness: Randomness
    settings: Settings
    known_roots: RootStore
    # In this process's memory: every replica has its own buckets (see certward.rate_limits).
    upload_limits: UploadLimits
    # Uploaded bytes are read in these processes, each job within a CPU and wall budget.
    material_workers: MaterialWorkers

    @property
    def bundles(self) -> BundleStore:
        """Runtime bundles on disk, sealed, under ``<data dir>/bundles``."""
        return BundleStore(self.settings.data_dir / "bundles", self.secrets)

    @property
    def limits(self) -> Limits:
        return Limits(
            max_bytes=self.settings.max_upload_bytes,
            max_iterations=self.settings.max_pkcs12_iterations,
            max_mac_iterations=self.settings.max_pkcs12_mac_iterations,
        )
