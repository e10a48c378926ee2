"""The key derivations and ciphers of PKCS12 files, for the guard that looks inside them.

Two jobs, both bounded by iteration counts the guard has already capped:

* `pkcs12_kdf`: the RFC 7292 appendix B key derivation (MAC keys, legacy PBE keys and
  IVs). It runs in C, in OpenSSL's ``libcrypto`` (``PKCS12_key_gen_uni`` through
  ``ctypes``): about 0.2 to 0.5 microseconds per iteration, where a Python loop costs
  1.6. Without a loadable ``libcrypto`` the same derivation runs in Python.
* `decrypt`: opening an encrypted safe or a shrouded key's ciphertext with a password,
  so that the counts *inside* become visible before anything derives a key from them.
  PBES2 uses ``hashlib.pbkdf2_hmac`` and ``cryptography``'s ciphers; the legacy PKCS#12
  PBE schemes (3DES, 2DES, RC4, RC2) the KDF above and ``cryptography``'s decrepit
  ciphers, except RC2 with a 40-bit key (OpenSSL 1.x's default for certificate safes),
  which ``cryptography`` does not offer: that one goes to libcrypto's legacy provider.

A wrong password shows as `None` from `decrypt` (bad padding), never as an exception.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from dataclasses import dataclass, field
from functools import cache

from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4, RC2, TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, CipherAlgorithm, algorithms, modes

from certward.errors import InternalSignal

_BLOCK_SIZES = {"sha1": 64, "sha224": 64, "sha256": 64, "sha384": 128, "sha512": 128}


@dataclass(frozen=True, slots=True, kw_only=True)
class LegacyPbe:
    """A PKCS#12 PBE scheme (RFC 7292 appendix C): SHA-1 KDF, then ``cipher``."""

    cipher: str  # "3des", "2des", "rc4", "rc2"
    key_bytes: int
    salt: bytes = field(repr=False)
    iterations: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Pbes2:
    """PBES2 (RFC 8018): PBKDF2 with ``prf`` (a hashlib name), then a CBC ``cipher``."""

    prf: str
    salt: bytes = field(repr=False)
    iterations: int
    key_bytes: int
    cipher: str  # "aes" or "3des"
    iv: bytes = field(repr=False)


Scheme = LegacyPbe | Pbes2


class CannotOpen(InternalSignal):
    """This process cannot decrypt the scheme (no libcrypto with a legacy provider)."""


def pkcs12_kdf(
    hash_name: str, *, password: bytes, salt: bytes, purpose: int, iterations: int, n: int
) -> bytes:
    """RFC 7292 appendix B.2: ``n`` bytes for ``purpose`` (1 key, 2 IV, 3 MAC key).

    ``password`` is already in BMPString form with its two closing zero bytes (or empty).
    """
    native = _native_kdf()
    if native is not None:
        return native(hash_name, password, salt, purpose, iterations, n)
    return _python_kdf(hash_name, password=password, salt=salt, purpose=purpose,
                       iterations=iterations, n=n)  # fmt: skip


def native_kdf_available() -> bool:
    """True when the KDF runs in ``libcrypto`` (C) rather than in Python."""
    return _native_kdf() is not None


def decrypt(scheme: Scheme, ciphertext: bytes, passwords: list[bytes]) -> bytes | None:
    """The plaintext of ``ciphertext`` under the first password of ``passwords`` that
    yields valid padding, or None when none does.

    For legacy PBE ``passwords`` are BMPString forms; for PBES2 raw bytes (OpenSSL
    gives PBKDF2 the password as typed).
    """
    for password in passwords:
        plaintext = _decrypt_once(scheme, ciphertext, password)
        if plaintext is not None:
            return plaintext
    return None


