"""The public web roots, read once from the ``certifi`` bundle.

Used to tell "the issuer is a well-known public root" from "the issuer is missing".
Kept out of `certward.pki` because it reads a file.
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
