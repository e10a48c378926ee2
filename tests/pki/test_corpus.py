"""pyca's PKCS12 conformance corpus: every file is loaded, or refused with a typed error.

The corpus is the ``cryptography_vectors`` package: ``pkcs12/`` (pyca's own files) and
``x509/PKITS_data/pkcs12/`` (NIST PKITS, one file per test certificate). Passwords are
the ones pyca's tests use (``tests/hazmat/primitives/test_pkcs12.py``) and the one the
PKITS documentation gives. pyca itself is the oracle for which files are readable:
whatever ``pkcs12.load_pkcs12`` opens, certward must open too. (pyca is only asked
about the files certward refuses: each load costs ~40 ms of RSA key validation, and
a second pass over 436 files would double the time of this module.)
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cryptography_vectors
import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from certward.errors import MaterialError
from certward.pki.material import Material, MaterialKind, load_material
from certward.pki.problems import ProblemCode

VECTORS = Path(cryptography_vectors.__file__).parent
PYCA_FOLDER = VECTORS / "pkcs12"
PKITS_FOLDER = VECTORS / "x509" / "PKITS_data" / "pkcs12"
CORPUS = sorted(PYCA_FOLDER.glob("*.p12")) + sorted(PKITS_FOLDER.glob("*.p12"))
MINIMUM_CORPUS_SIZE = 400
"""pyca ships 31 PKCS12 files of its own and PKITS 405; fewer means a broken install."""

LOADED = "loaded"


def corpus_password(path: Path) -> bytes | None:
    """The password pyca's tests (or the PKITS documentation) give for ``path``."""
    if path.parent == PKITS_FOLDER:
        return b"password"
    if path.name.endswith("-no-pwd.p12") or path.name == "no-password.p12":
        return None
    if path.name == "java-truststore.p12":
        return None  # written by serialize_java_truststore with NoEncryption
    if path.name.endswith("-pwd.p12"):
        return b"password"  # name-*-pwd.p12, no-cert-*-pwd.p12, no-name-pwd.p12
    return b"cryptography"  # cert-*-key-*.p12, cert-aes256cbc-no-key.p12, no-cert-key-*.p12


def corpus_id(path: Path) -> str:
    return str(path.relative_to(VECTORS))


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What happened to one corpus file in certward and in pyca."""

    path: Path
    material: Material | None = None
    refusal: MaterialError | None = None
    crash: BaseException | None = None
    pyca_reads: bool | None = None
    """Whether pyca opens the file; only asked when certward does not."""

    @property
    def label(self) -> str:
        if self.material is not None:
            return LOADED
        if self.refusal is not None:
            return self.refusal.code
        return f"crash: {type(self.crash).__name__}"


def read_with_pyca(data: bytes, password: bytes | None) -> bool:
    """Whether ``pkcs12.load_pkcs12`` opens ``data`` (its warnings silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pkcs12.load_pkcs12(data, password)
        except ValueError:
            return False
    return True


def run_corpus_file(path: Path) -> Outcome:
    """Load ``path`` with certward, keeping whatever it raised, and with pyca."""
    data = path.read_bytes()
    password = corpus_password(path)
    try:
        material = load_material(data, password=password, expect_pkcs12=True)
    except MaterialError as exc:
        return Outcome(path=path, refusal=exc, pyca_reads=read_with_pyca(data, password))
    except Exception as exc:  # recording untyped exceptions is the point
        return Outcome(path=path, crash=exc, pyca_reads=read_with_pyca(data, password))
    return Outcome(path=path, material=material)


@pytest.fixture(scope="module")
def outcomes() -> dict[Path, Outcome]:
    """Every corpus file run once; the tests below judge the outcomes."""
    return {path: run_corpus_file(path) for path in CORPUS}


def test_corpus_is_complete() -> None:
    """Both corpus folders are installed, together at least 400 files."""
    assert any(path.parent == PYCA_FOLDER for path in CORPUS)
    assert any(path.parent == PKITS_FOLDER for path in CORPUS)
    assert len(CORPUS) >= MINIMUM_CORPUS_SIZE


@pytest.mark.parametrize("path", CORPUS, ids=corpus_id)
def test_corpus_file_is_loaded_or_refused_with_a_typed_error(
    path: Path, outcomes: dict[Path, Outcome]
) -> None:
    """load_material raises only MaterialError, and never blames the (right) password."""
    outcome = outcomes[path]
    assert outcome.crash is None, f"untyped {outcome.crash!r}"
    if outcome.refusal is not None:
        assert outcome.refusal.code != ProblemCode.WRONG_PASSWORD.value, str(outcome.refusal)


@pytest.mark.parametrize("path", CORPUS, ids=corpus_id)
def test_corpus_file_is_refused_only_when_pyca_refuses_it(
    path: Path, outcomes: dict[Path, Outcome]
) -> None:
    """No false refusal: a file certward refuses, pyca cannot open with that password either."""
    outcome = outcomes[path]
    if outcome.material is not None:
        assert outcome.material.kind is MaterialKind.PKCS12
        assert outcome.material.certificates or outcome.material.private_key is not None
        return
    assert not outcome.pyca_reads, f"falsely refused: {outcome.refusal}"


@pytest.mark.parametrize(
    ("path", "warning"),
    [
        (PYCA_FOLDER / "no-password.p12", "PKCS#12 bundle could not be parsed as DER"),
        (
            PKITS_FOLDER / "InvalidNegativeSerialNumberTest15EE.p12",
            "Parsed a serial number which wasn't positive",
        ),
    ],
    ids=["ber-encoded-pfx", "negative-serial-number"],
)
def test_pyca_warnings_on_readable_files_do_not_escape(path: Path, warning: str) -> None:
    """Files pyca reads with a warning (BER encoding, negative serial) load without one."""
    data = path.read_bytes()
    with pytest.warns(UserWarning, match=warning):
        pkcs12.load_pkcs12(data, corpus_password(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        material = load_material(data, password=corpus_password(path))
    assert material.certificates


def test_corpus_summary(outcomes: dict[Path, Outcome], capsys: pytest.CaptureFixture[str]) -> None:
    """Every file is accounted for: loaded or refused by code, and no crash at all."""
    counts = Counter(outcome.label for outcome in outcomes.values())
    crashes = {corpus_id(o.path): o.label for o in outcomes.values() if o.crash is not None}
    false_refusals = sum(1 for o in outcomes.values() if o.material is None and o.pyca_reads)
    refused = sorted((code, n) for code, n in counts.items() if code != LOADED)
    summary = (
        f"PKCS12 corpus: {len(outcomes)} files, {counts[LOADED]} loaded, "
        f"{sum(n for _, n in refused)} refused "
        f"({', '.join(f'{code}: {n}' for code, n in refused) or 'none'}; "
        f"{false_refusals} of them readable by pyca), {len(crashes)} crashes"
    )
    with capsys.disabled():
        print(f"\n{summary}")
    assert crashes == {}
    assert false_refusals == 0
