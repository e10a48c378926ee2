"""Where randomness comes from: the only module that draws random values.

Services take the `Randomness` of their `Context`; pure code takes one as an
argument; the few places outside both (the data plane's temporary file names, the
secret box's nonces, row ids) use `SYSTEM_RANDOMNESS`. Everything is drawn from the
operating system's generator (`secrets`), so tokens, session secrets and passwords
are cryptographically random.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")


class Randomness(Protocol):
    """A source of random values (`SystemRandomness` outside tests)."""

    def token_bytes(self, count: int) -> bytes:
        """``count`` random bytes."""
        ...

    def token_hex(self, count: int) -> str:
        """``count`` random bytes as lowercase hexadecimal."""
        ...

    def token_urlsafe(self, count: int) -> str:
        """``count`` random bytes as URL-safe base64, without padding."""
        ...

    def choice(self, items: Sequence[T]) -> T:
        """One of ``items``, each as likely."""
        ...

    def uniform(self, low: float, high: float) -> float:
        """A number between ``low`` and ``high``."""
        ...

    def uuid4(self) -> uuid.UUID:
        """A random (version 4) UUID."""
        ...


class SystemRandomness:
    """The operating system's cryptographic generator."""

    def __init__(self) -> None:
        self._system = secrets.SystemRandom()

    def token_bytes(self, count: int) -> bytes:
        """``count`` random bytes."""
        return secrets.token_bytes(count)

    def token_hex(self, count: int) -> str:
        """``count`` random bytes as lowercase hexadecimal."""
        return secrets.token_hex(count)

    def token_urlsafe(self, count: int) -> str:
        """``count`` random bytes as URL-safe base64, without padding."""
        return secrets.token_urlsafe(count)

    def choice(self, items: Sequence[T]) -> T:
        """One of ``items``, each as likely."""
        return secrets.choice(items)

    def uniform(self, low: float, high: float) -> float:
        """A number between ``low`` and ``high``."""
        return self._system.uniform(low, high)

    def uuid4(self) -> uuid.UUID:
        """A random (version 4) UUID."""
        return uuid.uuid4()

    def __repr__(self) -> str:
        return "SystemRandomness()"


SYSTEM_RANDOMNESS = SystemRandomness()
