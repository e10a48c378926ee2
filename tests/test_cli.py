"""The ``certward`` command line: contracts other tools script against."""

from __future__ import annotations

import io
import json
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12

from certward.cli.app import main
from certward.pki.limits import Limits
from certward.pki.material import load_material
from certward.pki.pkcs12_structure import read_pkcs12_structure
from tests.material import hostile
from tests.material.factory import IssuedCert, TestCA

PASSWORD = 'a,b "c" d'
REPOSITORY = Path(__file__).resolve().parents[1]

CERTIFICATE_FIELDS = {
    "subject",
    "issuer",
    "serial",
    "not_before",
    "not_after",
    "sha256_fingerprint",
    "sha1_fingerprint",
    "key_type",
    "key_size",
    "signature_algorithm",
    "is_ca",
    "san",
    "eku",
}


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps at the terminal width; tests read whole lines."""
    monkeypatch.setenv("COLUMNS", "300")


@pytest.fixture(scope="module")
def client() -> IssuedCert:
    """A client certificate valid for years: the CLI judges at the real current time."""
    now = datetime.now(UTC)
    root = TestCA.root(
        name="cli root", not_before=now - timedelta(days=1), not_after=now + timedelta(days=3650)
    )
    intermediate = root.intermediate(
        name="cli intermediate",
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=3650),
    )
    return intermediate.issue_leaf(
        "cli-client",
        eku=["clientAuth"],
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=3000),
    )


@pytest.fixture
def files(tmp_path: Path, client: IssuedCert) -> dict[str, Path]:
    paths = {
        "p12": tmp_path / "client.p12",
        "legacy": tmp_path / "legacy.pfx",
        "password": tmp_path / "password.txt",
        "wrong": tmp_path / "wrong.txt",
        "cert": tmp_path / "cert.pem",
        "key": tmp_path / "key.pem",
        "chain": tmp_path / "chain.pem",
        "pem_as_p12": tmp_path / "actually-pem.p12",
    }
    paths["p12"].write_bytes(client.pkcs12(PASSWORD))
    paths["legacy"].write_bytes(client.pkcs12(PASSWORD, legacy=True))
    paths["password"].write_text(PASSWORD + "\n")
    paths["wrong"].write_text("not it\n")
    paths["cert"].write_bytes(client.cert_pem())
    paths["key"].write_bytes(client.key_pem())
    paths["chain"].write_bytes(client.chain_pem())
    paths["pem_as_p12"].write_bytes(client.cert_pem() + client.key_pem())
    return paths


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main(["inspect", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_inspect_json_describes_a_pkcs12_file_completely(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], client: IssuedCert
) -> None:
    """One object with kind, certificates leaf to root, the key flag, PKCS12 facts and problems."""
    code, report = run_json(
        capsys,
        str(files["p12"]),
        "--password-file",
        str(files["password"]),
        "--as",
        "client-certificate",
    )
    assert code == 0
    assert report["kind"] == "pkcs12"
    assert report["has_private_key"] is True
    # A root in a client certificate upload is checked but never sent.
    assert [(p["code"], p["certificate"]) for p in report["problems"]] == [
        ("root-not-served", "CN=cli root")
    ]
    certificates = report["certificates"]
    assert isinstance(certificates, list)
    assert [c["subject"] for c in certificates] == [
        "CN=cli-client",
        "CN=cli intermediate",
        "CN=cli root",
    ]
    assert set(certificates[0]) >= CERTIFICATE_FIELDS
    assert certificates[0]["eku"] == ["clientAuth"]
    assert certificates[0]["sha256_fingerprint"] == (
        client.certificate.fingerprint(hashes.SHA256()).hex()
    )
    assert report["pkcs12"] == {
        "mac_algorithm": "sha256",
        "mac_iterations": hostile.mac_iterations(files["p12"].read_bytes()),
        "encryption": "modern",
        "algorithms": ["PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC"],
        "friendly_names": ["certward-test"],
    }


def test_inspect_reports_a_wrong_password_as_json_with_exit_1(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """An unreadable file still prints the JSON object, with the reason and the PKCS12 facts."""
    code, report = run_json(capsys, str(files["legacy"]), "--password-file", str(files["wrong"]))
    assert code == 1
    assert report["kind"] == "pkcs12"
    assert report["certificates"] == []
    assert [p["code"] for p in report["problems"]] == ["wrong-password"]  # type: ignore[union-attr,index]
    assert report["pkcs12"]["encryption"] == "legacy"  # type: ignore[index]


def test_inspect_reads_the_password_from_stdin(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--password-stdin takes the password, without its trailing line break."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(PASSWORD.encode() + b"\n")))
    code, report = run_json(capsys, str(files["legacy"]), "--password-stdin")
    assert code == 0
    assert report["has_private_key"] is True


def test_a_pem_file_named_p12_is_recognised_and_conversion_offered(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """not-pkcs12, saying what the file is and the command that converts it."""
    code, report = run_json(capsys, str(files["pem_as_p12"]))
    assert code == 1
    (problem,) = report["problems"]  # type: ignore[misc]
    assert problem["code"] == "not-pkcs12"
    assert "PEM" in problem["message"]
    assert "certward convert" in problem["message"]


def test_error_problems_give_exit_1_and_warnings_exit_0(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A TLS judgement of a client certificate fails; a plain inspection passes."""
    assert (
        main(["inspect", str(files["cert"]), "--as", "tls-certificate", "--hostname", "x.example"])
        == 1
    )
    assert main(["inspect", str(files["cert"])]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    "argv",
    [
        ["inspect"],
        ["inspect", "missing-file.p12"],
        ["inspect", "README.md", "--as", "bogus"],
        ["inspect", "README.md", "--password-file", "missing.txt"],
        ["convert", "README.md", "--to", "pkcs12", "--out", "x.p12"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad arguments, unreadable inputs and missing output passwords are usage errors."""
    assert main(argv) == 2
    capsys.readouterr()


def test_human_output_escapes_markup_from_certificate_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A subject full of Rich markup is printed literally, not interpreted."""
    hostile = TestCA.root(name="[bold red]evil[/] <script>alert(1)</script>")
    path = tmp_path / "hostile.pem"
    path.write_bytes(hostile.cert_pem())
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "[bold red]evil[/]" in out
    assert r"\<script\>alert(1)\</script\>" in out  # RFC 4514 escaping, nothing more


def test_human_output_lists_certificates_and_problems(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The readable form names the file kind, each certificate and the verdict."""
    code = main(["inspect", str(files["cert"]), "--as", "client-certificate"])
    out = capsys.readouterr().out
    assert code == 1
    assert "PEM file" in out
    assert "CN=cli-client" in out
    assert "no-private-key" in out
    assert "Refused as client-certificate" in out


@pytest.mark.parametrize(
    ("profile", "encryption", "mac"),
    [("modern", "modern", "sha256"), ("modern2026", "modern", "pbmac1-sha256"),
     ("legacy", "legacy", "sha1")],
)  # fmt: skip
def test_convert_pem_parts_to_pkcs12(
    files: dict[str, Path],
    tmp_path: Path,
    profile: str,
    encryption: str,
    mac: str,
    client: IssuedCert,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Certificate, key and chain given in any order become one PKCS12 in the profile asked."""
    out = tmp_path / f"{profile}.p12"
    code = main(
        [
            "convert",
            str(files["chain"]),
            str(files["key"]),
            str(files["cert"]),
            "--to",
            "pkcs12",
            "--profile",
            profile,
            "--out",
            str(out),
            "--out-password-file",
            str(files["password"]),
        ]
    )
    assert code == 0, capsys.readouterr()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    loaded = pkcs12.load_pkcs12(out.read_bytes(), PASSWORD.encode())
    assert loaded.cert is not None
    assert loaded.cert.certificate == client.certificate
    assert [c.certificate for c in loaded.additional_certs] == list(client.chain)
    structure = read_pkcs12_structure(out.read_bytes(), limits=Limits())
    assert structure.encryption.value == encryption
    assert structure.mac is not None
    assert structure.mac.algorithm == mac


def test_convert_pkcs12_to_pem_orders_the_chain(
    files: dict[str, Path], tmp_path: Path, client: IssuedCert, capsys: pytest.CaptureFixture[str]
) -> None:
    """PEM output: leaf, intermediate, root, then the key."""
    out = tmp_path / "out.pem"
    code = main(
        [
            "convert",
            str(files["p12"]),
            "--password-file",
            str(files["password"]),
            "--to",
            "pem",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr()
    material = load_material(out.read_bytes())
    assert material.certificates == client.full_chain
    assert material.private_key is not None


def test_convert_refuses_a_key_of_another_certificate(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No container is written when the key belongs to no certificate given."""
    other = tmp_path / "other.key"
    other.write_bytes(TestCA.root().issue_leaf("other").key_pem())
    out = tmp_path / "never.p12"
    code = main(
        [
            "convert",
            str(files["cert"]),
            str(other),
            "--to",
            "pkcs12",
            "--out",
            str(out),
            "--out-password-file",
            str(files["password"]),
        ]
    )
    assert code == 1
    assert "key-mismatch" in capsys.readouterr().err
    assert not out.exists()


def test_convert_writes_a_java_truststore(
    files: dict[str, Path], tmp_path: Path, client: IssuedCert, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every certificate given becomes a trusted-certificate entry."""
    out = tmp_path / "truststore.p12"
    code = main(
        [
            "convert",
            str(files["chain"]),
            "--to",
            "java-truststore",
            "--out",
            str(out),
            "--out-password-file",
            str(files["password"]),
        ]
    )
    assert code == 0, capsys.readouterr()
    loaded = pkcs12.load_pkcs12(out.read_bytes(), PASSWORD.encode())
    assert {c.certificate for c in loaded.additional_certs} == set(client.chain)


def test_the_readme_sample_inspects_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    """`make run` inspects the shipped sample: legacy PKCS12, comma in the password, exit 0."""
    samples = REPOSITORY / "samples"
    code, report = run_json(
        capsys,
        str(samples / "partner-client.p12"),
        "--password-file",
        str(samples / "partner-client.password"),
        "--as",
        "client-certificate",
    )
    assert code == 0, report["problems"]
    assert report["pkcs12"]["encryption"] == "legacy"  # type: ignore[index]
