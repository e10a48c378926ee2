"""Caps applied to every piece of material before any expensive work."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_BYTES = 256 * 1024
DEFAULT_MAX_CERTIFICATES = 20
DEFAULT_MAX_ITERATIONS = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How much work one upload may cost.

    ``max_iterations`` caps every iteration count inside a PKCS12 file (the MAC's and
    each PBE/PBKDF2 one): those counts sit outside the MAC, so a tiny hostile file
    could otherwise cost minutes of CPU while holding the GIL.
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    max_certificates: int = DEFAULT_MAX_CERTIFICATES
    max_iterations: int = DEFAULT_MAX_ITERATIONS

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_certificates", "max_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
