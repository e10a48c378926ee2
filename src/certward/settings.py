"""Typed settings, read once at start from ``CERTWARD_*`` environment variables.

=================================  ==========================================
``CERTWARD_DATA_DIR``              data directory (``./certward-data``)
``CERTWARD_DATABASE_URL``          SQLAlchemy URL (SQLite file in the data dir)
``CERTWARD_LISTEN``                ``host:port`` of the API (``127.0.0.1:8700``)
``CERTWARD_PLATFORM_DOMAIN``       parent of default hostnames (``apps.localhost``)
``CERTWARD_ADMIN_TOKEN``           bootstrap admin token (optional)
``CERTWARD_MASTER_KEY_FILE``       keyring file (``<data dir>/master.key``)
``CERTWARD_MASTER_KEY``            base64 master key(s), instead of the file:
                                   ``new,old`` -- the first encrypts, all decrypt
``CERTWARD_MAX_UPLOAD_BYTES``      cap on one upload (262144)
``CERTWARD_MAX_PKCS12_ITERATIONS`` cap on each PBE/PBKDF2 iteration count of a
                                   PKCS12 file or encrypted key (100000; all
                                   of a file's together: 4 times that)
``CERTWARD_MAX_PKCS12_MAC_ITERATIONS``
                                   cap on a PKCS12 file's MAC iteration count
                                   (20000; checking it explains a wrong
                                   password, so it stays cheap)
``CERTWARD_MATERIAL_WORKERS``      processes that parse uploaded material (2)
``CERTWARD_MATERIAL_CPU_SECONDS``  CPU seconds one upload may cost in its
                                   worker before it is killed (2)
``CERTWARD_MATERIAL_WALL_SECONDS`` seconds one upload may take in its worker
                                   (3); waiting for a free worker longer than
                                   half of it answers 503 ``busy``
``CERTWARD_MANAGED_CERT_LIFETIME`` lifetime of managed default-domain
                                   certificates: ``7d``, ``12h``, ``30m`` or
                                   seconds (``7d``; 5 minutes to 47 days)
``CERTWARD_EXPIRES_SOON_DAYS_CLIENT_CERTIFICATE``
                                   days before expiry an uploaded client
                                   certificate is ``expires-soon`` (30)
``CERTWARD_EXPIRES_SOON_DAYS_TLS_CERTIFICATE``
                                   the same for uploaded (and CSR-born)
                                   custom-domain certificates (30)
``CERTWARD_EXPIRES_SOON_DAYS_AUTHORITY``
                                   the same for uploaded CA certificates (30);
                                   each window is capped at a third of the
                                   certificate's lifetime, and certificates
                                   certward renews follow their renewal
``CERTWARD_RENEWAL_INTERVAL``      pause of the renewal worker between passes
                                   (``60``; same units)
``CERTWARD_CA_URL``                base URL where the platform CA's certificates
                                   and CRLs are published, written into issued
                                   certificates (``http://<platform domain>``
                                   ``/api/v1/platform/ca``); never fetched
``CERTWARD_ACME_DIRECTORY``        ``https://`` directory URL of an ACME CA;
                                   when set, managed certificates come from
                                   it instead of the built-in CA (optional)
``CERTWARD_ACME_PROFILE``          the ACME profile (draft-ietf-acme-profiles)
                                   to order certificates with, one the CA's
                                   directory lists in ``meta.profiles``
                                   (optional: the CA's default)
``CERTWARD_ACME_HTTP_LISTEN``      ``host:port`` of the in-process HTTP-01
                                   challenge responder (``127.0.0.1:8080``)
``CERTWARD_GATEWAY_LISTEN``        ``host:port`` of the embedded gateway's
                                   HTTPS listener (``127.0.0.1:8443``)
``CERTWARD_GATEWAY_HTTP_LISTEN``   ``host:port`` of its plain-HTTP listener:
                                   ACME challenges and redirects
                                   (``127.0.0.1:8080``)
``CERTWARD_GATEWAY_WORKERS``       gateway worker processes (one per core)
``CERTWARD_GATEWAY_REFRESH``       how often the data plane looks for new
                                   certificates, domains and rules (``2s``)
``CERTWARD_GATEWAY_HEADER_TIMEOUT`` time a gateway client has to send a
                                   request's head, from the TLS handshake or
                                   the first byte of the next request (``10s``)
``CERTWARD_GATEWAY_IDLE_TIMEOUT``  time a gateway connection may stay idle
                                   between requests (``75s``)
``CERTWARD_TLS_POLICY``            TLS policy of both data planes:
                                   ``intermediate`` (TLS 1.2 with ECDHE AEAD
                                   suites, and TLS 1.3) or ``modern`` (TLS
                                   1.3 only); ``intermediate``
``CERTWARD_EXPIRED_CRL``           what a client CA's CRL past its nextUpdate
                                   means: ``refuse`` (its client certificates
                                   are refused until a newer CRL comes) or
                                   ``warn`` (the stale CRL is set aside at the
                                   renewal worker's next pass, logged and shown:
                                   the CA's certificates are then accepted
                                   unchecked); ``refuse``
``CERTWARD_ACME_CA_BUNDLE``        PEM file of CA certificates that verify
                                   the ACME server's TLS certificate (a test
                                   CA such as pebble's; default: system roots)
``CERTWARD_EGRESS_ALLOW``          networks (CIDRs) and host-name suffixes that
                                   upstreams and webhooks may lead to, comma
                                   separated (``10.0.0.0/8,.svc.internal``);
                                   unset: every address but loopback,
                                   link-local, metadata and the like
                                   (`certward.egress`)
``CERTWARD_EGRESS_PLAIN_HTTP``     whether ``http://`` upstreams and webhooks
                                   are allowed (``true``)
``CERTWARD_UPSTREAM_CA_BUNDLE``    PEM file of extra CA certificates that
                                   verify ``https://`` upstreams (besides the
                                   public roots and the platform CA)
``CERTWARD_HEADER_TIMEOUT``        time a client has to send a request's
                                   headers to the API, from connecting or
                                   from the first byte of the next request
                                   (``10s``)
``CERTWARD_IDLE_TIMEOUT``          time an API connection may stay idle
                                   between requests (``60s``)
``CERTWARD_UPLOAD_RATE``           uploads per token and, separately, per app
                                   (``30/minute``; also ``100/hour``, ``5/s``)
``CERTWARD_FAILED_UPLOAD_RATE``    refused uploads per token and per app
                                   (``10/minute``)
=================================  ==========================================

An empty variable counts as unset. A wrong value raises `ConfigurationError`
with one sentence naming the variable.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from certward.dataplane.tls_policy import TlsProfile
from certward.egress import EgressPolicy, IPNetwork, Listener, parse_allow_list
from certward.errors import ConfigurationError
from certward.pki.limits import DEFAULT_MAX_ITERATIONS, DEFAULT_MAX_MAC_ITERATIONS
from certward.pki.names import is_dns_name
from certward.rate_limits import Rate

MASTER_KEY_BYTES = 32
MIN_ADMIN_TOKEN_LENGTH = 16

DEFAULT_DATA_DIR = "./certward-data"
DEFAULT_LISTEN = "127.0.0.1:8700"
DEFAULT_PLATFORM_DOMAIN = "apps.localhost"
DEFAULT_MAX_UPLOAD_BYTES = 256 * 1024
DEFAULT_MAX_PKCS12_ITERATIONS = DEFAULT_MAX_ITERATIONS
DEFAULT_MAX_PKCS12_MAC_ITERATIONS = DEFAULT_MAX_MAC_ITERATIONS
DEFAULT_MATERIAL_WORKERS = 2
DEFAULT_MATERIAL_CPU_SECONDS = 2
DEFAULT_MATERIAL_WALL_SECONDS = 3
DEFAULT_MANAGED_CERT_LIFETIME = timedelta(days=7)
MIN_MANAGED_CERT_LIFETIME = timedelta(minutes=5)
# The CA/Browser Forum's ceiling from 2029 on: every certificate passes the linters.
MAX_MANAGED_CERT_LIFETIME = timedelta(days=47)
DEFAULT_RENEWAL_INTERVAL = timedelta(seconds=60)
DEFAULT_EXPIRES_SOON_DAYS = 30
MAX_EXPIRES_SOON_DAYS = 3650
DEFAULT_ACME_HTTP_LISTEN = "127.0.0.1:8080"
DEFAULT_GATEWAY_LISTEN = "127.0.0.1:8443"
DEFAULT_GATEWAY_HTTP_LISTEN = "127.0.0.1:8080"
DEFAULT_GATEWAY_REFRESH = timedelta(seconds=2)
DEFAULT_DATA_PLANE_CHANGES_KEPT = 100_000  # change sequences a lagging node can catch up on
DEFAULT_GATEWAY_HEADER_TIMEOUT = timedelta(seconds=10)
DEFAULT_GATEWAY_IDLE_TIMEOUT = timedelta(seconds=75)
DEFAULT_HEADER_TIMEOUT = timedelta(seconds=10)
DEFAULT_IDLE_TIMEOUT = timedelta(seconds=60)
DEFAULT_UPLOAD_RATE = Rate(count=30, period=timedelta(minutes=1))
DEFAULT_FAILED_UPLOAD_RATE = Rate(count=10, period=timedelta(minutes=1))


class ExpiredCrl(StrEnum):
    """What a client CA's CRL past its nextUpdate means (``CERTWARD_EXPIRED_CRL``)."""

    REFUSE = "refuse"  # the CA's client certificates are refused until a newer CRL
    WARN = "warn"  # the stale CRL is set aside (logged, shown); its CA is not checked


