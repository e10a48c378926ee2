"""Read the outer structure of a PKCS12 file before anything expensive happens.

pyca/cryptography reports nothing about a PKCS12 file's MAC or encryption, and its
loader spends CPU in proportion to iteration counts that sit *outside* the MAC: a
1 KB file claiming 2^31-1 iterations costs minutes while holding the GIL. This module
walks the ASN.1 (RFC 7292) with a small DER reader of its own, collects every
iteration count visible without the password (the MAC's, each encrypted safe's and
each shrouded key bag's) and the algorithms used. It also verifies the MAC itself
(RFC 7292's, or PBMAC1 of RFC 9579 with its PBKDF2 count capped the same way), which
is how a wrong password is told apart from damaged data.

Counts inside an *encrypted* safe (a shrouded key bag or a nested safe hidden in a
certificate safe, which no mainstream tool writes) only become visible after
decryption: `open_encrypted_safes` decrypts each safe with its own, already capped,
parameters (`certward.pki.pkcs12_crypto`) and walks what is inside under the same
caps, so that nothing derives a key from an unchecked count. Loaders of untrusted
files still run in a bounded worker (`certward.pki.material_worker`).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field, replace
from enum import StrEnum

from certward.errors import MaterialError
from certward.pki import der
from certward.pki.limits import Limits
from certward.pki.pbmac1 import MAX_KEY_BYTES, MIN_KEY_BYTES, Pbmac1, pbmac1_digest
from certward.pki.pkcs12_crypto import CannotOpen, LegacyPbe, Pbes2, Scheme, decrypt, pkcs12_kdf
from certward.pki.problems import Problem, ProblemCode

ITERATIONS_SETTING = "CERTWARD_MAX_PKCS12_ITERATIONS"
MAC_ITERATIONS_SETTING = "CERTWARD_MAX_PKCS12_MAC_ITERATIONS"

_MAX_NESTING = 4

_o = der.oid_bytes
_DATA = _o("1.2.840.113549.1.7.1")
_SIGNED_DATA = _o("1.2.840.113549.1.7.2")
_ENVELOPED_DATA = _o("1.2.840.113549.1.7.3")
_ENCRYPTED_DATA = _o("1.2.840.113549.1.7.6")
_SHROUDED_KEY_BAG = _o("1.2.840.113549.1.12.10.1.2")
_CERT_BAG = _o("1.2.840.113549.1.12.10.1.3")
_SAFE_CONTENTS_BAG = _o("1.2.840.113549.1.12.10.1.6")
_PBES2 = _o("1.2.840.113549.1.5.13")
_PBKDF2 = _o("1.2.840.113549.1.5.12")
_PBMAC1 = _o("1.2.840.113549.1.5.14")
_HMAC_SHA1 = _o("1.2.840.113549.2.7")
_PBMAC1_HMACS = ("SHA256", "SHA384", "SHA512")  # the messageAuthScheme RFC 9579 writers use

_MAC_HASHES: dict[bytes, tuple[str, int]] = {
    # digest OID: (hashlib name, block size v in bytes)
    _o("1.3.14.3.2.26"): ("sha1", 64),
    _o("2.16.840.1.101.3.4.2.4"): ("sha224", 64),
    _o("2.16.840.1.101.3.4.2.1"): ("sha256", 64),
    _o("2.16.840.1.101.3.4.2.2"): ("sha384", 128),
    _o("2.16.840.1.101.3.4.2.3"): ("sha512", 128),
}
_MAC_BLOCK_SIZES = dict(_MAC_HASHES.values())
# name, cipher, key bytes (RFC 7292 appendix C)
_LEGACY_SCHEMES: dict[str, tuple[str, int]] = {
    "PBE-SHA1-RC4-128": ("rc4", 16),
    "PBE-SHA1-RC4-40": ("rc4", 5),
    "PBE-SHA1-3DES": ("3des", 24),
    "PBE-SHA1-2DES": ("2des", 16),
    "PBE-SHA1-RC2-128": ("rc2", 16),
    "PBE-SHA1-RC2-40": ("rc2", 5),
}
_LEGACY_PBE: dict[bytes, str] = {
    _o("1.2.840.113549.1.12.1.1"): "PBE-SHA1-RC4-128",
    _o("1.2.840.113549.1.12.1.2"): "PBE-SHA1-RC4-40",
    _o("1.2.840.113549.1.12.1.3"): "PBE-SHA1-3DES",
    _o("1.2.840.113549.1.12.1.4"): "PBE-SHA1-2DES",
    _o("1.2.840.113549.1.12.1.5"): "PBE-SHA1-RC2-128",
    _o("1.2.840.113549.1.12.1.6"): "PBE-SHA1-RC2-40",
    _o("1.2.840.113549.1.5.3"): "PBE-MD5-DES",
    _o("1.2.840.113549.1.5.6"): "PBE-MD5-RC2",
    _o("1.2.840.113549.1.5.10"): "PBE-SHA1-DES",
    _o("1.2.840.113549.1.5.11"): "PBE-SHA1-RC2",
}
_PBES2_PRFS: dict[bytes, str] = {
    _o("1.2.840.113549.2.7"): "SHA1",
    _o("1.2.840.113549.2.8"): "SHA224",
    _o("1.2.840.113549.2.9"): "SHA256",
    _o("1.2.840.113549.2.10"): "SHA384",
    _o("1.2.840.113549.2.11"): "SHA512",
}
_PBES2_CIPHER_KEYS: dict[str, tuple[str, int]] = {
    "AES-128-CBC": ("aes", 16),
    "AES-192-CBC": ("aes", 24),
    "AES-256-CBC": ("aes", 32),
    "DES-EDE3-CBC": ("3des", 24),
}
_PBES2_CIPHERS: dict[bytes, str] = {
    _o("2.16.840.1.101.3.4.1.2"): "AES-128-CBC",
    _o("2.16.840.1.101.3.4.1.22"): "AES-192-CBC",
    _o("2.16.840.1.101.3.4.1.42"): "AES-256-CBC",
    _o("1.2.840.113549.3.7"): "DES-EDE3-CBC",
    _o("1.3.14.3.2.7"): "DES-CBC",
}


class Pkcs12Encryption(StrEnum):
    """How the bags of a PKCS12 file are protected."""

    MODERN = "modern"  # PBES2 (PBKDF2 + AES) everywhere, as OpenSSL 3 writes it
    LEGACY = "legacy"  # PKCS#12 PBE (3DES / RC2 / RC4 with SHA-1), as OpenSSL 1.x writes it
    MIXED = "mixed"  # some of each
    NONE = "none"  # nothing encrypted


@dataclass(frozen=True, slots=True, kw_only=True)
class Pkcs12Mac:
    """The integrity MAC of a PKCS12 file (RFC 7292 section 4); ``algorithm`` is e.g. ``sha256``.

    A PBMAC1 MAC (RFC 9579) has ``pbmac1`` and an ``algorithm`` such as ``pbmac1-sha256``
    (its HMAC's hash); ``iterations`` and ``salt`` are then its PBKDF2 parameters'.
    """

    algorithm: str
    iterations: int
    salt: bytes = field(repr=False)
    digest: bytes = field(repr=False)
    pbmac1: Pbmac1 | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptedSafe:
    """One encrypted part of the authenticated safe: its scheme (None: one that cannot
    be opened here) and its ciphertext."""

    scheme: Scheme | None
    ciphertext: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pkcs12Structure:
    """What a PKCS12 file declares about itself, read without the password.

    ``encrypted_safes`` are still to be opened (`open_encrypted_safes`); after that,
    ``inspected`` is True and the counts include what was inside them.
    """

    mac: Pkcs12Mac | None
    encryption: Pkcs12Encryption
    algorithms: tuple[str, ...]
    max_iterations: int
    certificate_bags: int
    authenticated_content: bytes = field(repr=False)
    total_iterations: int = 0
    encrypted_safes: tuple[EncryptedSafe, ...] = ()
    inspected: bool = False


def looks_like_pfx(data: bytes) -> bool:
    """Cheap sniff: an outer SEQUENCE whose first element is INTEGER 3."""
    try:
        first = der.read(data).expect(der.SEQUENCE)
        return der.integer(der.read(data, first.start, first.end)) == 3
    except der.DerError:
        return False


def read_pkcs12_structure(data: bytes, *, limits: Limits) -> Pkcs12Structure:
    """Walk the PFX and refuse it when a count or the nesting exceeds ``limits``.

    Raises `MaterialError` with ``corrupted``, ``too-expensive``,
    ``too-many-certificates`` or ``unsupported-algorithm``.
    """
    walk = _Walk(limits=limits)
    try:
        pfx = der.read(data).expect(der.SEQUENCE)
        if pfx.next != len(data):
            raise _corrupted("bytes follow the end of its structure")
        parts = pfx.children()
        if len(parts) not in (2, 3):
            raise _corrupted("its outer structure has the wrong number of parts")
        version = der.integer(parts[0])
        if version != 3:
            raise _corrupted(f"it declares PKCS12 version {version}, but only version 3 exists")
        content_type, content = _content_info(parts[1])
        if content_type == _SIGNED_DATA:
            raise MaterialError(
                [
                    Problem.error(
                        ProblemCode.UNSUPPORTED_ALGORITHM,
                        "This PKCS12 file uses public-key integrity mode (a signature "
                        "instead of a password MAC); re-export it with a password.",
                    )
                ]
            )
        if content_type != _DATA or content is None:
            raise _corrupted("its authenticated safe is not of content type data")
        authenticated_content = der.octets(content)
        mac = _read_mac(parts[2], walk) if len(parts) == 3 else None
        walk.authenticated_safe(der.read(authenticated_content).expect(der.SEQUENCE))
    except der.DerError as exc:
        raise _corrupted(f"part of its content is not valid ASN.1 ({exc})") from exc

    return Pkcs12Structure(
        mac=mac,
        encryption=walk.encryption(),
        algorithms=tuple(dict.fromkeys(walk.algorithms)),
        max_iterations=walk.max_iterations,
        certificate_bags=walk.certificate_bags,
        authenticated_content=authenticated_content,
        total_iterations=walk.total_iterations,
        encrypted_safes=tuple(walk.encrypted_safes),
        inspected=not walk.encrypted_safes,
    )


class SafeNotOpened(Exception):
    """An encrypted safe that no candidate password decrypts into safe contents."""


def open_encrypted_safes(
    structure: Pkcs12Structure, password: bytes | None, *, limits: Limits
) -> Pkcs12Structure:
    """Decrypt every encrypted safe and walk its bags under ``limits``, before any
    loader derives a key from a count inside one.

    Each decryption costs at most its own capped count (the walk checked it). Raises
    `MaterialError` (``too-expensive``, ``too-many-certificates``, ``corrupted``,
    ``unsupported-algorithm``) like `read_pkcs12_structure`, and `SafeNotOpened` when
    a safe does not decrypt with ``password`` (a wrong password, or damage).
    """
    walk = _Walk(limits=limits)
    walk.total_iterations = structure.total_iterations
    walk.max_iterations = structure.max_iterations
    walk.certificate_bags = structure.certificate_bags
    walk.algorithms = list(structure.algorithms)
    walk.legacy = structure.encryption in (Pkcs12Encryption.LEGACY, Pkcs12Encryption.MIXED)
    walk.modern = structure.encryption in (Pkcs12Encryption.MODERN, Pkcs12Encryption.MIXED)
    for safe in structure.encrypted_safes:
        if safe.scheme is None:
            continue  # a PKCS#5 v1 scheme: left to the loader, inside the worker's budget
        candidates = (
            [password or b""] if isinstance(safe.scheme, Pbes2) else _password_encodings(password)
        )
        try:
            plaintext = decrypt(safe.scheme, safe.ciphertext, candidates)
        except CannotOpen:
            continue  # this process lacks the cipher; the worker's budget still holds
        if plaintext is None:
            raise SafeNotOpened
        try:
            walk.safe_contents(der.read(plaintext).expect(der.SEQUENCE), depth=1)
        except der.DerError:
            raise SafeNotOpened from None
    if walk.certificate_bags > limits.max_certificates:
        raise _too_many(walk.certificate_bags, limits)
    return replace(
        structure,
        algorithms=tuple(dict.fromkeys(walk.algorithms)),
        max_iterations=walk.max_iterations,
        certificate_bags=walk.certificate_bags,
        total_iterations=walk.total_iterations,
        inspected=True,
    )


def check_encrypted_private_key(data: bytes, *, limits: Limits) -> str:
    """Guard a PKCS#8 EncryptedPrivateKeyInfo (DER) before decrypting it.

    Returns the algorithm's name; raises `MaterialError` when its iteration count
    exceeds ``limits`` or the algorithm is unknown.
    """
    walk = _Walk(limits=limits, subject="encrypted private key")
    try:
        info = der.read(data).expect(der.SEQUENCE).children()
        walk.encryption_algorithm(info[0], "private key encryption")
    except (der.DerError, IndexError) as exc:
        raise MaterialError(
            [Problem.error(ProblemCode.CORRUPTED, "The encrypted private key is damaged.")]
        ) from exc
    return walk.algorithms[0]


def mac_verifies(structure: Pkcs12Structure, password: bytes | None) -> bool:
    """True when ``password`` reproduces the file's MAC (RFC 7292 appendix B KDF).

    ``None`` and ``b""`` are each tried both as an empty BMPString and as no
    password at all, as OpenSSL does. A PBMAC1 MAC takes the password's bytes as
    they are, through PBKDF2 (`certward.pki.pbmac1`).
    """
    mac = structure.mac
    if mac is None:
        return False
    if mac.pbmac1 is not None:
        expected = pbmac1_digest(mac.pbmac1, password or b"", structure.authenticated_content)
        return hmac.compare_digest(expected, mac.digest)
    hash_name, block = mac.algorithm, _MAC_BLOCK_SIZES[mac.algorithm]
    size = hashlib.new(hash_name).digest_size
    del block  # the KDF knows each hash's block size
    for candidate in _password_encodings(password):
        key = pkcs12_kdf(
            hash_name,
            password=candidate,
            salt=mac.salt,
            purpose=3,  # MAC key material
            iterations=mac.iterations,
            n=size,
        )
        expected = hmac.new(key, structure.authenticated_content, hash_name).digest()
        if hmac.compare_digest(expected, mac.digest):
            return True
    return False


def _content_info(node: der.Node) -> tuple[bytes, der.Node | None]:
    """(content type OID bytes, the [0] EXPLICIT content or None)."""
    parts = node.expect(der.SEQUENCE).children()
    if not parts or len(parts) > 2:
        raise der.DerError("content info with the wrong number of parts")
    content_type = parts[0].expect(der.OID).content
    if len(parts) == 1:
        return content_type, None
    wrapper = parts[1].expect(der.CONTEXT_0)
    inner = wrapper.children()
    if len(inner) != 1:
        raise der.DerError("explicit content with the wrong number of parts")
    return content_type, inner[0]


class _Walk:
    """Accumulates what the walk finds; refuses as soon as a limit is crossed."""

    def __init__(self, *, limits: Limits, subject: str = "PKCS12 file") -> None:
        self.limits = limits
        self.subject = subject
        self.algorithms: list[str] = []
        self.max_iterations = 0
        self.certificate_bags = 0
        self.total_iterations = 0
        self.legacy = False
        self.modern = False
        self.encrypted_safes: list[EncryptedSafe] = []

    def count(self, node: der.Node, where: str, *, mac: bool = False) -> int:
        cap = self.limits.max_mac_iterations if mac else self.limits.max_iterations
        setting = MAC_ITERATIONS_SETTING if mac else ITERATIONS_SETTING
        try:
            iterations = der.integer(node)
        except der.DerError:
            if node.tag == der.INTEGER and len(node.content) > 1:
                raise self.too_expensive(where, "an astronomical number of", cap, setting) from None
            raise
        if iterations < 1:
            raise _corrupted(f"the {where} declares {iterations} iterations")
        if iterations > cap:
            raise self.too_expensive(where, f"{iterations:,}", cap, setting)
        if not mac:
            self.total_iterations += iterations
            if self.total_iterations > self.limits.max_total_iterations:
                raise MaterialError(
                    [
                        Problem.error(
                            ProblemCode.TOO_EXPENSIVE,
                            f"The key derivations of this {self.subject} ask for "
                            f"{self.total_iterations:,} iterations in all, more than the "
                            f"allowed {self.limits.max_total_iterations:,} (four times "
                            f"{setting}); opening it would waste CPU, so it is refused.",
                        )
                    ]
                )
        self.max_iterations = max(self.max_iterations, iterations)
        return iterations

    def too_expensive(self, where: str, amount: str, cap: int, setting: str) -> MaterialError:
        return MaterialError(
            [
                Problem.error(
                    ProblemCode.TOO_EXPENSIVE,
                    f"The {where} of this {self.subject} asks for {amount} iterations, more "
                    f"than the allowed {cap:,} ({setting}); opening it would waste CPU, so "
                    "it is refused.",
                )
            ]
        )

    def authenticated_safe(self, safe: der.Node) -> None:
        for content_info in safe.children():
            kind, content = _content_info(content_info)
            if content is None:
                raise _corrupted("a part of its authenticated safe is empty")
            if kind == _DATA:
                contents = der.octets(content)
                self.safe_contents(der.read(contents).expect(der.SEQUENCE), depth=1)
            elif kind == _ENCRYPTED_DATA:
                encrypted = content.expect(der.SEQUENCE).children()
                if len(encrypted) < 2:
                    raise der.DerError("encrypted data without content info")
                info = encrypted[1].expect(der.SEQUENCE).children()
                if len(info) < 2:
                    raise der.DerError("encrypted content info without algorithm")
                scheme = self.encryption_algorithm(info[1], "certificate safe encryption")
                ciphertext = _implicit_octets(info[2]) if len(info) > 2 else b""
                self.encrypted_safes.append(EncryptedSafe(scheme=scheme, ciphertext=ciphertext))
            elif kind == _ENVELOPED_DATA:
                raise MaterialError(
                    [
                        Problem.error(
                            ProblemCode.UNSUPPORTED_ALGORITHM,
                            "This PKCS12 file uses public-key privacy mode (content "
                            "encrypted to a certificate); re-export it with a password.",
                        )
                    ]
                )
            else:
                raise _corrupted("its authenticated safe holds content of an unknown type")

    def safe_contents(self, contents: der.Node, *, depth: int) -> None:
        if depth > _MAX_NESTING:
            raise _corrupted(f"its safe contents are nested more than {_MAX_NESTING} deep")
        for bag in contents.children():
            self.bag(bag, depth=depth)
        if self.certificate_bags > self.limits.max_certificates:
            raise _too_many(self.certificate_bags, self.limits)

    def bag(self, bag: der.Node, *, depth: int) -> None:
        parts = bag.expect(der.SEQUENCE).children()
        if len(parts) < 2:
            raise der.DerError("safe bag without a value")
        bag_id = parts[0].expect(der.OID).content
        value = parts[1].expect(der.CONTEXT_0).children()
        if len(value) != 1:
            raise der.DerError("safe bag value with the wrong number of parts")
        if bag_id == _CERT_BAG:
            self.certificate_bags += 1
        elif bag_id == _SHROUDED_KEY_BAG:
            shrouded = value[0].expect(der.SEQUENCE).children()
            if len(shrouded) != 2:
                raise der.DerError("shrouded key bag with the wrong number of parts")
            self.encryption_algorithm(shrouded[0], "private key encryption")
        elif bag_id == _SAFE_CONTENTS_BAG:
            self.safe_contents(value[0].expect(der.SEQUENCE), depth=depth + 1)
        # key bags (an unencrypted key), CRL and secret bags cost nothing to read.

    def encryption_algorithm(self, algorithm: der.Node, where: str) -> Scheme | None:
        """Check the scheme's count; the parameters to decrypt with (None: PKCS#5 v1)."""
        parts = algorithm.expect(der.SEQUENCE).children()
        if len(parts) != 2:
            raise der.DerError("algorithm identifier without parameters")
        name = parts[0].expect(der.OID).content
        if name in _LEGACY_PBE:
            params = parts[1].expect(der.SEQUENCE).children()
            if len(params) != 2:
                raise der.DerError("PBE parameters with the wrong number of parts")
            self.legacy = True
            label = _LEGACY_PBE[name]
            self.algorithms.append(label)
            iterations = self.count(params[1], where)
            if label not in _LEGACY_SCHEMES:
                return None
            cipher, key_bytes = _LEGACY_SCHEMES[label]
            return LegacyPbe(
                cipher=cipher,
                key_bytes=key_bytes,
                salt=der.octets(params[0]),
                iterations=iterations,
            )
        if name == _PBES2:
            self.modern = True
            label, scheme = self.pbes2(parts[1], where)
            self.algorithms.append(label)
            return scheme
        raise _unsupported(f"its {where} uses the unknown algorithm {der.oid(parts[0])}")

    def pbkdf2(self, kdf: der.Node, where: str, *, mac: bool = False) -> _Pbkdf2:
        """The PBKDF2 parameters of a key derivation, its count checked (``mac``: capped
        as the integrity MAC's)."""
        kdf_oid, kdf_params = _pair(kdf)
        if kdf_oid.expect(der.OID).content != _PBKDF2:
            raise _unsupported(f"its {where} derives keys with {der.oid(kdf_oid)}, not PBKDF2")
        fields = kdf_params.expect(der.SEQUENCE).children()
        if len(fields) < 2:
            raise der.DerError("PBKDF2 parameters without an iteration count")
        iterations = self.count(fields[1], where, mac=mac)
        prf = _HMAC_SHA1  # the DEFAULT
        key_length: int | None = None
        for extra in fields[2:]:
            if extra.tag == der.SEQUENCE:
                prf = extra.children()[0].expect(der.OID).content
            elif extra.tag == der.INTEGER:
                try:
                    key_length = der.integer(extra)
                except der.DerError:
                    raise _corrupted(f"the {where} declares a key of astronomical length") from None
        if prf not in _PBES2_PRFS:
            raise _unsupported(f"its {where} uses PBKDF2 with an unknown pseudo-random function")
        return _Pbkdf2(
            salt=fields[0], iterations=iterations, prf=_PBES2_PRFS[prf], key_length=key_length
        )

    def pbes2(self, params: der.Node, where: str) -> tuple[str, Pbes2 | None]:
        kdf, scheme = _pair(params)
        pbkdf2 = self.pbkdf2(kdf, where)
        cipher_parts = scheme.expect(der.SEQUENCE).children()
        cipher_node = cipher_parts[0]
        cipher = cipher_node.expect(der.OID).content
        if cipher not in _PBES2_CIPHERS:
            raise _unsupported(f"its {where} uses the unknown cipher {der.oid(cipher_node)}")
        label = f"PBES2/PBKDF2-HMAC-{pbkdf2.prf}/{_PBES2_CIPHERS[cipher]}"
        known = _PBES2_CIPHER_KEYS.get(_PBES2_CIPHERS[cipher])
        if known is None or pbkdf2.salt.tag != der.OCTET_STRING or len(cipher_parts) != 2:
            return label, None  # DES-CBC or an unusual salt source: left to the loader
        cipher_name, key_bytes = known
        key_length = pbkdf2.key_length
        if key_length is not None and key_length != key_bytes:
            raise _corrupted(f"the {where} declares a key of {key_length} bytes for its cipher")
        return label, Pbes2(
            prf=pbkdf2.prf.lower(),
            salt=pbkdf2.salt.content,
            iterations=pbkdf2.iterations,
            key_bytes=key_bytes,
            cipher=cipher_name,
            iv=der.octets(cipher_parts[1]),
        )

    def pbmac1(self, params: der.Node) -> Pbmac1:
        """The PBMAC1 parameters, their PBKDF2 count capped like the classic MAC's."""
        where = "integrity MAC (PBMAC1)"
        kdf, scheme = _pair(params)
        pbkdf2 = self.pbkdf2(kdf, where, mac=True)
        key_length = pbkdf2.key_length
        if key_length is None:
            raise _corrupted(f"the {where} declares no key length, which RFC 9579 requires")
        if not MIN_KEY_BYTES <= key_length <= MAX_KEY_BYTES:
            raise _corrupted(
                f"the {where} declares a key of {key_length:,} bytes (PBMAC1 keys have "
                f"{MIN_KEY_BYTES} to {MAX_KEY_BYTES})"
            )
        scheme_oid = scheme.expect(der.SEQUENCE).children()[0]
        mac_hash = _PBES2_PRFS.get(scheme_oid.expect(der.OID).content)
        if mac_hash not in _PBMAC1_HMACS:
            raise _unsupported(
                f"its {where} authenticates with {der.oid(scheme_oid)}, "
                "not HMAC-SHA256, -SHA384 or -SHA512"
            )
        if pbkdf2.salt.tag != der.OCTET_STRING:
            raise _unsupported(f"its {where} takes its salt from an unusual source")
        return Pbmac1(
            prf=pbkdf2.prf.lower(),
            hmac=str(mac_hash).lower(),
            salt=pbkdf2.salt.content,
            iterations=pbkdf2.iterations,
            key_bytes=key_length,
        )

    def encryption(self) -> Pkcs12Encryption:
        if self.legacy and self.modern:
            return Pkcs12Encryption.MIXED
        if self.legacy:
            return Pkcs12Encryption.LEGACY
        if self.modern:
            return Pkcs12Encryption.MODERN
        return Pkcs12Encryption.NONE


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pbkdf2:
    """PBKDF2 parameters as declared: ``salt`` (a node: an OCTET STRING unless another
    source is named), the checked count, ``prf`` (e.g. ``SHA256``), the key length."""

    salt: der.Node
    iterations: int
    prf: str
    key_length: int | None


def _pair(node: der.Node) -> tuple[der.Node, der.Node]:
    parts = node.expect(der.SEQUENCE).children()
    if len(parts) != 2:
        raise der.DerError("expected two parts")
    return parts[0], parts[1]


def _read_mac(mac_data: der.Node, walk: _Walk) -> Pkcs12Mac:
    parts = mac_data.expect(der.SEQUENCE).children()
    if len(parts) not in (2, 3):
        raise der.DerError("MAC data with the wrong number of parts")
    digest_info, salt = parts[0], parts[1]
    algorithm_id, digest = _pair(digest_info)
    algorithm_parts = algorithm_id.expect(der.SEQUENCE).children()
    algorithm_node = algorithm_parts[0]
    algorithm = algorithm_node.expect(der.OID).content
    if algorithm == _PBMAC1:
        # RFC 9579: the MacData's own salt and count are not used.
        if len(algorithm_parts) != 2:
            raise der.DerError("PBMAC1 without parameters")
        params = walk.pbmac1(algorithm_parts[1])
        return Pkcs12Mac(
            algorithm=f"pbmac1-{params.hmac}",
            iterations=params.iterations,
            salt=params.salt,
            digest=der.octets(digest),
            pbmac1=params,
        )
    iterations_node = parts[2] if len(parts) == 3 else None
    iterations = 1
    if iterations_node is not None:
        iterations = walk.count(iterations_node, "integrity MAC", mac=True)
    if algorithm not in _MAC_HASHES:
        raise _unsupported(f"its integrity MAC uses the unknown digest {der.oid(algorithm_node)}")
    return Pkcs12Mac(
        algorithm=_MAC_HASHES[algorithm][0],
        iterations=iterations,
        salt=der.octets(salt),
        digest=der.octets(digest),
    )


def _password_encodings(password: bytes | None) -> list[bytes]:
    """The BMPString forms OpenSSL would try for ``password``."""
    if not password:
        return [b"\x00\x00", b""]
    try:
        text = password.decode("utf-8")
    except UnicodeDecodeError:
        # OpenSSL falls back to widening each byte when the password is not UTF-8.
        return [b"".join(b"\x00" + bytes([c]) for c in password) + b"\x00\x00"]
    return [text.encode("utf-16-be") + b"\x00\x00"]


def _implicit_octets(node: der.Node) -> bytes:
    """The value of ``[0] IMPLICIT OCTET STRING``: primitive, or BER chunks."""
    if node.tag == der.CONTEXT_0_PRIMITIVE:
        return node.content
    if node.tag == der.CONTEXT_0:
        return b"".join(der.octets(child) for child in node.children())
    raise der.DerError(f"expected encrypted content, found tag {node.tag:#x}")


def _corrupted(detail: str) -> MaterialError:
    return MaterialError(
        [Problem.error(ProblemCode.CORRUPTED, f"This PKCS12 file is damaged: {detail}.")]
    )


def _unsupported(detail: str) -> MaterialError:
    return MaterialError(
        [
            Problem.error(
                ProblemCode.UNSUPPORTED_ALGORITHM,
                f"This PKCS12 file cannot be opened: {detail}.",
            )
        ]
    )


def _too_many(found: int, limits: Limits) -> MaterialError:
    return MaterialError(
        [
            Problem.error(
                ProblemCode.TOO_MANY_CERTIFICATES,
                f"The upload holds {found} certificates, more than the allowed "
                f"{limits.max_certificates}.",
            )
        ]
    )


__all__ = [
    "ITERATIONS_SETTING",
    "MAC_ITERATIONS_SETTING",
    "EncryptedSafe",
    "Pkcs12Encryption",
    "Pkcs12Mac",
    "Pkcs12Structure",
    "SafeNotOpened",
    "check_encrypted_private_key",
    "looks_like_pfx",
    "mac_verifies",
    "open_encrypted_safes",
    "read_pkcs12_structure",
]
