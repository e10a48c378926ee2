"""What travels between the client and the API: JSON objects, files to upload, binary
downloads, and the marker of an argument left out."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

JsonObject = dict[str, Any]
"""An object of the API's JSON, as the API sent it."""


class Unset(Enum):
    """Marks an argument left out, where ``None`` is a value the API takes (clear it)."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET


@dataclass(frozen=True, slots=True)
class UploadFile:
    """A file for a multipart upload: the name shown in the API's messages, and its bytes."""

    filename: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Download:
    """A binary answer (a runtime bundle, a DER certificate, a CRL) and what names it."""

    content: bytes = field(repr=False)
    media_type: str
    version: int | None = None  # the runtime bundle's version, from X-Certward-Version
