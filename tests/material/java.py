"""Java's view of a PKCS12 file: ``tests/java/Pkcs12Check.java`` and ``keytool``.

::

    checker = Pkcs12Check.compile(require_java_tools(), workdir)   # once per session
    entries = checker.keystore(p12_bytes, "password")                # list[KeystoreEntry]
    checker.truststore(truststore_bytes, "password")                 # needs a trusted cert
    checker.keytool_list(p12_bytes, "password")                      # keytool's own text

Java 17's ``KeyStore.getInstance("PKCS12")`` reads PBES2/AES and the legacy 3DES/RC2
files; it marks a certificate as a trusted-cert entry only when its bag carries Oracle's
trusted-key-usage attribute (what ``serialize_java_truststore`` writes). It decrypts
bags only with ASCII passwords: a correct non-ASCII one fails with "keystore password was
incorrect / caused by ... Password is not ASCII".
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.material.tools import JavaTools

SOURCE = Path(__file__).resolve().parent.parent / "java" / "Pkcs12Check.java"


class JavaRefused(Exception):
    """``Pkcs12Check`` or ``keytool`` exited non-zero; ``error`` is Java's exception class."""

    def __init__(self, returncode: int, stderr: str) -> None:
        super().__init__(f"exited {returncode}: {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr
        fields = stderr.strip().split("\t")
        self.error = fields[1] if len(fields) > 1 and fields[0] == "error" else ""


@dataclass(frozen=True, slots=True, kw_only=True)
class KeystoreEntry:
    """One alias as Java sees it: a ``key`` entry (with its chain) or a ``trusted-cert``."""

    alias: str
    kind: str
    key_algorithm: str | None
    chain_length: int
    subject: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Pkcs12Check:
    """The compiled ``Pkcs12Check`` class in ``classes``, run with ``tools.java``."""

    tools: JavaTools
    classes: Path
    workdir: Path

    @classmethod
    def compile(cls, tools: JavaTools, workdir: Path) -> Pkcs12Check:
        """``javac -d WORKDIR/classes Pkcs12Check.java`` (about a second; do it once)."""
        classes = workdir / "classes"
        classes.mkdir(parents=True, exist_ok=True)
        _run([tools.javac, "-d", str(classes), str(SOURCE)], timeout=120)
        return cls(tools=tools, classes=classes, workdir=workdir)

    def keystore(self, data: bytes, password: str) -> list[KeystoreEntry]:
        """Load ``data`` as a PKCS12 keystore; every entry, sorted by alias."""
        return self._check("keystore", data, password)

    def truststore(self, data: bytes, password: str) -> list[KeystoreEntry]:
        """Load ``data`` as a truststore; ``JavaRefused`` unless it has a trusted-cert entry."""
        return self._check("truststore", data, password)

    def keytool_list(self, data: bytes, password: str) -> str:
        """``keytool -list -keystore FILE -storetype PKCS12 -storepass:file PWFILE`` output."""
        scratch = self._scratch()
        store = scratch / "store.p12"
        store.write_bytes(data)
        password_file = scratch / "password"
        password_file.write_bytes(password.encode("utf-8"))
        completed = _run(
            [
                self.tools.keytool,
                "-J-Duser.language=en",
                "-list",
                "-keystore",
                str(store),
                "-storetype",
                "PKCS12",
                "-storepass:file",
                str(password_file),
            ]
        )
        return completed.stdout

    def _check(self, mode: str, data: bytes, password: str) -> list[KeystoreEntry]:
        scratch = self._scratch()
        store = scratch / "store.p12"
        store.write_bytes(data)
        password_file = scratch / "password"
        password_file.write_bytes(password.encode("utf-8"))
        completed = _run(
            [
                self.tools.java,
                "-Xshare:auto",
                "-XX:TieredStopAtLevel=1",
                "-cp",
                str(self.classes),
                "Pkcs12Check",
                mode,
                str(store),
                str(password_file),
            ]
        )
        return [_parse_entry(line) for line in completed.stdout.splitlines() if line]

    def _scratch(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="java-", dir=self.workdir))


def _parse_entry(line: str) -> KeystoreEntry:
    tag, alias, kind, algorithm, chain_length, subject = line.split("\t")
    if tag != "entry":
        raise ValueError(f"unexpected Pkcs12Check output: {line!r}")
    return KeystoreEntry(
        alias=alias,
        kind=kind,
        key_algorithm=None if algorithm == "-" else algorithm,
        chain_length=int(chain_length),
        subject=subject,
    )


def _run(command: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        command,
        capture_output=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if completed.returncode != 0:
        raise JavaRefused(completed.returncode, completed.stderr + completed.stdout)
    return completed
