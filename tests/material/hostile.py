"""Hostile PKCS12 files: small uploads that cost a naive loader minutes, or memory.

Builders (a)-(c) take a small valid PKCS12 (EC P-256 key, ~1.2 KB, made by the factory;
``base_pkcs12``) and rewrite it at the ASN.1 level with ``asn1crypto``; (d) and (e)
assemble new files around the shrouded key bag of such a file. The iteration counts a
PKCS12 file carries sit *outside* its MAC, so nothing stops an uploader from writing
``2**31 - 1`` into them; only a pre-parse cap does.

(h) ``pbmac1_pkcs12`` puts a PBMAC1 MAC (RFC 9579) on such a file, with whatever
PBKDF2 count, key length, PRF and HMAC the test asks for.

Where a builder can, it recomputes the MAC (RFC 7292 appendix B key derivation,
``pkcs12_kdf`` below) with ``HOSTILE_PASSWORD``, so that a loader which checks the MAC
first still reaches the expensive part: the only defence left is the iteration cap.

The inspection helpers at the end (``mac_iterations``, ``pbe_iterations``,
``safe_contents_depth``, ``certificate_bag_count``, ``mac_verifies``) read the same
structures back, so tests can prove each file is what it claims to be.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from asn1crypto import algos, cms, core, pkcs12
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

from tests.material.factory import DEFAULT_NOT_AFTER, DEFAULT_NOT_BEFORE, IssuedCert, TestCA

HOSTILE_PASSWORD = "hostile"
MAX_ITERATIONS = 2**31 - 1
"""The largest iteration count a signed 32-bit integer holds, as OpenSSL reads them."""


def base_pkcs12(password: str = HOSTILE_PASSWORD) -> bytes:
    """A valid, small PKCS12 to start from: EC P-256 key and its certificate, no chain.

    Made by ``cryptography``: certificate bag in PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC)
    encrypted data, key in a PBES2 shrouded key bag, HMAC-SHA256 MAC, 2048 iterations
    everywhere. About 1.2 KB.
    """
    leaf = TestCA.root(name="certward hostile root").issue_leaf("hostile.example.test")
    return leaf.pkcs12(password, include_chain=False, iterations=2048)


def huge_mac_iterations(
    pfx: bytes | None = None, *, iterations: int = MAX_ITERATIONS, password: str = HOSTILE_PASSWORD
) -> bytes:
    """(a) The MAC's iteration count set to ``iterations`` (default ``2**31 - 1``).

    Only the ``MacData.iterations`` integer changes, so the file stays ~1.2 KB. The MAC
    no longer verifies (recomputing it would itself take ``iterations`` hash rounds), but
    a loader that verifies MACs runs all those rounds before noticing. ``password`` only
    matters when ``pfx`` is ``None`` (it protects the freshly made base file).
    """
    parsed = pkcs12.Pfx.load(pfx if pfx is not None else base_pkcs12(password))
    mac_data = parsed["mac_data"]
    rewritten: bytes = pkcs12.Pfx(
        {
            "version": "v3",
            "auth_safe": parsed["auth_safe"],
            "mac_data": pkcs12.MacData(
                {
                    "mac": mac_data["mac"],
                    "mac_salt": mac_data["mac_salt"],
                    "iterations": iterations,
                }
            ),
        }
    ).dump()
    return rewritten


def huge_key_bag_iterations(
    pfx: bytes | None = None, *, iterations: int = MAX_ITERATIONS, password: str = HOSTILE_PASSWORD
) -> bytes:
    """(b) The PBKDF2 iteration count of every shrouded key bag's PBES2 set to ``iterations``.

    The MAC is recomputed with ``password`` and verifies, so a loader gets past it and
    then derives the key-bag decryption key with ``iterations`` PBKDF2 rounds. (The key
    was encrypted with 2048 rounds, so decryption would fail at the end anyway.)
    """
    parsed = pkcs12.Pfx.load(pfx if pfx is not None else base_pkcs12(password))
    contents = []
    for content_info in parsed.authenticated_safe:
        if content_info["content_type"].native != "data":
            contents.append(content_info)
            continue
        safe_contents = pkcs12.SafeContents.load(content_info["content"].native)
        for bag in safe_contents:
            if bag["bag_id"].native == "pkcs8_shrouded_key_bag":
                _set_pbkdf2_iterations(bag["bag_value"]["encryption_algorithm"], iterations)
        contents.append(_data_content_info(safe_contents))
    return assemble_pfx(contents, password=password, like=parsed)


def huge_cert_bag_iterations(
    pfx: bytes | None = None, *, iterations: int = MAX_ITERATIONS, password: str = HOSTILE_PASSWORD
) -> bytes:
    """(c) The PBKDF2 iteration count of the encrypted certificate content set to ``iterations``.

    Same as (b) for the ``EncryptedData`` content info holding the certificate bags; the
    MAC is recomputed and verifies.
    """
    parsed = pkcs12.Pfx.load(pfx if pfx is not None else base_pkcs12(password))
    contents = []
    for content_info in parsed.authenticated_safe:
        if content_info["content_type"].native == "encrypted_data":
            encrypted = content_info["content"]["encrypted_content_info"]
            _set_pbkdf2_iterations(encrypted["content_encryption_algorithm"], iterations)
        contents.append(cms.ContentInfo.load(content_info.dump(force=True)))
    return assemble_pfx(contents, password=password, like=parsed)


def kdf_inside_encrypted_safe(
    *,
    iterations: int = MAX_ITERATIONS,
    password: str = HOSTILE_PASSWORD,
    nested_safe: bool = False,
) -> bytes:
    """(f) A shrouded key bag whose PBKDF2 count is ``iterations``, hidden *inside* the
    encrypted certificate safe, where no count is visible without the password.

    The safe itself is PBES2 (PBKDF2-HMAC-SHA256, 2048 iterations, AES-256-CBC) under
    ``password`` (``""`` makes an empty-password file, as an authority upload without a
    password opens), the MAC is computed and verifies. ``nested_safe`` puts the key bag
    one safeContentsBag deeper. About 1.3 KB; a loader that checks only what it sees
    outside the safe derives the key with ``iterations`` rounds.
    """
    leaf, parsed, key_bag = _leaf_with_key_bag(HOSTILE_PASSWORD)
    _set_pbkdf2_iterations(key_bag["bag_value"]["encryption_algorithm"], iterations)
    bags = [_certificate_bag(leaf.cert_der(), key_bag), key_bag]
    if nested_safe:
        bags = [
            _certificate_bag(leaf.cert_der(), key_bag),
            pkcs12.SafeBag(
                {"bag_id": "safe_contents", "bag_value": pkcs12.SafeContents([key_bag])}
            ),
        ]
    return assemble_pfx(
        [encrypted_content_info(pkcs12.SafeContents(bags).dump(force=True), password)],
        password=password,
        like=parsed,
    )


def mac_at_cap(iterations: int, *, password: str = HOSTILE_PASSWORD) -> bytes:
    """(g) A valid small PKCS12 whose MAC has exactly ``iterations`` rounds (SHA-256),
    MACed with ``password``: uploaded with another password, checking the MAC is the
    whole cost of the refusal."""
    parsed = pkcs12.Pfx.load(base_pkcs12(password))
    return assemble_pfx(
        list(parsed.authenticated_safe),
        password=password,
        mac_iterations=iterations,
        mac_hash="sha256",
    )


PBMAC1_OID = "1.2.840.113549.1.5.14"
PBKDF2_OID = "1.2.840.113549.1.5.12"
HMAC_OIDS = {
    "sha1": "1.2.840.113549.2.7",
    "sha256": "1.2.840.113549.2.9",
    "sha384": "1.2.840.113549.2.10",
    "sha512": "1.2.840.113549.2.11",
}
MD5_OID = "1.2.840.113549.2.5"
"""Plain MD5, no HMAC at all: a pseudo-random function no PBKDF2 reader knows."""


def pbmac1_pkcs12(
    pfx: bytes | None = None,
    *,
    password: str = HOSTILE_PASSWORD,
    iterations: int = 2048,
    key_length: int | None = 32,
    prf: str = HMAC_OIDS["sha256"],
    mac: str = HMAC_OIDS["sha256"],
    kdf: str = PBKDF2_OID,
    compute: bool = True,
) -> bytes:
    """(h) ``pfx`` (default: the base file) under a PBMAC1 MAC (RFC 9579) instead of its own.

    PBKDF2 with the ``prf`` OID, ``iterations`` and ``key_length`` (``None``: left out)
    derives the key of the ``mac`` HMAC, over the same authenticated safe. With
    ``compute`` the value is computed from ``password`` (as OpenSSL 3.4 does: the UTF-8
    bytes through PBKDF2); without it, or when the parameters name an unknown hash or
    a key longer than 64 bytes, it is random, as a hostile uploader's would be. The
    MacData's own salt is ``NOT USED``, as OpenSSL writes it.
    """
    parsed = pkcs12.Pfx.load(pfx if pfx is not None else base_pkcs12(password))
    content: bytes = parsed["auth_safe"]["content"].native
    salt = os.urandom(16)
    names = {oid: name for name, oid in HMAC_OIDS.items()}
    if compute and prf in names and mac in names and key_length in range(1, 65):
        key = hashlib.pbkdf2_hmac(names[prf], password.encode(), salt, iterations, key_length)
        digest = hmac.new(key, content, names[mac]).digest()
    else:
        digest = os.urandom(32)
    pbkdf2_params = [core.OctetString(salt).dump(), core.Integer(iterations).dump()]
    if key_length is not None:
        pbkdf2_params.append(core.Integer(key_length).dump())
    pbkdf2_params.append(_sequence(core.ObjectIdentifier(prf).dump(), core.Null().dump()))
    pbmac1_params = _sequence(
        _sequence(core.ObjectIdentifier(kdf).dump(), _sequence(*pbkdf2_params)),
        _sequence(core.ObjectIdentifier(mac).dump(), core.Null().dump()),
    )
    mac_data = _sequence(
        _sequence(
            _sequence(core.ObjectIdentifier(PBMAC1_OID).dump(), pbmac1_params),
            core.OctetString(digest).dump(),
        ),
        core.OctetString(b"NOT USED").dump(),
    )
    return _sequence(core.Integer(3).dump(), parsed["auth_safe"].dump(), mac_data)


class _Algorithm(core.Sequence):
    _fields = [("algorithm", core.ObjectIdentifier), ("parameters", core.Any)]  # noqa: RUF012


class _Pbmac1Params(core.Sequence):
    _fields = [("key_derivation_func", _Algorithm), ("message_auth_scheme", _Algorithm)]  # noqa: RUF012


@dataclass(frozen=True, slots=True, kw_only=True)
class Pbmac1Parameters:
    """What a PBMAC1 MAC declares, read back with ``asn1crypto`` (the PBKDF2 fields are
    ``None`` when ``kdf`` is not PBKDF2)."""

    kdf: str
    iterations: int | None
    key_length: int | None
    prf: str | None
    mac: str


def pbmac1_parameters(pfx: bytes) -> Pbmac1Parameters:
    """The PBMAC1 parameters of ``pfx``'s MAC (its algorithm must be PBMAC1)."""
    algorithm = pkcs12.Pfx.load(pfx)["mac_data"]["mac"]["digest_algorithm"]
    assert algorithm["algorithm"].dotted == PBMAC1_OID
    params = _Pbmac1Params.load(algorithm["parameters"].dump())
    kdf = params["key_derivation_func"]
    mac = params["message_auth_scheme"]["algorithm"].dotted
    if kdf["algorithm"].dotted != PBKDF2_OID:
        return Pbmac1Parameters(
            kdf=kdf["algorithm"].dotted, iterations=None, key_length=None, prf=None, mac=mac
        )
    pbkdf2 = algos.Pbkdf2Params.load(kdf["parameters"].dump())
    return Pbmac1Parameters(
        kdf=PBKDF2_OID,
        iterations=pbkdf2["iteration_count"].native,
        key_length=pbkdf2["key_length"].native,
        prf=pbkdf2["prf"]["algorithm"].dotted,
        mac=mac,
    )


