"""Caps applied to every piece of material before any expensive work."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_BYTES = 256 * 1024
DEFAULT_MAX_CERTIFICATES = 20
# What real tools write is far lower (docs/material.md): OpenSSL 3 2048, Java 10,000,
# Windows 2000, pyca/cryptography 20,000 for the key; the caps leave headroom above.
DEFAULT_MAX_ITERATIONS = 100_000
DEFAULT_MAX_MAC_ITERATIONS = 20_000
# A file may hold several keys; all its PBE/PBKDF2 counts together stay under this many caps.
TOTAL_ITERATIONS_FACTOR = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How much work one upload may cost.

    ``max_iterations`` caps each PBE/PBKDF2 iteration count inside a PKCS12 file or an
    encrypted PKCS#8 key (an encrypted safe's, each shrouded key bag's, including those
    found inside an encrypted safe), and their sum is capped at ``max_total_iterations``.
    ``max_mac_iterations`` caps the integrity MAC's count: checking it is how a wrong
    password is told apart, so it must stay cheap (under 50 ms at the default).
    Those counts sit outside the MAC, so a tiny hostile file could otherwise cost
    minutes of CPU while holding the GIL.
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    max_certificates: int = DEFAULT_MAX_CERTIFICATES
    max_iterations: int = DEFAULT_MAX_ITERATIONS
    max_mac_iterations: int = DEFAULT_MAX_MAC_ITERATIONS

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_certificates", "max_iterations", "max_mac_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    @property
    def max_total_iterations(self) -> int:
        return TOTAL_ITERATIONS_FACTOR * self.max_iterations
