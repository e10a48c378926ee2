"""Load certificate material in any common format, guarded, with typed errors.

`load_material` takes the bytes a user brought (PKCS12, PEM, DER or PKCS7) and
returns a `Material` or raises `MaterialError` carrying problems with stable codes.
Every exception a parser can raise on hostile bytes is translated here, once.
Pure: no clock, files or network.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from certward.errors import MaterialError
from certward.pki import der
from certward.pki.lenient import tolerating_lenient_encodings
from certward.pki.limits import Limits
from certward.pki.pkcs12_structure import (
    Pkcs12Encryption,
    Pkcs12Structure,
    SafeNotOpened,
    check_encrypted_private_key,
    looks_like_pfx,
    mac_verifies,
    open_encrypted_safes,
    read_pkcs12_structure,
)
from certward.pki.problems import Problem, ProblemCode

# Everything pyca's parsers raise on malformed input (the x509 ones are not ValueErrors).
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.InvalidVersion,
    x509.UnsupportedGeneralNameType,
)

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,40})-----(.*?)-----END \1-----", re.DOTALL)
_CERTIFICATE_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_KEY_LABELS = {
    b"PRIVATE KEY",
    b"ENCRYPTED PRIVATE KEY",
    b"RSA PRIVATE KEY",
    b"EC PRIVATE KEY",
    b"DSA PRIVATE KEY",
}
_IGNORED_SILENTLY = {b"EC PARAMETERS", b"DH PARAMETERS"}
_SIGNED_DATA = der.oid_bytes("1.2.840.113549.1.7.2")


class MaterialKind(StrEnum):
    """The container format the material arrived in."""

    PKCS12 = "pkcs12"
    PEM = "pem"
    DER = "der"
    PKCS7 = "pkcs7"


@dataclass(frozen=True, slots=True, kw_only=True)
class Pkcs12Details:
    """What a PKCS12 container said about itself."""

    mac_algorithm: str | None
    mac_iterations: int | None
    encryption: Pkcs12Encryption
    algorithms: tuple[str, ...]
    friendly_names: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "mac_algorithm": self.mac_algorithm,
            "mac_iterations": self.mac_iterations,
            "encryption": self.encryption.value,
            "algorithms": list(self.algorithms),
            "friendly_names": list(self.friendly_names),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Material:
    """Certificates and at most one private key, as read from one or more uploads.

    ``certificates`` keeps the order in which they were found (for PKCS12: the
    certificate belonging to the key first). ``problems`` holds warnings noticed
    while reading, such as ignored PEM blocks. The key never appears in ``repr``.
    """

    kind: MaterialKind
    certificates: tuple[x509.Certificate, ...]
    private_key: PrivateKeyTypes | None = field(default=None, repr=False)
    pkcs12: Pkcs12Details | None = None
    problems: tuple[Problem, ...] = ()

    def __repr__(self) -> str:
        prints = ", ".join(c.fingerprint(hashes.SHA256()).hex()[:16] for c in self.certificates)
        return (
            f"Material(kind={self.kind.value}, certificates=[{prints}], "
            f"has_private_key={self.private_key is not None})"
        )


def load_material(
    data: bytes,
    *,
    password: bytes | None = None,
    limits: Limits | None = None,
    expect_pkcs12: bool = False,
) -> Material:
    """Read ``data`` in whatever format it is; refuse it with typed problems if unreadable.

    ``expect_pkcs12`` is set when the user said the file is PKCS12 (a ``.p12`` upload):
    anything else then gets ``not-pkcs12`` with what it actually is.
    """
    limits = limits or Limits()
    if len(data) > limits.max_bytes:
        raise _refuse(
            ProblemCode.TOO_LARGE,
            f"The upload is {len(data):,} bytes, more than the allowed {limits.max_bytes:,}; "
            "certificate material is never that large.",
        )
    if not data.strip():
        raise _refuse(ProblemCode.NO_CERTIFICATE, "The upload is empty.")
    if password is not None and b"\x00" in password:
        # No PKCS12 or PEM tool can have used it, and pyca's PKCS12 loader panics on it.
        raise _refuse(
            ProblemCode.WRONG_PASSWORD, "The password contains a NUL character, so it is wrong."
        )
    if looks_like_pfx(data):
        return _load_pkcs12(data, password, limits)
    if b"-----BEGIN " in data:
        material = _load_pem(data, password, limits)
    elif data[0] == der.SEQUENCE:
        material = _load_der(data, password, limits)
    else:
        raise _refuse(
            ProblemCode.NOT_PKCS12 if expect_pkcs12 else ProblemCode.NOT_CERTIFICATE_MATERIAL,
            "This file is not certificate material: it is neither PKCS12, PEM, DER nor PKCS7.",
        )
    if expect_pkcs12:
        raise _refuse(
            ProblemCode.NOT_PKCS12,
            f"This is {describe(material)}, not a PKCS12 container. certward can build the "
            "container itself: upload the certificate and key in this format, or run "
            "`certward convert FILE --to pkcs12`.",
        )
    return material


def sniff_kind(data: bytes) -> MaterialKind | None:
    """The format ``data`` appears to be in, without reading it; None when unrecognisable."""
    if looks_like_pfx(data):
        return MaterialKind.PKCS12
    if b"-----BEGIN " in data:
        return MaterialKind.PEM
    kind = _sniff_der(data) if data[:1] == bytes([der.SEQUENCE]) else None
    if kind == "pkcs7":
        return MaterialKind.PKCS7
    return MaterialKind.DER if kind else None


def combine(parts: Sequence[Material]) -> Material:
    """Join several uploads (certificate file, key file, chain file) into one `Material`."""
    if not parts:
        raise ValueError("nothing to combine")
    if len(parts) == 1:
        return parts[0]
    keys = [p.private_key for p in parts if p.private_key is not None]
    if len(keys) > 1:
        raise _refuse(
            ProblemCode.MULTIPLE_PRIVATE_KEYS,
            f"The uploads hold {len(keys)} private keys; give exactly one.",
        )
    seen: set[bytes] = set()
    certificates: list[x509.Certificate] = []
    for part in parts:
        for certificate in part.certificates:
            fingerprint = certificate.fingerprint(hashes.SHA256())
            if fingerprint not in seen:
                seen.add(fingerprint)
                certificates.append(certificate)
    return Material(
        kind=parts[0].kind,
        certificates=tuple(certificates),
        private_key=keys[0] if keys else None,
        pkcs12=next((p.pkcs12 for p in parts if p.pkcs12 is not None), None),
        problems=tuple(problem for part in parts for problem in part.problems),
    )


def load_stored_private_key(data: bytes) -> PrivateKeyTypes:
    """Reload a PKCS#8 DER key that certward validated when it was uploaded.

    Skips pyca's RSA key validation (about 40 ms per RSA-2048 key, versus microseconds):
    only for keys from certward's own encrypted store, never for uploads.
    """
    return serialization.load_der_private_key(
        data, password=None, unsafe_skip_rsa_key_validation=True
    )


def describe(material: Material) -> str:
    """A short phrase such as ``a PEM file holding 2 certificates and a private key``."""
    article = {MaterialKind.PEM: "a PEM file", MaterialKind.DER: "a DER file"}.get(
        material.kind, f"a {material.kind.value.upper()} file"
    )
    count = len(material.certificates)
    what = f"{count} certificate{'s' if count != 1 else ''}"
    if material.private_key is not None:
        what = f"{what} and a private key" if count else "a private key"
    return f"{article} holding {what}"


def _load_pkcs12(data: bytes, password: bytes | None, limits: Limits) -> Material:
    structure = read_pkcs12_structure(data, limits=limits)
    # The MAC first (cheap: its count is capped low, the KDF runs in C): a wrong
    # password is refused before anything derives a key from the file's other counts.
    if structure.mac is not None and not mac_verifies(structure, password):
        raise _wrong_password(password)
    try:
        structure = open_encrypted_safes(structure, password, limits=limits)
    except SafeNotOpened:
        raise _pkcs12_failure(structure, password) from None
    try:
        with tolerating_lenient_encodings():
            loaded = pkcs12.load_pkcs12(data, password or None)
    except UnsupportedAlgorithm as exc:
        raise _refuse(
            ProblemCode.UNSUPPORTED_ALGORITHM,
            f"This PKCS12 file uses an algorithm certward cannot read ({exc}).",
        ) from exc
    except _PARSE_ERRORS as exc:
        raise _pkcs12_failure(structure, password) from exc

    certificates: list[x509.Certificate] = []
    names: list[str] = []
    for entry in ([loaded.cert] if loaded.cert else []) + list(loaded.additional_certs):
        certificates.append(_readable(entry.certificate, "the PKCS12 file"))
        if entry.friendly_name is not None:
            names.append(entry.friendly_name.decode("utf-8", "replace"))
    if len(certificates) > limits.max_certificates:
        raise _too_many(len(certificates), limits)
    mac = structure.mac
    return Material(
        kind=MaterialKind.PKCS12,
        certificates=tuple(certificates),
        private_key=loaded.key,
        pkcs12=Pkcs12Details(
            mac_algorithm=mac.algorithm if mac else None,
            mac_iterations=mac.iterations if mac else None,
            encryption=structure.encryption,
            algorithms=structure.algorithms,
            friendly_names=tuple(names),
        ),
    )


def _pkcs12_failure(structure: Pkcs12Structure, password: bytes | None) -> MaterialError:
    """Tell a wrong password from damaged data once pyca has refused the file."""
    if structure.mac is None:
        return _refuse(
            ProblemCode.WRONG_PASSWORD,
            "This PKCS12 file could not be decrypted. It has no integrity MAC, so a wrong "
            "password cannot be told apart from damaged content; check the password first.",
        )
    if not mac_verifies(structure, password):
        return _wrong_password(password)
    return _refuse(
        ProblemCode.CORRUPTED,
        "The password is right (the integrity MAC verifies), but the content of this "
        "PKCS12 file cannot be decrypted or parsed: it is damaged or holds data certward "
        "cannot read.",
    )


def _wrong_password(password: bytes | None) -> MaterialError:
    if not password:
        return _refuse(
            ProblemCode.WRONG_PASSWORD,
            "This PKCS12 file is protected by a password, and none was given.",
        )
    return _refuse(
        ProblemCode.WRONG_PASSWORD,
        "The password is wrong: it does not reproduce this PKCS12 file's integrity MAC. "
        "The file's structure is intact (if you are sure of the password, the file was "
        "altered after it was made).",
    )


def _load_pem(data: bytes, password: bytes | None, limits: Limits) -> Material:
    blocks = _PEM_BLOCK.findall(data)
    if not blocks:
        raise _refuse(
            ProblemCode.CORRUPTED,
            "This looks like a PEM file, but no complete BEGIN/END block was found.",
        )
    certificate_blocks = sum(1 for label, _ in blocks if label in _CERTIFICATE_LABELS)
    if certificate_blocks > limits.max_certificates:
        raise _too_many(certificate_blocks, limits)
    certificates: list[x509.Certificate] = []
    keys: list[PrivateKeyTypes] = []
    problems: list[Problem] = []
    for number, (label, body) in enumerate(blocks, start=1):
        where = f"PEM block {number} ({label.decode()})"
        if label in _CERTIFICATE_LABELS:
            certificates.append(_pem_certificate(label, body, where))
        elif label == b"PKCS7":
            certificates.extend(_pkcs7(_base64(body, where), where))
        elif label in _KEY_LABELS:
            keys.append(_pem_key(label, body, password, limits, where))
        elif label not in _IGNORED_SILENTLY:
            problems.append(
                Problem.warning(
                    ProblemCode.NOT_CERTIFICATE_MATERIAL,
                    f"{where} is not a certificate or private key and was ignored.",
                )
            )
        if len(certificates) > limits.max_certificates:
            raise _too_many(len(certificates), limits)
    if len(keys) > 1:
        raise _refuse(
            ProblemCode.MULTIPLE_PRIVATE_KEYS,
            f"The PEM file holds {len(keys)} private keys; give exactly one.",
        )
    if not certificates and not keys:
        raise _refuse(
            ProblemCode.NO_CERTIFICATE,
            "The PEM file holds neither a certificate nor a private key.",
        )
    return Material(
        kind=MaterialKind.PEM,
        certificates=tuple(certificates),
        private_key=keys[0] if keys else None,
        problems=tuple(problems),
    )


def _pem_certificate(label: bytes, body: bytes, where: str) -> x509.Certificate:
    raw = _base64(body, where)
    if label == b"TRUSTED CERTIFICATE":
        # OpenSSL's "trusted" form: the certificate followed by its trust settings.
        try:
            raw = raw[: der.read(raw).next]
        except der.DerError as exc:
            raise _refuse(ProblemCode.CORRUPTED, f"{where} is damaged ({exc}).") from exc
    return _der_certificate(raw, where)


def _der_certificate(raw: bytes, where: str) -> x509.Certificate:
    try:
        with tolerating_lenient_encodings():
            certificate = x509.load_der_x509_certificate(raw)
        return _readable(certificate, where)
    except _PARSE_ERRORS as exc:
        raise _refuse(
            ProblemCode.CORRUPTED, f"{where} is not a readable X.509 certificate ({exc})."
        ) from exc


def _readable(certificate: x509.Certificate, where: str) -> x509.Certificate:
    """Parse the lazily-read parts now, so damage surfaces here as a typed error."""
    try:
        with tolerating_lenient_encodings():
            certificate.extensions  # noqa: B018 - parsing is the point
            certificate.subject  # noqa: B018
            certificate.issuer  # noqa: B018
    except _PARSE_ERRORS as exc:
        raise _refuse(
            ProblemCode.CORRUPTED, f"A certificate in {where} has unreadable fields ({exc})."
        ) from exc
    return certificate


def _pkcs7(raw: bytes, where: str) -> list[x509.Certificate]:
    try:
        with tolerating_lenient_encodings():
            certificates = pkcs7.load_der_pkcs7_certificates(raw)
        return [_readable(c, where) for c in certificates]
    except _PARSE_ERRORS as exc:
        raise _refuse(
            ProblemCode.CORRUPTED, f"{where} is not a readable PKCS7 certificate chain ({exc})."
        ) from exc


def _pem_key(
    label: bytes, body: bytes, password: bytes | None, limits: Limits, where: str
) -> PrivateKeyTypes:
    if label == b"ENCRYPTED PRIVATE KEY":
        check_encrypted_private_key(_base64(body, where), limits=limits)
    encrypted = label == b"ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in body
    block = b"-----BEGIN " + label + b"-----" + body + b"-----END " + label + b"-----\n"
    return _private_key(
        lambda pw: serialization.load_pem_private_key(block, pw),
        encrypted=encrypted,
        password=password,
        where=where,
    )


def _private_key(
    loader: Callable[[bytes | None], PrivateKeyTypes],
    *,
    encrypted: bool,
    password: bytes | None,
    where: str,
) -> PrivateKeyTypes:
    if encrypted and not password:
        raise _refuse(
            ProblemCode.WRONG_PASSWORD,
            f"The private key in {where} is encrypted, and no password was given.",
        )
    try:
        return loader(password if encrypted else None)
    except UnsupportedAlgorithm as exc:
        raise _refuse(
            ProblemCode.UNSUPPORTED_ALGORITHM,
            f"The private key in {where} uses an algorithm certward cannot read ({exc}).",
        ) from exc
    except (ValueError, TypeError) as exc:
        if encrypted:
            raise _refuse(
                ProblemCode.WRONG_PASSWORD,
                f"The private key in {where} could not be decrypted with the password given. "
                "Unlike PKCS12, a PEM key has no integrity check, so this is almost always a "
                "wrong password.",
            ) from exc
        raise _refuse(
            ProblemCode.CORRUPTED, f"The private key in {where} is damaged or not a key."
        ) from exc


def _load_der(data: bytes, password: bytes | None, limits: Limits) -> Material:
    kind = _sniff_der(data)
    where = "the DER file"
    if kind == "pkcs7":
        certificates = _pkcs7(data, where)
        if len(certificates) > limits.max_certificates:
            raise _too_many(len(certificates), limits)
        return Material(kind=MaterialKind.PKCS7, certificates=tuple(certificates))
    if kind == "certificate":
        return Material(kind=MaterialKind.DER, certificates=(_der_certificate(data, where),))
    if kind in ("private-key", "encrypted-private-key"):
        encrypted = kind == "encrypted-private-key"
        if encrypted:
            check_encrypted_private_key(data, limits=limits)
        key = _private_key(
            lambda pw: serialization.load_der_private_key(data, pw),
            encrypted=encrypted,
            password=password,
            where=where,
        )
        return Material(kind=MaterialKind.DER, certificates=(), private_key=key)
    raise _refuse(
        ProblemCode.CORRUPTED,
        "This DER file is neither a certificate, a PKCS7 chain, a PKCS12 container nor a "
        "private key that certward can recognise; it may be damaged.",
    )


def _sniff_der(data: bytes) -> str | None:
    """Which DER structure ``data`` is, judged by the shape of its first elements."""
    try:
        outer = der.read(data).expect(der.SEQUENCE)
        parts = outer.children()
    except der.DerError:
        return None
    if len(parts) < 2:
        return None
    first, second = parts[0], parts[1]
    if first.tag == der.OID and first.content == _SIGNED_DATA:
        return "pkcs7"
    if first.tag == der.SEQUENCE and second.tag == der.SEQUENCE and len(parts) == 3:
        return "certificate"
    if first.tag == der.SEQUENCE and second.tag == der.OCTET_STRING:
        return "encrypted-private-key"
    if first.tag == der.INTEGER:
        return "private-key"
    return None


def _base64(body: bytes, where: str) -> bytes:
    lines = [line for line in body.splitlines() if b":" not in line]
    try:
        return base64.b64decode(b"".join(lines), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _refuse(ProblemCode.CORRUPTED, f"{where} is not valid base64.") from exc


def _too_many(found: int, limits: Limits) -> MaterialError:
    return _refuse(
        ProblemCode.TOO_MANY_CERTIFICATES,
        f"The upload holds {found} certificates, more than the allowed {limits.max_certificates}.",
    )


def _refuse(code: ProblemCode, message: str) -> MaterialError:
    return MaterialError([Problem.error(code, message)])
