"""PBMAC1, the PKCS12 integrity MAC of RFC 9579: PBKDF2 derives an HMAC key.

The classic PKCS12 MAC (RFC 7292) derives its key with the PKCS#12 KDF from the
password in BMPString form; PBMAC1 derives it with PBKDF2 from the password's UTF-8
bytes, as typed (OpenSSL 3.4 and later), and names both the PBKDF2 pseudo-random
function and the HMAC. The ``macSalt`` and ``iterations`` of the ``MacData`` are not
used: the salt and count are the PBKDF2 parameters'.

Two jobs: `pbmac1_digest` computes the MAC (reading uploads: telling a wrong password
apart; the caller has capped the count and the key length) and `with_pbmac1` replaces
the MAC of a PKCS12 file certward wrote by a PBMAC1 one (the ``modern2026`` profile of
`certward.pki.convert`: pyca/cryptography does not write PBMAC1).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from certward.pki import der

PBMAC1_OID = "1.2.840.113549.1.5.14"
PBKDF2_OID = "1.2.840.113549.1.5.12"
# hmacWithSHA* OIDs (RFC 8018), each with the hashlib name of its hash.
HMAC_OIDS: dict[str, str] = {
    "1.2.840.113549.2.7": "sha1",
    "1.2.840.113549.2.8": "sha224",
    "1.2.840.113549.2.9": "sha256",
    "1.2.840.113549.2.10": "sha384",
    "1.2.840.113549.2.11": "sha512",
}
# The key lengths OpenSSL accepts: at most EVP_MAX_MD_SIZE (a larger one overflowed
# its buffer, CVE-2025-11187, and each extra hash block costs the whole count again),
# at least 20 bytes (pyca's OpenSSL refuses shorter keys).
MIN_KEY_BYTES = 20
MAX_KEY_BYTES = 64
# Written in the unused MacData salt, as OpenSSL does.
UNUSED_SALT = b"NOT USED"

_HMAC_NAMES = {name: oid for oid, name in HMAC_OIDS.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class Pbmac1:
    """The parameters of a PBMAC1 MAC: PBKDF2 with ``prf``, then HMAC with ``hmac``
    (both hashlib names) under a key of ``key_bytes``."""

    prf: str
    hmac: str
    salt: bytes = field(repr=False)
    iterations: int
    key_bytes: int


def pbmac1_digest(params: Pbmac1, password: bytes, content: bytes) -> bytes:
    """The PBMAC1 value of ``content`` (the authenticated safe's octets) under ``password``."""
    key = hashlib.pbkdf2_hmac(
        params.prf, password, params.salt, params.iterations, params.key_bytes
    )
    return hmac.new(key, content, params.hmac).digest()


def with_pbmac1(
    pfx: bytes, password: bytes, *, iterations: int, hash_name: str = "sha256"
) -> bytes:
    """``pfx`` (a DER PKCS12 file with a password MAC) with a PBMAC1 MAC instead.

    PBKDF2-HMAC-``hash_name`` derives a key as long as the hash's output; HMAC-
    ``hash_name`` covers the same authenticated safe the old MAC did. The 16-byte salt
    comes from randomness cryptography drew for this file: the 8-byte salt of the MAC
    it wrote (unused once that MAC is replaced), then 8 bytes of the SHA-256 of the
    authenticated safe (whose encrypted parts carry its random salts and IVs); so this
    stays a pure function.
    """
    outer = der.read(pfx).expect(der.SEQUENCE)
    parts = outer.children()
    if len(parts) != 3:
        raise ValueError("a PKCS12 file with a MAC has three parts")
    version_and_safe = pfx[outer.start : parts[1].next]
    content = parts[1].expect(der.SEQUENCE).children()[1]
    authenticated_safe = der.octets(content.expect(der.CONTEXT_0).children()[0])
    written_salt = der.octets(parts[2].expect(der.SEQUENCE).children()[1])
    salt = (written_salt + hashlib.sha256(authenticated_safe).digest())[:16]
    params = Pbmac1(
        prf=hash_name,
        hmac=hash_name,
        salt=salt,
        iterations=iterations,
        key_bytes=hashlib.new(hash_name).digest_size,
    )
    digest = pbmac1_digest(params, password, authenticated_safe)
    return der.encode(der.SEQUENCE, version_and_safe, mac_data(params, digest))


def mac_data(params: Pbmac1, digest: bytes) -> bytes:
    """The DER ``MacData`` of a PBMAC1 MAC (RFC 9579 section 4)."""
    null = der.encode(der.NULL)
    pbkdf2_params = der.encode(
        der.SEQUENCE,
        der.encode(der.OCTET_STRING, params.salt),
        der.encode_integer(params.iterations),
        der.encode_integer(params.key_bytes),
        der.encode(der.SEQUENCE, der.encode_oid(_HMAC_NAMES[params.prf]), null),
    )
    pbmac1_params = der.encode(
        der.SEQUENCE,
        der.encode(der.SEQUENCE, der.encode_oid(PBKDF2_OID), pbkdf2_params),
        der.encode(der.SEQUENCE, der.encode_oid(_HMAC_NAMES[params.hmac]), null),
    )
    digest_info = der.encode(
        der.SEQUENCE,
        der.encode(der.SEQUENCE, der.encode_oid(PBMAC1_OID), pbmac1_params),
        der.encode(der.OCTET_STRING, digest),
    )
    # ``iterations`` is left out: DER omits its DEFAULT of 1.
    return der.encode(der.SEQUENCE, digest_info, der.encode(der.OCTET_STRING, UNUSED_SALT))


__all__ = [
    "HMAC_OIDS",
    "MAX_KEY_BYTES",
    "MIN_KEY_BYTES",
    "PBKDF2_OID",
    "PBMAC1_OID",
    "Pbmac1",
    "mac_data",
    "pbmac1_digest",
    "with_pbmac1",
]