_DURATION = re.compile(r"^([0-9]{1,9})([smhd]?)$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything certward reads from its environment; secrets never shown in ``repr``."""

    data_dir: Path
    database_url: str
    listen_host: str
    listen_port: int
    platform_domain: str
    admin_token: str | None = field(default=None, repr=False)
    master_key_file: Path
    master_keys: tuple[bytes, ...] = field(default=(), repr=False)
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pkcs12_iterations: int = DEFAULT_MAX_PKCS12_ITERATIONS
    max_pkcs12_mac_iterations: int = DEFAULT_MAX_PKCS12_MAC_ITERATIONS
    material_workers: int = DEFAULT_MATERIAL_WORKERS
    material_cpu_seconds: int = DEFAULT_MATERIAL_CPU_SECONDS
    material_wall_seconds: int = DEFAULT_MATERIAL_WALL_SECONDS
    managed_cert_lifetime: timedelta = DEFAULT_MANAGED_CERT_LIFETIME
    renewal_interval: timedelta = DEFAULT_RENEWAL_INTERVAL
    expires_soon_client_certificate: timedelta = timedelta(days=DEFAULT_EXPIRES_SOON_DAYS)
    expires_soon_tls_certificate: timedelta = timedelta(days=DEFAULT_EXPIRES_SOON_DAYS)
    expires_soon_authority: timedelta = timedelta(days=DEFAULT_EXPIRES_SOON_DAYS)
    ca_url: str | None = None
    acme_directory: str | None = None
    acme_profile: str | None = None
    acme_http_host: str = "127.0.0.1"
    acme_http_port: int = 8080
    acme_ca_bundle: Path | None = None
    gateway_listen: tuple[str, int] = ("127.0.0.1", 8443)
    gateway_http_listen: tuple[str, int] = ("127.0.0.1", 8080)
    gateway_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    gateway_refresh: timedelta = DEFAULT_GATEWAY_REFRESH
    data_plane_changes_kept: int = DEFAULT_DATA_PLANE_CHANGES_KEPT
    gateway_header_timeout: timedelta = DEFAULT_GATEWAY_HEADER_TIMEOUT
    gateway_idle_timeout: timedelta = DEFAULT_GATEWAY_IDLE_TIMEOUT
    tls_policy: TlsProfile = TlsProfile.INTERMEDIATE
    expired_crl: ExpiredCrl = ExpiredCrl.REFUSE
    egress_networks: tuple[IPNetwork, ...] = ()
    egress_suffixes: tuple[str, ...] = ()
    egress_plain_http: bool = True
    upstream_ca_bundle: Path | None = None
    header_timeout: timedelta = DEFAULT_HEADER_TIMEOUT
    idle_timeout: timedelta = DEFAULT_IDLE_TIMEOUT
    upload_rate: Rate = DEFAULT_UPLOAD_RATE
    failed_upload_rate: Rate = DEFAULT_FAILED_UPLOAD_RATE

    def __repr__(self) -> str:
        shown = {
            "data_dir": str(self.data_dir),
            "database_url": _hide_password(self.database_url),
            "listen": self.listen,
            "platform_domain": self.platform_domain,
            "admin_token": "<set>" if self.admin_token else None,
            "master_key": "<from environment>" if self.master_keys else str(self.master_key_file),
            "max_upload_bytes": self.max_upload_bytes,
            "max_pkcs12_iterations": self.max_pkcs12_iterations,
            "max_pkcs12_mac_iterations": self.max_pkcs12_mac_iterations,
            "material_workers": self.material_workers,
            "material_cpu_seconds": self.material_cpu_seconds,
            "material_wall_seconds": self.material_wall_seconds,
            "managed_cert_lifetime": str(self.managed_cert_lifetime),
            "renewal_interval": str(self.renewal_interval),
            "expires_soon_client_certificate": str(self.expires_soon_client_certificate),
            "expires_soon_tls_certificate": str(self.expires_soon_tls_certificate),
            "expires_soon_authority": str(self.expires_soon_authority),
            "ca_url": self.ca_publication_url,
            "acme_directory": self.acme_directory,
            "acme_profile": self.acme_profile,
            "acme_http_listen": f"{self.acme_http_host}:{self.acme_http_port}",
            "acme_ca_bundle": None if self.acme_ca_bundle is None else str(self.acme_ca_bundle),
            "gateway_listen": format_listen(self.gateway_listen),
            "gateway_http_listen": format_listen(self.gateway_http_listen),
            "gateway_workers": self.gateway_workers,
            "gateway_refresh": str(self.gateway_refresh),
            "data_plane_changes_kept": self.data_plane_changes_kept,
            "gateway_header_timeout": str(self.gateway_header_timeout),
            "gateway_idle_timeout": str(self.gateway_idle_timeout),
            "tls_policy": self.tls_policy.value,
            "expired_crl": self.expired_crl.value,
            "egress_allow": ",".join([*map(str, self.egress_networks), *self.egress_suffixes]),
            "egress_plain_http": self.egress_plain_http,
            "upstream_ca_bundle": None
            if self.upstream_ca_bundle is None
            else str(self.upstream_ca_bundle),
            "header_timeout": str(self.header_timeout),
            "idle_timeout": str(self.idle_timeout),
            "upload_rate": str(self.upload_rate),
            "failed_upload_rate": str(self.failed_upload_rate),
        }
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @property
    def listen(self) -> str:
        """``host:port`` as given (IPv6 hosts in brackets)."""
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"{host}:{self.listen_port}"

    @property
    def ca_publication_url(self) -> str:
        """Base URL of the platform CA's published certificates and CRLs (no trailing slash)."""
        return self.ca_url or f"http://{self.platform_domain}/api/v1/platform/ca"

    @property
    def admin_token_file(self) -> Path:
        """Where a generated bootstrap admin token is written."""
        return self.data_dir / "admin-token"

    def egress_policy(self) -> EgressPolicy:
        """The operator's egress policy, with every listener of this installation refused."""
        listeners = {
            (self.listen_host, self.listen_port),
            self.gateway_listen,
            self.gateway_http_listen,
            (self.acme_http_host, self.acme_http_port),
        }
        return EgressPolicy(
            allowed_networks=self.egress_networks,
            allowed_suffixes=self.egress_suffixes,
            allow_plain_http=self.egress_plain_http,
            platform_listeners=tuple(
                Listener(host=host, port=port) for host, port in sorted(listeners)
            ),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read and check every ``CERTWARD_*`` variable of ``environ``."""
        env = {k: v for k, v in environ.items() if k.startswith("CERTWARD_") and v != ""}
        data_dir = Path(env.get("CERTWARD_DATA_DIR", DEFAULT_DATA_DIR))
        host, port = parse_listen(env.get("CERTWARD_LISTEN", DEFAULT_LISTEN))
        key_file = env.get("CERTWARD_MASTER_KEY_FILE")
        key_b64 = env.get("CERTWARD_MASTER_KEY")
        if key_file is not None and key_b64 is not None:
            raise ConfigurationError(
                "Set either CERTWARD_MASTER_KEY or CERTWARD_MASTER_KEY_FILE, not both."
            )
        try:
            egress_networks, egress_suffixes = parse_allow_list(
                env.get("CERTWARD_EGRESS_ALLOW", "")
            )
        except ValueError as exc:
            raise ConfigurationError(f"CERTWARD_EGRESS_ALLOW: {exc}.") from exc
        acme_host, acme_port = parse_listen(
            env.get("CERTWARD_ACME_HTTP_LISTEN", DEFAULT_ACME_HTTP_LISTEN),
            name="CERTWARD_ACME_HTTP_LISTEN",
        )
        return cls(
            data_dir=data_dir,
            database_url=_database_url(env.get("CERTWARD_DATABASE_URL"), data_dir),
            listen_host=host,
            listen_port=port,
            platform_domain=_platform_domain(
                env.get("CERTWARD_PLATFORM_DOMAIN", DEFAULT_PLATFORM_DOMAIN)
            ),
            admin_token=_admin_token(env.get("CERTWARD_ADMIN_TOKEN")),
            master_key_file=Path(key_file) if key_file else data_dir / "master.key",
            master_keys=() if key_b64 is None else decode_master_keys(key_b64),
            max_upload_bytes=_positive_int(
                env, "CERTWARD_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES
            ),
            max_pkcs12_iterations=_positive_int(
                env, "CERTWARD_MAX_PKCS12_ITERATIONS", DEFAULT_MAX_PKCS12_ITERATIONS
            ),
            max_pkcs12_mac_iterations=_positive_int(
                env, "CERTWARD_MAX_PKCS12_MAC_ITERATIONS", DEFAULT_MAX_PKCS12_MAC_ITERATIONS
            ),
            material_workers=_positive_int(
                env, "CERTWARD_MATERIAL_WORKERS", DEFAULT_MATERIAL_WORKERS
            ),
            material_cpu_seconds=_positive_int(
                env, "CERTWARD_MATERIAL_CPU_SECONDS", DEFAULT_MATERIAL_CPU_SECONDS
            ),
            material_wall_seconds=_positive_int(
                env, "CERTWARD_MATERIAL_WALL_SECONDS", DEFAULT_MATERIAL_WALL_SECONDS
            ),
            managed_cert_lifetime=_duration(
                env,
                "CERTWARD_MANAGED_CERT_LIFETIME",
                DEFAULT_MANAGED_CERT_LIFETIME,
                minimum=MIN_MANAGED_CERT_LIFETIME,
                maximum=MAX_MANAGED_CERT_LIFETIME,
            ),
            renewal_interval=_duration(
                env,
                "CERTWARD_RENEWAL_INTERVAL",
                DEFAULT_RENEWAL_INTERVAL,
                minimum=timedelta(seconds=1),
            ),
            expires_soon_client_certificate=_days(
                env, "CERTWARD_EXPIRES_SOON_DAYS_CLIENT_CERTIFICATE"
            ),
            expires_soon_tls_certificate=_days(env, "CERTWARD_EXPIRES_SOON_DAYS_TLS_CERTIFICATE"),
            expires_soon_authority=_days(env, "CERTWARD_EXPIRES_SOON_DAYS_AUTHORITY"),
            ca_url=_ca_url(env.get("CERTWARD_CA_URL")),
            acme_directory=_acme_directory(env.get("CERTWARD_ACME_DIRECTORY")),
            acme_profile=_acme_profile(env),
            acme_http_host=acme_host,
            acme_http_port=acme_port,
            acme_ca_bundle=_acme_ca_bundle(env.get("CERTWARD_ACME_CA_BUNDLE")),
            gateway_listen=parse_listen(
                env.get("CERTWARD_GATEWAY_LISTEN", DEFAULT_GATEWAY_LISTEN),
                name="CERTWARD_GATEWAY_LISTEN",
            ),
            gateway_http_listen=parse_listen(
                env.get("CERTWARD_GATEWAY_HTTP_LISTEN", DEFAULT_GATEWAY_HTTP_LISTEN),
                name="CERTWARD_GATEWAY_HTTP_LISTEN",
            ),
            gateway_workers=_positive_int(
                env, "CERTWARD_GATEWAY_WORKERS", max(1, os.cpu_count() or 1)
            ),
            gateway_refresh=_duration(
                env,
                "CERTWARD_GATEWAY_REFRESH",
                DEFAULT_GATEWAY_REFRESH,
                minimum=timedelta(seconds=1),
            ),
            data_plane_changes_kept=_positive_int(
                env, "CERTWARD_DATA_PLANE_CHANGES_KEPT", DEFAULT_DATA_PLANE_CHANGES_KEPT
            ),
            gateway_header_timeout=_header_timeout(
                env, "CERTWARD_GATEWAY_HEADER_TIMEOUT", DEFAULT_GATEWAY_HEADER_TIMEOUT
            ),
            gateway_idle_timeout=_idle_timeout(
                env, "CERTWARD_GATEWAY_IDLE_TIMEOUT", DEFAULT_GATEWAY_IDLE_TIMEOUT
            ),
            tls_policy=_tls_profile(env),
            expired_crl=_expired_crl(env),
            egress_networks=egress_networks,
            egress_suffixes=egress_suffixes,
            egress_plain_http=_boolean(env, "CERTWARD_EGRESS_PLAIN_HTTP", default=True),
            upstream_ca_bundle=_pem_file(
                env.get("CERTWARD_UPSTREAM_CA_BUNDLE"), "CERTWARD_UPSTREAM_CA_BUNDLE"
            ),
            header_timeout=_header_timeout(env, "CERTWARD_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT),
            idle_timeout=_idle_timeout(env, "CERTWARD_IDLE_TIMEOUT", DEFAULT_IDLE_TIMEOUT),
            upload_rate=_rate(env, "CERTWARD_UPLOAD_RATE", DEFAULT_UPLOAD_RATE),
            failed_upload_rate=_rate(
                env, "CERTWARD_FAILED_UPLOAD_RATE", DEFAULT_FAILED_UPLOAD_RATE
            ),
        )


def format_listen(address: tuple[str, int]) -> str:
    """``(host, port)`` as ``host:port`` (IPv6 hosts in brackets)."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_listen(value: str, *, name: str = "CERTWARD_LISTEN") -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) into its parts."""
    host, sep, port_text = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an unbracketed IPv6 address is ambiguous
    if (
        not sep
        or not host
        or not (port_text.isascii() and port_text.isdigit())
        or not 0 <= int(port_text) <= 65535
    ):
        raise ConfigurationError(
            f"{name} must be host:port (e.g. 127.0.0.1:8700 or [::1]:8700), not {value!r}."
        )
    return host, int(port_text)


def decode_master_keys(value: str) -> tuple[bytes, ...]:
    """Decode comma-separated base64 master keys (active first) and check their length."""
    keys = []
    for part in value.split(","):
        try:
            key = base64.b64decode(part.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError("CERTWARD_MASTER_KEY is not valid base64.") from None
        if len(key) != MASTER_KEY_BYTES:
            raise ConfigurationError(
                f"CERTWARD_MASTER_KEY must hold base64 keys of {MASTER_KEY_BYTES} bytes each, "
                f"not {len(key)}."
            )
        keys.append(key)
    return tuple(keys)


def _database_url(value: str | None, data_dir: Path) -> str:
    if value is None:
        return f"sqlite:///{(data_dir / 'certward.db').absolute()}"
    try:
        url = make_url(value)
    except ArgumentError:
        raise ConfigurationError(
            "CERTWARD_DATABASE_URL is not a database URL (e.g. postgresql+psycopg://user@host/db)."
        ) from None
    if url.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ConfigurationError(
            f"CERTWARD_DATABASE_URL must point to SQLite or PostgreSQL, "
            f"not {url.get_backend_name()!r}."
        )
    return value


def _platform_domain(value: str) -> str:
    domain = value.strip().rstrip(".").lower()
    if not is_dns_name(domain, min_labels=2):
        raise ConfigurationError(
            f"CERTWARD_PLATFORM_DOMAIN must be a DNS name such as apps.example.net, not {value!r}."
        )
    return domain


def _admin_token(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) < MIN_ADMIN_TOKEN_LENGTH or any(c.isspace() for c in value):
        raise ConfigurationError(
            f"CERTWARD_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_LENGTH} characters "
            f"without spaces."
        )
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if text is None:
        return default
    try:
        number = int(text.strip())
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigurationError(f"{name} must be a positive whole number, not {text!r}.")
    return number


def _days(env: Mapping[str, str], name: str) -> timedelta:
    """An expires-soon window: whole days, 1 to `MAX_EXPIRES_SOON_DAYS`."""
    days = _positive_int(env, name, DEFAULT_EXPIRES_SOON_DAYS)
    if days > MAX_EXPIRES_SOON_DAYS:
        raise ConfigurationError(
            f"{name} must be at most {MAX_EXPIRES_SOON_DAYS} days, not {days}."
        )
    return timedelta(days=days)


def _rate(env: Mapping[str, str], name: str, default: Rate) -> Rate:
    text = env.get(name)
    if text is None:
        return default
    rate = Rate.parse(text)
    if rate is None:
        raise ConfigurationError(
            f"{name} must be a rate such as 30/minute, 100/hour or 5/s, not {text!r}."
        )
    return rate


def parse_duration(text: str) -> timedelta | None:
    """``7d``, ``12h``, ``30m``, ``90s`` or plain seconds as a `timedelta`; None if not one."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        return None
    return timedelta(seconds=int(match.group(1)) * _DURATION_UNITS[match.group(2)])


def _duration(
    env: Mapping[str, str],
    name: str,
    default: timedelta,
    *,
    minimum: timedelta,
    maximum: timedelta | None = None,
) -> timedelta:
    text = env.get(name)
    if text is None:
        return default
    value = parse_duration(text)
    if value is None or value < minimum:
        raise ConfigurationError(
            f"{name} must be a duration of at least {_spoken(minimum)} such as 7d, 12h, 30m "
            f"or 90 (seconds), not {text!r}."
        )
    if maximum is not None and value > maximum:
        raise ConfigurationError(f"{name} must be at most {_spoken(maximum)}, not {text!r}.")
    return value


def _header_timeout(env: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    """How long a client may take to send a request head: 1 second to 10 minutes."""
    return _duration(
        env, name, default, minimum=timedelta(seconds=1), maximum=timedelta(minutes=10)
    )


def _idle_timeout(env: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    """How long a kept-alive connection may wait for its next request: 1 second to 1 hour."""
    return _duration(env, name, default, minimum=timedelta(seconds=1), maximum=timedelta(hours=1))


def _spoken(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _ca_url(value: str | None) -> str | None:
    if value is None:
        return None
    url = value.strip().rstrip("/")
    if not re.fullmatch(r"http://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?", url):
        raise ConfigurationError(
            "CERTWARD_CA_URL must be a plain http:// URL (relying parties fetch CA certificates "
            f"and CRLs over http), such as http://ca.example.net/api/v1/platform/ca, not {value!r}."
        )
    return url


def _acme_directory(value: str | None) -> str | None:
    if value is None:
        return None
    url = value.strip()
    if not re.fullmatch(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/%-]*)?", url):
        raise ConfigurationError(
            "CERTWARD_ACME_DIRECTORY must be the https:// URL of an ACME directory, such as "
            f"https://acme-v02.api.letsencrypt.org/directory, not {value!r}."
        )
    return url


def _acme_profile(env: Mapping[str, str]) -> str | None:
    value = env.get("CERTWARD_ACME_PROFILE")
    if value is None:
        return None
    profile = value.strip()
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", profile):
        raise ConfigurationError(
            "CERTWARD_ACME_PROFILE must be the name of a profile the ACME CA lists, such as "
            f"shortlived (letters, digits, '.', '_', '-'), not {value!r}."
        )
    if "CERTWARD_ACME_DIRECTORY" not in env:
        raise ConfigurationError(
            "CERTWARD_ACME_PROFILE names a profile of the ACME CA: set CERTWARD_ACME_DIRECTORY too."
        )
    return profile


def _acme_ca_bundle(value: str | None) -> Path | None:
    return _pem_file(value, "CERTWARD_ACME_CA_BUNDLE")


def _pem_file(value: str | None, name: str) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.is_file():
        raise ConfigurationError(f"{name} must name a PEM file of CA certificates, not {value!r}.")
    return path


def _expired_crl(env: Mapping[str, str]) -> ExpiredCrl:
    value = (env.get("CERTWARD_EXPIRED_CRL") or "").strip().lower()
    if not value:
        return ExpiredCrl.REFUSE
    try:
        return ExpiredCrl(value)
    except ValueError:
        raise ConfigurationError("CERTWARD_EXPIRED_CRL must be refuse or warn.") from None


def _tls_profile(env: Mapping[str, str]) -> TlsProfile:
    value = (env.get("CERTWARD_TLS_POLICY") or "").strip().lower()
    if not value:
        return TlsProfile.INTERMEDIATE
    try:
        return TlsProfile(value)
    except ValueError:
        choices = ", ".join(profile.value for profile in TlsProfile)
        raise ConfigurationError(f"CERTWARD_TLS_POLICY must be one of {choices}.") from None


def _boolean(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    value = env.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, not {value!r}.")


def _hide_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid>"
