"""The public web roots, read once from the ``certifi`` bundle.

Used to tell "the issuer is a well-known public root" from "the issuer is missing",
and, with the platform CA and the operator's bundle, to verify https upstreams.
Kept out of `certward.pki` because it reads files.
"""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from certward.pki.chains import RootStore
from certward.pki.lenient import tolerating_lenient_encodings


@cache
def public_roots() -> RootStore:
    """The public roots shipped with ``certifi`` (about 150), parsed once per process."""
    pem = Path(certifi.where()).read_bytes()
    with warnings.catch_warnings():
        # A few old roots carry non-positive serial numbers; they are still roots.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        with tolerating_lenient_encodings():
            return RootStore(x509.load_pem_x509_certificates(pem))


def upstream_trust_pem(platform_ca_pem: bytes, operator_bundle: Path | None) -> bytes:
    """What verifies https upstreams on the data planes: the public roots (``certifi``),
    the platform CA's published certificates and the operator's
    ``CERTWARD_UPSTREAM_CA_BUNDLE``, one PEM after the other."""
    parts = [Path(certifi.where()).read_bytes(), platform_ca_pem]
    if operator_bundle is not None:
        parts.append(operator_bundle.read_bytes())
    return b"\n".join(part.strip() + b"\n" for part in parts if part.strip())
