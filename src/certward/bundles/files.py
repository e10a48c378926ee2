"""The runtime bundle of an applied version, as files (pure: values in, bytes out).

A bundle holds what an app's runtime reads at start, in every format runtimes expect:

    manifest.json                  certward's own index (read by certward.runtime);
                                   lists every file with its SHA-256, so a bundle
                                   directory can be verified
    ca-certificates.pem            the environment's custom CAs
    truststore.p12                 the same CAs as a Java truststore
    client-certificates/<id>.p12   each client certificate in the environment's profile
    client-certificates/<id>.pem   chain + key (the key encrypted with the same password)
    runtime-settings.json          the reference runtime's custom settings
    buildpack.json                 the reference buildpack's environment variables

Every PKCS12 file is re-encoded with a fresh random alphanumeric password, so the
comma-separated settings can carry it safely; the password the user uploaded never
appears in a bundle.
"""

from __future__ import annotations

import base64
import hashlib
import json
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from certward.errors import SecretError
from certward.pki.convert import Pkcs12Profile, to_java_truststore, to_pem, to_pkcs12

if TYPE_CHECKING:
    from certward.randomness import Randomness

MANIFEST = "manifest.json"
CA_FILE = "ca-certificates.pem"
TRUSTSTORE_FILE = "truststore.p12"
SETTINGS_FILE = "runtime-settings.json"
BUILDPACK_FILE = "buildpack.json"
CLIENT_DIRECTORY = "client-certificates"
PASSWORD_LENGTH = 32
_ALPHABET = string.ascii_letters + string.digits


def new_password(randomness: Randomness) -> str:
    """A random alphanumeric password: safe in comma-separated and quoted settings."""
    return "".join(randomness.choice(_ALPHABET) for _ in range(PASSWORD_LENGTH))


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleClientCertificate:
    """One client certificate going into a bundle; the key never appears in ``repr``."""

    id: str
    call_name: str | None
    pins: tuple[str, ...]
    subject: str
    not_after: datetime
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    private_key: PrivateKeyTypes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleSpec:
    """Everything an applied version's bundle is made from."""

    app: str
    environment: str
    version: int
    digest: str
    created_at: datetime
    pkcs12_profile: Pkcs12Profile
    client_certificates: tuple[BundleClientCertificate, ...]
    authorities: tuple[x509.Certificate, ...]
    no_client_certificate: tuple[str, ...] = ()


def build_bundle(spec: BundleSpec, *, randomness: Randomness) -> dict[str, bytes]:
    """The bundle's files: relative path → content. ``manifest.json`` lists the others.

    Every PKCS12 file and the truststore get a fresh password drawn from ``randomness``.
    """
    files: dict[str, bytes] = {}
    entries: list[dict[str, Any]] = []
    for item in sorted(spec.client_certificates, key=lambda c: c.id):
        secret = new_password(randomness)
        p12_path = f"{CLIENT_DIRECTORY}/{item.id}.p12"
        pem_path = f"{CLIENT_DIRECTORY}/{item.id}.pem"
        files[p12_path] = to_pkcs12(
            private_key=item.private_key,
            certificate=item.certificate,
            chain=item.chain,
            password=secret.encode(),
            profile=spec.pkcs12_profile,
            friendly_name=item.call_name or item.subject,
        )
        files[pem_path] = to_pem(
            [item.certificate, *item.chain],
            private_key=item.private_key,
            key_password=secret.encode(),
        )
        entries.append(
            {
                "id": item.id,
                "call_name": item.call_name,
                "pins": list(item.pins),
                "pkcs12": p12_path,
                "pem": pem_path,
                "password": secret,
                "subject": item.subject,
                "not_after": item.not_after.isoformat(),
            }
        )
    truststore: dict[str, str] | None = None
    if spec.authorities:
        files[CA_FILE] = b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in spec.authorities
        )
        truststore_password = new_password(randomness)
        files[TRUSTSTORE_FILE] = to_java_truststore(
            spec.authorities,
            password=truststore_password.encode(),
            profile=spec.pkcs12_profile,
        )
        truststore = {"file": TRUSTSTORE_FILE, "password": truststore_password}
    files[SETTINGS_FILE] = _json(
        runtime_settings(
            entries,
            has_authorities=bool(spec.authorities),
            no_client_certificate=spec.no_client_certificate,
        )
    )
    files[BUILDPACK_FILE] = _json(buildpack_variables(entries, files, spec))
    manifest = {
        "app": spec.app,
        "environment": spec.environment,
        "version": spec.version,
        "digest": spec.digest,
        "created_at": spec.created_at.isoformat(),
        "pkcs12_profile": spec.pkcs12_profile.value,
        "client_certificates": entries,
        "authorities": CA_FILE if spec.authorities else None,
        "truststore": truststore,
        "no_client_certificate": list(spec.no_client_certificate),
        "files": {path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())},
    }
    files[MANIFEST] = _json(manifest)
    return files