def _decrypt_once(scheme: Scheme, ciphertext: bytes, password: bytes) -> bytes | None:
    if isinstance(scheme, Pbes2):
        key = hashlib.pbkdf2_hmac(
            scheme.prf, password, scheme.salt, scheme.iterations, scheme.key_bytes
        )
        cipher: CipherAlgorithm = algorithms.AES(key) if scheme.cipher == "aes" else TripleDES(key)
        return _cbc(cipher, scheme.iv, ciphertext)
    key = pkcs12_kdf(
        "sha1",
        password=password,
        salt=scheme.salt,
        purpose=1,
        iterations=scheme.iterations,
        n=scheme.key_bytes,
    )
    if scheme.cipher == "rc4":
        decryptor = Cipher(ARC4(key), mode=None).decryptor()
        return decryptor.update(ciphertext) + decryptor.finalize()
    iv = pkcs12_kdf(
        "sha1", password=password, salt=scheme.salt, purpose=2, iterations=scheme.iterations, n=8
    )
    if scheme.cipher == "rc2":
        if len(key) == 16:
            return _cbc(RC2(key), iv, ciphertext)
        rc2_40 = _native_rc2()
        if rc2_40 is None:
            raise CannotOpen("RC2 with a 40-bit key needs libcrypto's legacy provider")
        return _unpad(rc2_40(key, iv, ciphertext), 8)
    if scheme.cipher == "2des":
        key = key + key[:8]
    return _cbc(TripleDES(key), iv, ciphertext)


def _cbc(cipher: CipherAlgorithm, iv: bytes, ciphertext: bytes) -> bytes | None:
    block = 16 if isinstance(cipher, algorithms.AES) else 8
    if not ciphertext or len(ciphertext) % block or len(iv) != block:
        return None
    decryptor = Cipher(cipher, modes.CBC(iv)).decryptor()
    return _unpad(decryptor.update(ciphertext) + decryptor.finalize(), block)


def _unpad(data: bytes | None, block: int) -> bytes | None:
    if not data:
        return None
    pad = data[-1]
    if not 1 <= pad <= block or data[-pad:] != bytes([pad]) * pad:
        return None
    return data[:-pad]


# -- the KDF in libcrypto --------------------------------------------------------------------


class _NativeKdf:
    __slots__ = ("_digests", "_function", "_library")

    def __init__(self, library: ctypes.CDLL) -> None:
        self._library = library
        get_digest = library.EVP_get_digestbyname
        get_digest.restype = ctypes.c_void_p
        get_digest.argtypes = [ctypes.c_char_p]
        function = library.PKCS12_key_gen_uni
        function.restype = ctypes.c_int
        function.argtypes = [
            ctypes.c_char_p,  # password (BMPString)
            ctypes.c_int,
            ctypes.c_char_p,  # salt
            ctypes.c_int,
            ctypes.c_int,  # id (purpose)
            ctypes.c_int,  # iterations
            ctypes.c_int,  # n
            ctypes.c_char_p,  # out
            ctypes.c_void_p,  # const EVP_MD *
        ]
        self._function = function
        self._digests: dict[str, int] = {}
        for name in _BLOCK_SIZES:
            digest = get_digest(name.encode())
            if not digest:
                raise OSError(f"libcrypto has no {name}")
            self._digests[name] = digest

    def __call__(
        self, hash_name: str, password: bytes, salt: bytes, purpose: int, iterations: int, n: int
    ) -> bytes:
        if not 1 <= iterations <= 2**31 - 1:
            raise ValueError("iterations out of range")
        out = ctypes.create_string_buffer(n)
        # OpenSSL reads an empty password as NULL with length 0, as RFC 7292 means it.
        ok = self._function(
            password or None,
            len(password),
            salt,
            len(salt),
            purpose,
            iterations,
            n,
            out,
            self._digests[hash_name],
        )
        if ok != 1:
            raise ValueError("the PKCS12 key derivation failed")
        return out.raw


@cache
def _native_kdf() -> _NativeKdf | None:
    for name in (ctypes.util.find_library("crypto"), "libcrypto.so.3", "libcrypto.so"):
        if not name:
            continue
        try:
            return _NativeKdf(ctypes.CDLL(name))
        except (OSError, AttributeError):
            continue
    return None


