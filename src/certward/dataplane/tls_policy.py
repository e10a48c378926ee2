"""The TLS policy of both data planes, defined once.

`TlsPolicy` is data: protocol versions, TLS 1.2 cipher suites, TLS 1.3 cipher suites,
the key-exchange groups, whether the server's cipher order wins, and the ALPN
protocols. Two functions read it: `configure_context` sets up the embedded gateway's
`OpenSSL.SSL.Context`, and `nginx_directives` writes the ``ssl_*`` lines of the nginx
rendering. A scanner therefore finds the same protocols and suites on both.

Two profiles, after Mozilla's server-side TLS guidelines (version 5.7):

* ``intermediate`` (the default): TLS 1.2 with ECDHE key exchange and AEAD ciphers
  only (AES-GCM, ChaCha20-Poly1305: forward secrecy, no CBC), and TLS 1.3.
* ``modern``: TLS 1.3 only.

The client's cipher order is honoured on both (every suite offered is strong, and the
client knows whether it has AES hardware). The groups are OpenSSL's defaults on both
(X25519, P-256, X448, P-521, P-384 and, for TLS 1.3, the FFDHE groups): pyOpenSSL
cannot set a list of groups, and one set for both beats a shorter list on one.

ALPN: nginx offers ``h2`` and ``http/1.1``; the gateway speaks HTTP/1.1 only and
answers ``http/1.1`` when a client offers it. A client offering only protocols the
gateway does not speak gets a ``no_application_protocol`` alert (RFC 7301, 3.2)
rather than a connection it could not use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from OpenSSL import SSL


class TlsProfile(StrEnum):
    """The operator's choice (``CERTWARD_TLS_POLICY``)."""

    INTERMEDIATE = "intermediate"
    MODERN = "modern"


# Mozilla "intermediate": ECDHE key exchange, AEAD ciphers, ECDSA before RSA.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
TLS13_CIPHERSUITES = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
)

HTTP11 = b"http/1.1"
H2 = b"h2"

_VERSIONS = {"TLSv1.2": SSL.TLS1_2_VERSION, "TLSv1.3": SSL.TLS1_3_VERSION}


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    """What both data planes negotiate."""

    profile: TlsProfile
    protocols: tuple[str, ...]  # OpenSSL/nginx names, oldest first
    tls12_ciphers: tuple[str, ...]  # empty when TLS 1.2 is off
    tls13_ciphersuites: tuple[str, ...]
    prefer_server_ciphers: bool = True
    session_timeout_seconds: int = 3600  # a session (or ticket) is resumable this long

    @property
    def minimum_version(self) -> int:
        return _VERSIONS[self.protocols[0]]

    @property
    def maximum_version(self) -> int:
        return _VERSIONS[self.protocols[-1]]


INTERMEDIATE = TlsPolicy(
    profile=TlsProfile.INTERMEDIATE,
    protocols=("TLSv1.2", "TLSv1.3"),
    tls12_ciphers=TLS12_CIPHERS,
    tls13_ciphersuites=TLS13_CIPHERSUITES,
)
MODERN = TlsPolicy(
    profile=TlsProfile.MODERN,
    protocols=("TLSv1.3",),
    tls12_ciphers=(),
    tls13_ciphersuites=TLS13_CIPHERSUITES,
)
_POLICIES = {policy.profile: policy for policy in (INTERMEDIATE, MODERN)}


def tls_policy(profile: TlsProfile | str = TlsProfile.INTERMEDIATE) -> TlsPolicy:
    """The policy of ``profile`` (`ValueError` for an unknown name)."""
    return _POLICIES[TlsProfile(profile)]


def configure_context(context: SSL.Context, policy: TlsPolicy) -> None:
    """Give a gateway context the policy's versions, suites, cipher order and ALPN."""
    context.set_min_proto_version(policy.minimum_version)
    context.set_max_proto_version(policy.maximum_version)
    # With TLS 1.2 off the list is never used, but OpenSSL wants one that is not empty.
    context.set_cipher_list(":".join(policy.tls12_ciphers or TLS12_CIPHERS).encode("ascii"))
    context.set_tls13_ciphersuites(":".join(policy.tls13_ciphersuites).encode("ascii"))
    options = SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_COMPRESSION
    if policy.prefer_server_ciphers:
        options |= SSL.OP_CIPHER_SERVER_PREFERENCE
    context.set_options(options)
    context.set_timeout(policy.session_timeout_seconds)
    context.set_alpn_select_callback(select_http11)


def select_http11(connection: SSL.Connection, offered: Sequence[bytes]) -> bytes:
    """The gateway's ALPN answer: ``http/1.1`` if offered; otherwise the handshake ends
    with a ``no_application_protocol`` alert (the error is raised again by the handshake
    call, which the gateway treats as any failed handshake)."""
    if HTTP11 in offered:
        return HTTP11
    raise NoApplicationProtocol(b", ".join(offered).decode("ascii", "replace"))


class NoApplicationProtocol(SSL.Error):
    """A client offered ALPN protocols, none of them HTTP/1.1."""


def nginx_directives(policy: TlsPolicy) -> list[str]:
    """The http-level ``ssl_*`` lines of the nginx rendering (without resumption, which
    the agent's ticket keys decide)."""
    lines = [
        f"ssl_protocols {' '.join(policy.protocols)};",
        "ssl_ecdh_curve auto;",
        f"ssl_prefer_server_ciphers {'on' if policy.prefer_server_ciphers else 'off'};",
        f"ssl_conf_command Ciphersuites {':'.join(policy.tls13_ciphersuites)};",
        f"ssl_session_timeout {policy.session_timeout_seconds}s;",
    ]
    if policy.tls12_ciphers:
        lines.insert(1, f"ssl_ciphers {':'.join(policy.tls12_ciphers)};")
    return lines


def nginx_listen_parameters() -> str:
    """What follows ``listen <address> ssl`` on every HTTPS server: ALPN ``h2`` and
    ``http/1.1`` (nginx 1.22 spells HTTP/2 on the ``listen`` line)."""
    return "http2"


@dataclass(frozen=True, slots=True)
class NginxTls:
    """The TLS part of an nginx rendering: the policy, and the session-ticket key files
    (absolute paths, the one that encrypts first; `certward.dataplane.session_tickets`).
    Without key files, sessions resume from the shared session cache only."""

    policy: TlsPolicy = INTERMEDIATE
    ticket_key_files: tuple[str, ...] = ()

    def directives(self) -> list[str]:
        """Every http-level ``ssl_*`` line: the policy's, then resumption's."""
        lines = nginx_directives(self.policy)
        # One cache for every server block: resumption is decided on the connection's
        # first (default) server, before the servername callback picks the site.
        lines.append("ssl_session_cache shared:cw_tls:20m;")
        if self.ticket_key_files:
            lines.append("ssl_session_tickets on;")
            lines += [f'ssl_session_ticket_key "{path}";' for path in self.ticket_key_files]
        else:
            lines.append("ssl_session_tickets off;")
        return lines


DEFAULT_NGINX_TLS = NginxTls()