def runtime_settings(
    entries: Sequence[dict[str, Any]],
    *,
    has_authorities: bool,
    no_client_certificate: Sequence[str],
    root: str = "",
) -> dict[str, Any]:
    """The reference runtime's custom settings; paths relative, or under ``root``."""

    def path(relative: str) -> str:
        return f"{root.rstrip('/')}/{relative}" if root else relative

    usages: dict[str, str] = {}
    for entry in entries:
        for name in [*entry["pins"], *([entry["call_name"]] if entry["call_name"] else [])]:
            usages[name] = path(entry["pkcs12"])
    return {
        "CACertificates": path(CA_FILE) if has_authorities else "",
        "ClientCertificates": ",".join(path(e["pkcs12"]) for e in entries),
        "ClientCertificatePasswords": ",".join(e["password"] for e in entries),
        "ClientCertificateUsages": usages,
        "NoClientCertificateUsages": list(no_client_certificate),
    }


def buildpack_variables(
    entries: Sequence[dict[str, Any]], files: dict[str, bytes], spec: BundleSpec
) -> dict[str, str]:
    """``CERTIFICATE_AUTHORITIES`` and ``CLIENT_CERTIFICATES`` as the buildpack reads them."""
    client_certificates = [
        {
            "pfx": base64.b64encode(files[e["pkcs12"]]).decode("ascii"),
            "password": e["password"],
            "pin_to": [*e["pins"], *([e["call_name"]] if e["call_name"] else [])],
        }
        for e in entries
    ]
    return {
        "CERTIFICATE_AUTHORITIES": files.get(CA_FILE, b"").decode("ascii"),
        "CLIENT_CERTIFICATES": json.dumps(client_certificates),
    }


def installed_settings(manifest: dict[str, Any], root: str) -> bytes:
    """``runtime-settings.json`` with absolute paths under ``root`` (bundle install)."""
    return _json(
        runtime_settings(
            manifest.get("client_certificates", []),
            has_authorities=bool(manifest.get("authorities")),
            no_client_certificate=manifest.get("no_client_certificate", []),
            root=root,
        )
    )


def manifest_with(manifest: dict[str, Any], path: str, data: bytes) -> bytes:
    """The manifest again, recording ``path``'s new digest (after an install rewrote it)."""
    files = dict(manifest.get("files", {}))
    files[path] = hashlib.sha256(data).hexdigest()
    return _json({**manifest, "files": files})


def verify_files(manifest: dict[str, Any], read: Callable[[str], bytes]) -> list[str]:
    """Paths whose content does not match the manifest (empty when the bundle is whole)."""
    bad: list[str] = []
    for path, expected in manifest.get("files", {}).items():
        try:
            actual = hashlib.sha256(read(path)).hexdigest()
        except (OSError, SecretError):  # absent, or sealed for another place or key
            bad.append(path)
            continue
        if actual != expected:
            bad.append(path)
    return bad


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8")