def _sequence(*encoded: bytes) -> bytes:
    """A DER SEQUENCE of already encoded parts."""
    content = b"".join(encoded)
    if len(content) < 0x80:
        return bytes([0x30, len(content)]) + content
    size = (len(content).bit_length() + 7) // 8
    return bytes([0x30, 0x80 | size]) + len(content).to_bytes(size, "big") + content


def encrypted_content_info(
    plaintext: bytes, password: str, *, iterations: int = 2048
) -> cms.ContentInfo:
    """``plaintext`` (DER SafeContents) as PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC encrypted data."""
    salt, iv = os.urandom(16), os.urandom(16)
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, 32)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    algorithm = algos.EncryptionAlgorithm(
        {
            "algorithm": "pbes2",
            "parameters": {
                "key_derivation_func": {
                    "algorithm": "pbkdf2",
                    "parameters": {
                        "salt": algos.Pbkdf2Salt(name="specified", value=salt),
                        "iteration_count": iterations,
                        "prf": {"algorithm": "sha256", "parameters": core.Null()},
                    },
                },
                "encryption_scheme": {"algorithm": "aes256_cbc", "parameters": iv},
            },
        }
    )
    return cms.ContentInfo(
        {
            "content_type": "encrypted_data",
            "content": cms.EncryptedData(
                {
                    "version": "v0",
                    "encrypted_content_info": {
                        "content_type": "data",
                        "content_encryption_algorithm": algorithm,
                        "encrypted_content": ciphertext,
                    },
                }
            ),
        }
    )


def deeply_nested_safe_contents(depth: int = 50, *, password: str = HOSTILE_PASSWORD) -> bytes:
    """(d) The key and certificate bags wrapped in ``depth`` nested safeContentsBags.

    RFC 7292 lets a ``safeContentsBag`` (OID 1.2.840.113549.1.12.10.1.6) hold another
    ``SafeContents``; this file nests ``depth`` of them in one unencrypted ``data``
    content info, with the real (shrouded) key bag and a plain certificate bag sharing a
    localKeyId at the bottom. The MAC is computed and verifies. A recursive loader
    without a depth cap walks all the way down (or overflows its stack for large depths).
    """
    leaf, parsed, key_bag = _leaf_with_key_bag(password)
    level = pkcs12.SafeContents([_certificate_bag(leaf.cert_der(), key_bag), key_bag])
    for _ in range(depth):
        level = pkcs12.SafeContents(
            [pkcs12.SafeBag({"bag_id": "safe_contents", "bag_value": level})]
        )
    return assemble_pfx([_data_content_info(level)], password=password, like=parsed)


def many_certificates(count: int = 500, *, password: str = HOSTILE_PASSWORD) -> bytes:
    """(e) ``count`` certificate bags, unencrypted, plus the shrouded key of the first.

    The first bag is a factory leaf matching the key; the others are bare certificates
    (CN ``h<N>``, no extensions, the leaf's public key, signed by the same root). The
    bags sit in a plain ``data`` content info, the key in a PBES2 shrouded key bag; the
    MAC is computed and verifies, so ``cryptography`` loads all ``count`` of them.
    500 certificates make ~170 KB: under a 256 KiB byte cap, so only a certificate
    count cap refuses it.
    """
    root = TestCA.root(name="certward hostile root")
    leaf, parsed, key_bag = _leaf_with_key_bag(password, root)
    bags = [_certificate_bag(leaf.cert_der(), key_bag)]
    for index in range(1, count):
        bags.append(_certificate_bag(_bare_certificate(root, leaf, index), None))
    return assemble_pfx(
        [_data_content_info(pkcs12.SafeContents(bags)), _data_content_info([key_bag])],
        password=password,
        like=parsed,
    )


def assemble_pfx(
    contents: list[cms.ContentInfo],
    *,
    password: str | None,
    like: pkcs12.Pfx | None = None,
    mac_iterations: int = 2048,
    mac_hash: str = "sha256",
) -> bytes:
    """A PFX whose AuthenticatedSafe holds ``contents``, MACed with ``password``.

    ``like`` reuses another PFX's MAC algorithm, salt and iteration count. ``password``
    ``None`` writes no MAC at all.
    """
    authenticated_safe = pkcs12.AuthenticatedSafe(contents).dump()
    pfx: dict[str, object] = {
        "version": "v3",
        "auth_safe": cms.ContentInfo({"content_type": "data", "content": authenticated_safe}),
    }
    if password is not None:
        if like is not None and like["mac_data"].native is not None:
            mac_hash = like["mac_data"]["mac"]["digest_algorithm"]["algorithm"].native
            salt = like["mac_data"]["mac_salt"].native
            mac_iterations = like["mac_data"]["iterations"].native
        else:
            salt = os.urandom(8)
        digest = compute_mac(authenticated_safe, password, mac_hash, salt, mac_iterations)
        pfx["mac_data"] = pkcs12.MacData(
            {
                "mac": algos.DigestInfo(
                    {"digest_algorithm": {"algorithm": mac_hash}, "digest": digest}
                ),
                "mac_salt": salt,
                "iterations": mac_iterations,
            }
        )
    assembled: bytes = pkcs12.Pfx(pfx).dump()
    return assembled


def pkcs12_kdf(
    hash_name: str, password: bytes, salt: bytes, purpose: int, iterations: int, length: int
) -> bytes:
    """RFC 7292 appendix B.2 key derivation (purpose 1: key, 2: IV, 3: MAC key).

    ``password`` is already the BMPString form with its two zero bytes (``bmp_password``).
    """
    block = hashlib.new(hash_name).block_size
    diversifier = bytes([purpose]) * block
    salt_part = _fill(salt, block)
    password_part = _fill(password, block)
    material = salt_part + password_part
    output = b""
    while len(output) < length:
        a = hashlib.new(hash_name, diversifier + material).digest()
        for _ in range(iterations - 1):
            a = hashlib.new(hash_name, a).digest()
        output += a
        b = int.from_bytes(_fill(a, block)[:block], "big") + 1
        material = b"".join(
            ((int.from_bytes(material[i : i + block], "big") + b) % (1 << (8 * block))).to_bytes(
                block, "big"
            )
            for i in range(0, len(material), block)
        )
    return output[:length]


def _fill(data: bytes, block: int) -> bytes:
    """``data`` repeated to the next multiple of ``block`` bytes (empty stays empty)."""
    if not data:
        return b""
    size = block * -(-len(data) // block)
    return (data * (size // len(data) + 1))[:size]


def bmp_password(password: str | None) -> bytes:
    """The password as RFC 7292 wants it: UTF-16BE plus two zero bytes; ``None`` is empty."""
    if password is None:
        return b""
    return password.encode("utf-16-be") + b"\x00\x00"


def compute_mac(
    authenticated_safe: bytes, password: str, hash_name: str, salt: bytes, iterations: int
) -> bytes:
    """The PKCS12 HMAC over the AuthenticatedSafe octets."""
    size = hashlib.new(hash_name).digest_size
    key = pkcs12_kdf(hash_name, bmp_password(password), salt, 3, iterations, size)
    return hmac.new(key, authenticated_safe, hash_name).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class PbeIterations:
    """Iteration counts of a PFX's encryption: shrouded key bags and encrypted contents."""

    key_bags: tuple[int, ...]
    encrypted_contents: tuple[int, ...]


def mac_iterations(pfx: bytes) -> int | None:
    """The MAC iteration count, ``None`` without a MAC."""
    mac_data = pkcs12.Pfx.load(pfx)["mac_data"]
    return None if mac_data.native is None else int(mac_data["iterations"].native)


def mac_verifies(pfx: bytes, password: str) -> bool:
    """True when the MAC checks out with ``password`` (runs the file's MAC iterations)."""
    parsed = pkcs12.Pfx.load(pfx)
    mac_data = parsed["mac_data"]
    expected = compute_mac(
        parsed["auth_safe"]["content"].native,
        password,
        mac_data["mac"]["digest_algorithm"]["algorithm"].native,
        mac_data["mac_salt"].native,
        mac_data["iterations"].native,
    )
    return hmac.compare_digest(expected, mac_data["mac"]["digest"].native)


def pbe_iterations(pfx: bytes) -> PbeIterations:
    """Iteration counts of every shrouded key bag (any depth) and encrypted content."""
    parsed = pkcs12.Pfx.load(pfx)
    key_bags: list[int] = []
    encrypted: list[int] = []
    for content_info in parsed.authenticated_safe:
        if content_info["content_type"].native == "encrypted_data":
            algorithm = content_info["content"]["encrypted_content_info"][
                "content_encryption_algorithm"
            ]
            encrypted.append(_iterations_of(algorithm))
        elif content_info["content_type"].native == "data":
            for bag, _ in _walk(pkcs12.SafeContents.load(content_info["content"].native), 0):
                if bag["bag_id"].native == "pkcs8_shrouded_key_bag":
                    key_bags.append(_iterations_of(bag["bag_value"]["encryption_algorithm"]))
    return PbeIterations(key_bags=tuple(key_bags), encrypted_contents=tuple(encrypted))


def safe_contents_depth(pfx: bytes) -> int:
    """How many safeContentsBags deep the deepest bag of the unencrypted contents sits."""
    parsed = pkcs12.Pfx.load(pfx)
    depth = 0
    for content_info in parsed.authenticated_safe:
        if content_info["content_type"].native == "data":
            for _, level in _walk(pkcs12.SafeContents.load(content_info["content"].native), 0):
                depth = max(depth, level)
    return depth


def certificate_bag_count(pfx: bytes) -> int:
    """Certificate bags in the unencrypted contents, at any depth."""
    parsed = pkcs12.Pfx.load(pfx)
    count = 0
    for content_info in parsed.authenticated_safe:
        if content_info["content_type"].native == "data":
            safe_contents = pkcs12.SafeContents.load(content_info["content"].native)
            count += sum(bag["bag_id"].native == "cert_bag" for bag, _ in _walk(safe_contents, 0))
    return count


def _walk(safe_contents: pkcs12.SafeContents, level: int) -> list[tuple[pkcs12.SafeBag, int]]:
    found = []
    for bag in safe_contents:
        found.append((bag, level))
        if bag["bag_id"].native == "safe_contents":
            found.extend(_walk(bag["bag_value"], level + 1))
    return found


def _iterations_of(algorithm: algos.EncryptionAlgorithm) -> int:
    if algorithm["algorithm"].native == "pbes2":
        return int(algorithm["parameters"]["key_derivation_func"]["parameters"]["iteration_count"])
    return int(algorithm["parameters"]["iterations"].native)


def _set_pbkdf2_iterations(algorithm: algos.EncryptionAlgorithm, iterations: int) -> None:
    if algorithm["algorithm"].native != "pbes2":
        raise ValueError(f"expected PBES2, found {algorithm['algorithm'].native}")
    kdf_parameters = algorithm["parameters"]["key_derivation_func"]["parameters"]
    kdf_parameters["iteration_count"] = iterations


def _data_content_info(
    safe_contents: pkcs12.SafeContents | list[pkcs12.SafeBag],
) -> cms.ContentInfo:
    if not isinstance(safe_contents, pkcs12.SafeContents):
        safe_contents = pkcs12.SafeContents(safe_contents)
    return cms.ContentInfo({"content_type": "data", "content": safe_contents.dump(force=True)})


def _bare_certificate(root: TestCA, leaf: IssuedCert, index: int) -> bytes:
    """A minimal certificate (no extensions), small so that hundreds fit under 256 KiB."""
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"h{index}")]))
        .issuer_name(root.certificate.subject)
        .public_key(leaf.certificate.public_key())
        .serial_number(index)
        .not_valid_before(DEFAULT_NOT_BEFORE)
        .not_valid_after(DEFAULT_NOT_AFTER)
        .sign(root.private_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def _first_bag(parsed: pkcs12.Pfx, bag_id: str) -> pkcs12.SafeBag:
    for content_info in parsed.authenticated_safe:
        if content_info["content_type"].native == "data":
            for bag, _ in _walk(pkcs12.SafeContents.load(content_info["content"].native), 0):
                if bag["bag_id"].native == bag_id:
                    return pkcs12.SafeBag.load(bag.dump())
    raise ValueError(f"no {bag_id} in the PFX")


def _leaf_with_key_bag(
    password: str, root: TestCA | None = None
) -> tuple[IssuedCert, pkcs12.Pfx, pkcs12.SafeBag]:
    """A leaf, its ``cryptography``-made PFX and that PFX's shrouded key bag."""
    issuer = root if root is not None else TestCA.root(name="certward hostile root")
    leaf = issuer.issue_leaf("hostile.example.test")
    parsed = pkcs12.Pfx.load(leaf.pkcs12(password, include_chain=False, iterations=2048))
    return leaf, parsed, _first_bag(parsed, "pkcs8_shrouded_key_bag")


def _certificate_bag(certificate_der: bytes, key_bag: pkcs12.SafeBag | None) -> pkcs12.SafeBag:
    bag: dict[str, object] = {
        "bag_id": "cert_bag",
        "bag_value": pkcs12.CertBag(
            {"cert_id": "x509", "cert_value": core.ParsableOctetString(certificate_der)}
        ),
    }
    if key_bag is not None:
        local_key_ids = [
            attribute
            for attribute in key_bag["bag_attributes"]
            if attribute["type"].native == "local_key_id"
        ]
        bag["bag_attributes"] = pkcs12.Attributes(local_key_ids)
    return pkcs12.SafeBag(bag)
