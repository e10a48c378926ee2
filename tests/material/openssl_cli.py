"""Material made by the real ``openssl`` command (OpenSSL 3.0), as users make it.

::

    cli = OpenSSLCli(executable=require_tool("openssl"), workdir=tmp_path)
    p12 = cli.pkcs12(leaf, variant=Pkcs12Variant.LEGACY, password=UNICODE_PASSWORD)
    assert "pbeWithSHA1And40BitRC2-CBC" in cli.pkcs12_info(p12, UNICODE_PASSWORD)

Inputs are the factory's ``IssuedCert`` values; outputs are ``bytes``. Every call works
in a fresh directory under ``workdir``. Passwords reach OpenSSL through
``-passout file:``/``-passin file:`` (UTF-8, no newline), so unicode and commas arrive
intact; only the empty password uses ``pass:`` because OpenSSL cannot read an empty
password file.

Iterations: in OpenSSL 3.0 ``-iter N`` sets the count of the encryption KDFs *and* of
the MAC; ``-maciter`` is a no-op kept for compatibility, so it is never passed.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.material.factory import IssuedCert

UNICODE_PASSWORD = "pässwörd-ü€"
COMMA_PASSWORD = "a,b,c"
DEFAULT_PASSWORD = "certward-test-password"
FRIENDLY_NAME = "certward-test"


class Pkcs12Variant(Enum):
    """How ``openssl pkcs12 -export`` protects the file; each carries its exact options.

    OpenSSL 3.0's default iteration count (2048) applies to every KDF and the MAC unless
    ``iterations`` is given.
    """

    DEFAULT = (
        (),
        "OpenSSL 3 default: both bags PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), HMAC-SHA256 MAC",
    )
    LEGACY = (
        ("-legacy",),
        "-legacy: certificates pbeWithSHA1And40BitRC2-CBC, key "
        "pbeWithSHA1And3-KeyTripleDES-CBC, HMAC-SHA1 MAC",
    )
    TRIPLE_DES = (
        ("-certpbe", "PBE-SHA1-3DES", "-keypbe", "PBE-SHA1-3DES", "-macalg", "sha1"),
        "both bags pbeWithSHA1And3-KeyTripleDES-CBC, HMAC-SHA1 MAC (no legacy provider)",
    )
    RC2_40 = (
        (
            "-legacy",
            "-certpbe",
            "PBE-SHA1-RC2-40",
            "-keypbe",
            "PBE-SHA1-RC2-40",
            "-macalg",
            "sha1",
        ),
        "both bags (the key too) pbeWithSHA1And40BitRC2-CBC, HMAC-SHA1 MAC",
    )
    NO_MAC = (
        ("-nomac",),
        "DEFAULT's encryption, no MAC at all (no integrity check)",
    )
    NO_MAC_ITERATION = (
        ("-nomaciter",),
        "DEFAULT's encryption, HMAC-SHA256 MAC with iteration count 1",
    )
    NO_ENCRYPTION = (
        ("-keypbe", "NONE", "-certpbe", "NONE"),
        "plain certificate bags and a plain keyBag (no shrouding), HMAC-SHA256 MAC",
    )
    PLAINTEXT = (
        ("-keypbe", "NONE", "-certpbe", "NONE", "-nomac"),
        "plain certificate bags, plain keyBag, no MAC: nothing protected",
    )

    def __init__(self, options: tuple[str, ...], description: str) -> None:
        self.options = options
        self.description = description


class OpenSSLFailed(Exception):
    """``openssl`` exited non-zero; ``stderr`` says why."""

    def __init__(self, arguments: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{' '.join(arguments)} exited {returncode}: {stderr.strip()}")
        self.arguments = arguments
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenSSLCli:
    """The ``openssl`` program at ``executable``, working in fresh folders under ``workdir``."""

    executable: str
    workdir: Path

    def pkcs12(
        self,
        leaf: IssuedCert,
        *,
        variant: Pkcs12Variant = Pkcs12Variant.DEFAULT,
        password: str = DEFAULT_PASSWORD,
        include_chain: bool = True,
        iterations: int | None = None,
        friendly_name: str = FRIENDLY_NAME,
    ) -> bytes:
        """``openssl pkcs12 -export -in leaf -inkey key [-certfile chain] -name NAME ...``.

        ``password=""`` gives ``-passout pass:`` (an empty password: still encrypted and
        MACed unless the variant says otherwise). ``iterations`` adds ``-iter N``.
        """
        scratch = self._scratch()
        arguments = [
            "pkcs12",
            "-export",
            "-in",
            _write(scratch / "leaf.pem", leaf.cert_pem()),
            "-inkey",
            _write(scratch / "key.pem", leaf.key_pem()),
            "-name",
            friendly_name,
            *variant.options,
            *_password_option("-passout", password, scratch),
            "-out",
            str(scratch / "out.p12"),
        ]
        if include_chain and leaf.chain:
            arguments += ["-certfile", _write(scratch / "chain.pem", leaf.chain_pem())]
        if iterations is not None:
            arguments += ["-iter", str(iterations)]
        self.run(arguments)
        return (scratch / "out.p12").read_bytes()

    def pkcs12_info(self, data: bytes, password: str) -> str:
        """What ``openssl pkcs12 -info -noout -legacy -passin ...`` prints (it uses stderr).

        ``-legacy`` only loads the legacy provider here, so RC2 files decrypt too.
        Raises ``OpenSSLFailed`` on a wrong password or a broken file.
        """
        scratch = self._scratch()
        completed = self.run(
            [
                "pkcs12",
                "-info",
                "-noout",
                "-legacy",
                "-in",
                _write(scratch / "in.p12", data),
                *_password_option("-passin", password, scratch),
            ]
        )
        return completed.stdout + completed.stderr

    def encrypted_pkcs8_pem(self, leaf: IssuedCert, password: str) -> bytes:
        """``openssl pkcs8 -topk8 -v2 aes-256-cbc``: ``BEGIN ENCRYPTED PRIVATE KEY``.

        PBES2 with PBKDF2-HMAC-SHA256 (2048 iterations) and AES-256-CBC.
        """
        scratch = self._scratch()
        self.run(
            [
                "pkcs8",
                "-topk8",
                "-v2",
                "aes-256-cbc",
                "-in",
                _write(scratch / "key.pem", leaf.key_pem()),
                *_password_option("-passout", password, scratch),
                "-out",
                str(scratch / "out.pem"),
            ]
        )
        return (scratch / "out.pem").read_bytes()

    def traditional_key_pem(self, leaf: IssuedCert, password: str | None = None) -> bytes:
        """A traditional PEM key: ``BEGIN RSA PRIVATE KEY`` / ``BEGIN EC PRIVATE KEY``.

        RSA: ``openssl rsa -traditional [-aes256]``; EC: ``openssl ec [-aes256]``. With a
        password the PEM has ``Proc-Type: 4,ENCRYPTED`` and ``DEK-Info: AES-256-CBC,...``.
        Other key types have no traditional form: ``ValueError``.
        """
        if isinstance(leaf.private_key, rsa.RSAPrivateKey):
            command = ["rsa", "-traditional"]
        elif isinstance(leaf.private_key, ec.EllipticCurvePrivateKey):
            command = ["ec"]
        else:
            raise ValueError(f"no traditional PEM form for {type(leaf.private_key).__name__}")
        scratch = self._scratch()
        arguments = [
            *command,
            "-in",
            _write(scratch / "key.pem", leaf.key_pem()),
            "-out",
            str(scratch / "out.pem"),
        ]
        if password is not None:
            arguments += ["-aes256", *_password_option("-passout", password, scratch)]
        self.run(arguments)
        return (scratch / "out.pem").read_bytes()

    def certificate_der(self, leaf: IssuedCert) -> bytes:
        """``openssl x509 -outform DER``: the leaf certificate alone, DER."""
        scratch = self._scratch()
        self.run(
            [
                "x509",
                "-in",
                _write(scratch / "leaf.pem", leaf.cert_pem()),
                "-outform",
                "DER",
                "-out",
                str(scratch / "out.der"),
            ]
        )
        return (scratch / "out.der").read_bytes()

    def private_key_der(self, leaf: IssuedCert, *, traditional: bool = False) -> bytes:
        """The private key, unencrypted DER.

        Default PKCS#8 (``openssl pkcs8 -topk8 -nocrypt -outform DER``); ``traditional``
        gives ``openssl pkey -outform DER``, which in OpenSSL 3.0 writes PKCS#1 for RSA
        and SEC1 for EC (and PKCS#8 for Ed25519/Ed448, which have nothing else).
        """
        scratch = self._scratch()
        key = _write(scratch / "key.pem", leaf.key_pem())
        out = str(scratch / "out.der")
        if traditional:
            self.run(["pkey", "-in", key, "-outform", "DER", "-out", out])
        else:
            self.run(["pkcs8", "-topk8", "-nocrypt", "-in", key, "-outform", "DER", "-out", out])
        return (scratch / "out.der").read_bytes()

    def pkcs7_chain(self, leaf: IssuedCert, *, der: bool = False) -> bytes:
        """``openssl crl2pkcs7 -nocrl -certfile FULLCHAIN``: leaf then issuers, no CRL.

        PEM (``BEGIN PKCS7``) unless ``der``.
        """
        scratch = self._scratch()
        self.run(
            [
                "crl2pkcs7",
                "-nocrl",
                "-certfile",
                _write(scratch / "fullchain.pem", leaf.full_chain_pem()),
                "-outform",
                "DER" if der else "PEM",
                "-out",
                str(scratch / "out.p7"),
            ]
        )
        return (scratch / "out.p7").read_bytes()

    def reads_pbmac1(self) -> bool:
        """True from OpenSSL 3.4, the first to read (and write) PBMAC1 (RFC 9579)."""
        words = self.run(["version"]).stdout.split()
        major, minor = (int(part) for part in words[1].split(".")[:2])
        return (major, minor) >= (3, 4)

    def run(self, arguments: list[str]) -> subprocess.CompletedProcess[str]:
        """Run ``openssl ARGUMENTS``; ``OpenSSLFailed`` unless it exits 0."""
        command = [self.executable, *arguments]
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if completed.returncode != 0:
            raise OpenSSLFailed(command, completed.returncode, completed.stderr)
        return completed

    def _scratch(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="openssl-", dir=self.workdir))


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _password_option(option: str, password: str, scratch: Path) -> list[str]:
    if password == "":
        return [option, "pass:"]
    password_file = scratch / f"password{option}"
    password_file.write_bytes(password.encode("utf-8"))
    return [option, f"file:{password_file}"]