def _python_kdf(
    hash_name: str, *, password: bytes, salt: bytes, purpose: int, iterations: int, n: int
) -> bytes:
    v = _BLOCK_SIZES[hash_name]

    def stretch(value: bytes) -> bytes:
        if not value:
            return b""
        length = v * ((len(value) + v - 1) // v)
        return (value * (length // len(value) + 1))[:length]

    diversifier = bytes([purpose]) * v
    block = stretch(salt) + stretch(password)
    out = b""
    while len(out) < n:
        a = hashlib.new(hash_name, diversifier + block).digest()
        for _ in range(iterations - 1):
            a = hashlib.new(hash_name, a).digest()
        out += a
        b = int.from_bytes(stretch(a), "big") + 1
        blocks = [
            (int.from_bytes(block[i : i + v], "big") + b) % (1 << (8 * v))
            for i in range(0, len(block), v)
        ]
        block = b"".join(x.to_bytes(v, "big") for x in blocks)
    return out[:n]


# -- RC2 with a 40-bit key, in libcrypto's legacy provider ---------------------------------


class _NativeRc2:
    """``RC2-40-CBC`` decryption through libcrypto's EVP interface (legacy provider)."""

    __slots__ = ("_cipher", "_library")

    def __init__(self, library: ctypes.CDLL) -> None:
        self._library = library
        library.OSSL_PROVIDER_load.restype = ctypes.c_void_p
        library.OSSL_PROVIDER_load.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        if not library.OSSL_PROVIDER_load(None, b"legacy"):
            raise OSError("libcrypto has no legacy provider")
        library.OSSL_PROVIDER_load(None, b"default")
        library.EVP_CIPHER_fetch.restype = ctypes.c_void_p
        library.EVP_CIPHER_fetch.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        cipher = library.EVP_CIPHER_fetch(None, b"RC2-40-CBC", None)
        if not cipher:
            raise OSError("libcrypto has no RC2-40-CBC")
        self._cipher = cipher
        library.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
        library.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
        library.EVP_DecryptInit_ex.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                              ctypes.c_char_p, ctypes.c_char_p]  # fmt: skip
        library.EVP_CIPHER_CTX_set_padding.argtypes = [ctypes.c_void_p, ctypes.c_int]
        library.EVP_DecryptUpdate.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                             ctypes.POINTER(ctypes.c_int), ctypes.c_char_p,
                                             ctypes.c_int]  # fmt: skip

    def __call__(self, key: bytes, iv: bytes, ciphertext: bytes) -> bytes | None:
        if len(key) != 5 or len(iv) != 8 or not ciphertext or len(ciphertext) % 8:
            return None
        library = self._library
        context = library.EVP_CIPHER_CTX_new()
        if not context:
            raise MemoryError("EVP_CIPHER_CTX_new")
        try:
            if library.EVP_DecryptInit_ex(context, self._cipher, None, key, iv) != 1:
                return None
            library.EVP_CIPHER_CTX_set_padding(context, 0)  # unpadded here, checked by _unpad
            out = ctypes.create_string_buffer(len(ciphertext) + 8)
            written = ctypes.c_int(0)
            if (
                library.EVP_DecryptUpdate(
                    context, out, ctypes.byref(written), ciphertext, len(ciphertext)
                )
                != 1
            ):
                return None
            return out.raw[: written.value]
        finally:
            library.EVP_CIPHER_CTX_free(context)


@cache
def _native_rc2() -> _NativeRc2 | None:
    for name in (ctypes.util.find_library("crypto"), "libcrypto.so.3"):
        if not name:
            continue
        try:
            return _NativeRc2(ctypes.CDLL(name))
        except (OSError, AttributeError):
            continue
    return None


__all__ = [
    "CannotOpen",
    "LegacyPbe",
    "Pbes2",
    "Scheme",
    "decrypt",
    "native_kdf_available",
    "pkcs12_kdf",
]
