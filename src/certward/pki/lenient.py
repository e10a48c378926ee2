"""pyca warnings about encodings it accepts anyway, silenced where certward reads material.

Real-world material breaks DER in harmless ways pyca still reads (BER in PKCS12
files, unsorted SETs in PKCS7 from ``openssl crl2pkcs7``, non-positive serial
numbers that RFC 5280 asks readers to tolerate). pyca warns about each; certward
reads them, so the warnings are silenced in the few places that parse, and nowhere
else.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# What pyca warns about, rather than refuses, while parsing: a SET of certificates not
# in DER order (``openssl crl2pkcs7`` writes those) or other BER-only encodings of
# PKCS7 and PKCS12, and certificate serial numbers that are not positive (RFC 5280
# asks readers to accept them). The material is readable; the warnings say nothing
# the user must act on, and under ``-W error`` they would escape as exceptions.
TOLERATED_WARNINGS = (
    r".*could not be parsed as DER, falling back to parsing as BER",
    r"Parsed a serial number which wasn't positive",
)


@contextmanager
def tolerating_lenient_encodings() -> Iterator[None]:
    """Silence pyca's warnings about encodings it accepts anyway (`TOLERATED_WARNINGS`)."""
    with warnings.catch_warnings():
        for message in TOLERATED_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield
