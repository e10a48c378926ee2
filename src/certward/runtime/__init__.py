"""What an app imports at start: its runtime bundle and an HTTP client that uses it.

    runtime = load_bundle("/app/certificates")          # a bundle directory
    client = runtime.http_client()                      # pins decide per host
    client.get("https://partner.example.com/api")       # presents the certificate pinned to it
    runtime.http_client(call_name="billing")            # that certificate, for every host

The client trusts the public roots plus the bundle's CAs. Per request host it presents
the client certificate pinned to that host, none where nothing is pinned, and never one
to a host listed as no-client-certificate. An unknown call name is an error, never a
silent fallback. Keys reach ``ssl`` from the bundle's PEM files, whose keys are
encrypted with the bundle's per-certificate password: nothing is written unencrypted.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import certifi
import httpx

from certward.bundles.files import MANIFEST
from certward.errors import CertwardError


class RuntimeBundleError(CertwardError):
    """The bundle cannot be used: unreadable, incomplete, or asked for a name it lacks."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeClientCertificate:
    """A client certificate of the bundle; the password never appears in ``repr``."""

    id: str
    call_name: str | None
    pins: tuple[str, ...]
    subject: str
    pem: Path
    pkcs12: Path
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """A loaded bundle: its certificates, trusted CAs, and the names that get no certificate."""

    root: Path
    app: str
    environment: str
    version: int
    client_certificates: tuple[RuntimeClientCertificate, ...]
    authorities: Path | None
    no_client_certificate: frozenset[str]

    def certificate_for_call(self, call_name: str) -> RuntimeClientCertificate:
        """The certificate whose call name is ``call_name``; a clear error if none is."""
        for certificate in self.client_certificates:
            if certificate.call_name is not None and certificate.call_name == call_name:
                return certificate
        known = ", ".join(sorted(c.call_name for c in self.client_certificates if c.call_name))
        raise RuntimeBundleError(
            f"No client certificate has the call name {call_name!r} in version "
            f"{self.version} of {self.app}/{self.environment} (known: {known or 'none'}). "
            "certward never falls back to another certificate."
        )

    def certificate_for(self, name: str) -> RuntimeClientCertificate | None:
        """The certificate pinned to a host or ``Module.Service`` name, if any."""
        wanted = name.rstrip(".").lower()
        if wanted in self.no_client_certificate:
            return None
        for certificate in self.client_certificates:
            if any(pin.lower() == wanted for pin in certificate.pins):
                return certificate
        return None

    def ssl_context(self, certificate: RuntimeClientCertificate | None = None) -> ssl.SSLContext:
        """Public roots plus the bundle's CAs; presenting ``certificate`` when given."""
        context = ssl.create_default_context(cafile=certifi.where())
        if self.authorities is not None:
            context.load_verify_locations(cafile=str(self.authorities))
        if certificate is not None:
            context.load_cert_chain(str(certificate.pem), password=certificate.password)
        return context

    def http_client(
        self, *, call_name: str | None = None, service: str | None = None, **httpx_kwargs: Any
    ) -> httpx.Client:
        """An ``httpx.Client`` that presents the right certificate to each host.

        ``call_name`` presents that certificate to every host; ``service`` presents the
        certificate pinned to that ``Module.Service`` name. Either way, hosts listed as
        no-client-certificate get none.
        """
        chosen: RuntimeClientCertificate | None = None
        if call_name is not None:
            chosen = self.certificate_for_call(call_name)
        elif service is not None:
            chosen = self.certificate_for(service)
        plain = self.ssl_context()
        mounts: dict[str, httpx.BaseTransport] = {}
        if chosen is None and call_name is None:
            for certificate in self.client_certificates:
                transport = httpx.HTTPTransport(verify=self.ssl_context(certificate))
                for pin in certificate.pins:
                    if _looks_like_host(pin) and pin.lower() not in self.no_client_certificate:
                        mounts[f"all://{pin.lower()}"] = transport
        if self.no_client_certificate:
            bare = httpx.HTTPTransport(verify=plain)
            for host in self.no_client_certificate:
                if _looks_like_host(host):
                    mounts[f"all://{host}"] = bare
        default = self.ssl_context(chosen) if chosen is not None else plain
        extra_mounts: Mapping[str, httpx.BaseTransport] = httpx_kwargs.pop("mounts", {}) or {}
        return httpx.Client(verify=default, mounts={**mounts, **extra_mounts}, **httpx_kwargs)


def load_bundle(path: str | Path) -> Runtime:
    """Read the bundle at ``path`` (a version directory, or an environment's ``current``)."""
    root = Path(path).resolve()
    try:
        manifest: dict[str, Any] = json.loads((root / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise RuntimeBundleError(
            f"{root} holds no {MANIFEST}: it is not a certward bundle."
        ) from None
    except (OSError, ValueError) as exc:
        raise RuntimeBundleError(f"The bundle manifest in {root} cannot be read: {exc}") from exc
    try:
        certificates = tuple(
            RuntimeClientCertificate(
                id=str(entry["id"]),
                call_name=entry.get("call_name"),
                pins=tuple(str(p) for p in entry.get("pins", [])),
                subject=str(entry.get("subject", "")),
                pem=root / str(entry["pem"]),
                pkcs12=root / str(entry["pkcs12"]),
                password=str(entry["password"]),
            )
            for entry in manifest.get("client_certificates", [])
        )
        authorities = manifest.get("authorities")
        return Runtime(
            root=root,
            app=str(manifest["app"]),
            environment=str(manifest["environment"]),
            version=int(manifest["version"]),
            client_certificates=certificates,
            authorities=root / str(authorities) if authorities else None,
            no_client_certificate=frozenset(
                str(n).rstrip(".").lower() for n in manifest.get("no_client_certificate", [])
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RuntimeBundleError(f"The bundle manifest in {root} is incomplete: {exc}") from exc


def _looks_like_host(name: str) -> bool:
    """Host names and IP addresses (mounted per host); ``Module.Service`` names are not."""
    return name == name.lower() or ":" in name


__all__ = ["Runtime", "RuntimeBundleError", "RuntimeClientCertificate", "load_bundle"]
