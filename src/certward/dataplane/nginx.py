"""The data plane for Debian's nginx: a `DataPlaneState` rendered as a set of files.

`render` returns ``nginx.conf`` plus, per hostname, the certificate chain, its key
(mode 0600) and the client CAs; nothing is written here (`certward.dataplane.nginx_agent` does
that, atomically). `render_set` with ``certificates=`` renders the configuration
``certward nginx sync`` serves: certificates read at every handshake from one file per
hostname (`certificate_file`), so a renewal needs no reload. The configuration
reproduces `certward.dataplane.access.decide` request by request:

* **IP deny first**: a ``geo`` per site on ``$remote_addr``.
* **Path rules**: a ``map $uri`` per site whose regexes are tried in order, longest
  prefix first. ``inherit`` is resolved when rendering (by `matching_rule` itself), so
  each prefix maps straight to the rule that decides. The implicit ``deny-all`` of a
  ``-doc`` first segment is a negative look-ahead on every prefix that does not cover
  the whole segment, followed by a catch-all for such segments.
* **Profiles**: a ``geo`` for the profile's ranges, and a regex over
  ``$ssl_client_verify:$ssl_client_i_dn`` for the issuers it accepts. nginx writes
  DNs the way OpenSSL's RFC 2253 printer does, not as ``rfc4514_string()``, so each
  accepted issuer is rendered with `openssl_dn` from its CA certificate.
* **Sites without rules or deny ranges** (most) share http-level variables for the
  ``-doc`` default, so loading stays linear in the number of sites.
* **A client certificate that fails verification** makes nginx answer 495 before any
  location runs; ``error_page 495 = @named`` sends the request through the same
  decision in a named location (``$uri`` untouched), where the failure counts as "not
  verified", exactly like ``ClientIdentity(verified=False)``.
* **Selected intermediates are trust anchors** (`certward.dataplane.nginx_client_ca`).
* **Upstreams** are rendered as checked literal addresses, https ones verified, caller
  headers cleared and loops refused (`certward.dataplane.nginx_upstreams`).

The decision is made on ``$uri``: percent-decoded, dot segments resolved, slashes
merged. Deciding on the raw target would let ``/api%2Ddoc/`` past a rule on
``/api-doc``; the upstream still receives the request target exactly as sent. The
``SSL-Client-*`` headers are sent only for a certificate that verified, and a request
whose ``Host`` names another site than the connection's SNI gets 421: the certificate
was verified against the SNI host's CAs, not the other site's.

Pure: no files, sockets or clock (upstream names are resolved by the caller).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from certward.dataplane.nginx_access import decision_blocks, path_patterns
from certward.dataplane.nginx_client_ca import client_ca_file, client_crl_file
from certward.dataplane.nginx_client_ca import openssl_dn as openssl_dn  # noqa: PLC0414
from certward.dataplane.nginx_syntax import comment, quote
from certward.dataplane.nginx_upstreams import (
    UPSTREAM_TRUST_FILE,
    CheckedUpstream,
    UpstreamBlocks,
    UpstreamChecks,
    UpstreamTarget,
    acme_origin,
    check_upstreams,
    forwarded_headers,
    tls_lines,
)
from certward.dataplane.state import DataPlaneState, Site
from certward.dataplane.tls_policy import DEFAULT_NGINX_TLS, NginxTls, nginx_listen_parameters
from certward.egress import EgressPolicy
from certward.pki.names import is_dns_name

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644
CONFIG_FILE = "nginx.conf"
VERSION_FILE = "state-version"
STATE_PATH = "/.well-known/certward/state"
"""Answers the state version being served (loopback callers only): how a reload is
confirmed to be in effect."""
CLIENT_VERIFY_DEPTH = 8

FORBIDDEN_PAGE = (
    "<!doctype html><html><head><title>403 Forbidden</title></head>"
    "<body><h1>403 Forbidden</h1><p>Access to this path is restricted.</p></body></html>\n"
)

# Used with fullmatch: ``match`` with ``$`` would let a trailing newline through.
_LISTEN_HOST = re.compile(r"[A-Za-z0-9.*-]+")
_VERSION = re.compile(r"[A-Za-z0-9._:-]{1,200}")


@dataclass(frozen=True, slots=True)
class RenderedFile:
    """One file of a rendered set: its bytes (a key, maybe: never in ``repr``) and the
    mode it must be written with."""

    content: bytes = field(repr=False)
    mode: int = PUBLIC_MODE


@dataclass(frozen=True, slots=True)
class RenderedSet:
    """A rendered configuration and the hostnames left out of it, with the reason.

    ``certificates`` is empty unless certificates are loaded per handshake (see
    `render_set`): then it holds each served hostname's `certificate_file`, by hostname,
    and ``files`` holds none of them.
    """

    files: dict[str, RenderedFile]
    skipped: dict[str, str]
    certificates: dict[str, RenderedFile] = field(default_factory=dict)


CERTIFICATE_SUFFIX = ".pem"


def certificate_file(site: Site) -> RenderedFile | None:
    """The one file nginx reads a site's certificate from at each handshake: the chain
    (leaf first), then the private key (mode 0600). One file, so that a replacement
    renamed over it changes certificate and key together."""
    if site.certificate is None:
        return None
    chain = site.certificate.chain_pem
    if not chain.endswith(b"\n"):
        chain += b"\n"
    return RenderedFile(chain + site.certificate.key_pem, PRIVATE_MODE)


def render(
    state: DataPlaneState,
    *,
    https_listen: str,
    http_listen: str,
    acme_upstream: str,
    prefix: str,
    policy: EgressPolicy,
    upstreams: UpstreamChecks | None = None,
    upstream_trust_pem: bytes = b"",
    tls: NginxTls = DEFAULT_NGINX_TLS,
) -> dict[str, RenderedFile]:
    """Every file nginx needs to serve ``state``, by path relative to ``prefix``.

    ``prefix`` is the absolute directory the files will be written to: the
    configuration names certificates by absolute path, so a set stays self-contained
    when another one is swapped in next to it. The pid file, logs and temporary files
    are relative paths, resolved by nginx against its own ``-p`` prefix.
    ``https_listen``/``http_listen`` are ``host:port``; ``acme_upstream`` is where
    ``/.well-known/acme-challenge/`` on the HTTP port is proxied (certward's API).
    Each site's upstream is checked against ``policy``; ``upstreams`` gives the checks
    made already, with names resolved (without it, a name is left unresolved and its
    site out). ``upstream_trust_pem`` verifies https upstreams; ``tls`` is the TLS
    policy and the session-ticket key files.
    Raises `ValueError` when the options cannot be rendered safely; see `render_set`
    for sites that cannot.
    """
    return render_set(
        state,
        https_listen=https_listen,
        http_listen=http_listen,
        acme_upstream=acme_upstream,
        prefix=prefix,
        policy=policy,
        upstreams=upstreams,
        upstream_trust_pem=upstream_trust_pem,
        tls=tls,
    ).files


def render_set(
    state: DataPlaneState,
    *,
    https_listen: str,
    http_listen: str,
    acme_upstream: str,
    prefix: str,
    policy: EgressPolicy,
    upstreams: UpstreamChecks | None = None,
    upstream_trust_pem: bytes = b"",
    exclude: Mapping[str, str] | Collection[str] = (),
    certificates: str | None = None,
    served_as: str | None = None,
    tls: NginxTls = DEFAULT_NGINX_TLS,
) -> RenderedSet:
    """`render`, also naming the sites left out, with the reason: those in ``exclude``
    (a mapping gives the reason: say, a site ``nginx -t`` refused), those whose upstream
    the policy refuses or that does not resolve, and those that cannot be written into
    the configuration safely. One bad site must not hold back the rest.

    ``certificates``, an absolute directory, makes nginx load each site's certificate at
    every handshake from ``<certificates>/<hostname>.pem`` (`certificate_file`, named
    through ``$server_name``: the server block's own name, never the client's SNI), so
    a renewed or replaced certificate written there is served without a reload. The
    configuration then does not depend on any certificate: a site without one yet has
    its server block too (its handshakes fail until the file exists). ``served_as`` is
    the version the configuration answers on `STATE_PATH` (``state.version`` by
    default): the state it was rendered from when certificates change in place.
    """
    base = _check_prefix(prefix)
    version = state.version if served_as is None else served_as
    if not _VERSION.fullmatch(version):
        raise ValueError(f"the state version {version!r} is not a plain token")
    live = None if certificates is None else _check_prefix(certificates)
    https = _listen(https_listen, "https_listen")
    http = _listen(http_listen, "http_listen")
    acme = acme_origin(acme_upstream)
    if upstreams is None:
        upstreams = check_upstreams((s.upstream for s in state.sites.values()), policy)
    trust_file = f"{base}/{UPSTREAM_TRUST_FILE}"
    files: dict[str, RenderedFile] = {}
    live_files: dict[str, RenderedFile] = {}
    skipped: dict[str, str] = {}
    blocks_of_upstreams = UpstreamBlocks()
    blocks: list[str] = []
    named: list[str] = []
    hostnames = sorted(state.sites)
    for index, hostname in enumerate(hostnames):
        site = state.sites[hostname]
        if hostname in exclude:
            skipped[hostname] = exclude[hostname] if isinstance(exclude, Mapping) else "excluded"
            continue
        try:
            _check_hostname(hostname)
            checked = _checked_upstream(site, upstreams, upstream_trust_pem)
            if live is None and site.certificate is None:
                named.append(hostname)
                blocks.append(f"    # {hostname}: no certificate yet, refused at the handshake\n")
                continue
            chain, key, client_ca, site_files = _site_files(site, base, live)
            if live is not None and (material := certificate_file(site)) is not None:
                live_files[hostname] = material
            block = _site_blocks(
                index,
                site,
                https=https,
                chain=chain,
                key=key,
                client_ca=client_ca,
                upstream=blocks_of_upstreams.name(checked, trust_file),
            )
        except ValueError as exc:
            skipped[hostname] = str(exc)
            continue
        named.append(hostname)
        files |= site_files
        blocks.append(block)
    config = _http_preamble(version, len(hostnames), max(map(len, named), default=1), tls)
    config += blocks_of_upstreams.render()
    config += "".join(blocks)
    config += _default_servers(https=https, http=http, acme=acme, version=version)
    config += _redirect_server(named, http=http, https=https, acme=acme, version=version)
    config += "}\n"
    files[CONFIG_FILE] = RenderedFile(config.encode("utf-8"), PUBLIC_MODE)
    if blocks_of_upstreams.any_tls:
        files[UPSTREAM_TRUST_FILE] = RenderedFile(upstream_trust_pem, PUBLIC_MODE)
    files[VERSION_FILE] = RenderedFile(version.encode("ascii") + b"\n", PUBLIC_MODE)
    return RenderedSet(files=files, skipped=skipped, certificates=live_files)


def _site_files(
    site: Site, base: str, live: str | None
) -> tuple[str, str, str | None, dict[str, RenderedFile]]:
    """What ``ssl_certificate``, ``ssl_certificate_key`` and ``ssl_client_certificate``
    name, and the files of the set they need. Certificates are loaded per handshake
    from ``live`` (no file in the set), or are the set's own ``tls/`` files, read when
    nginx loads the configuration; client CAs are always the set's (nginx 1.22 takes no
    variable there)."""
    hostname = site.hostname
    files: dict[str, RenderedFile] = {}
    if live is not None:
        chain = key = f"{live}/$server_name{CERTIFICATE_SUFFIX}"
    elif site.certificate is None:  # pragma: no cover - rendered as a comment instead
        raise ValueError(f"{hostname} has no certificate yet")
    else:
        chain, key = f"{base}/tls/{hostname}.crt", f"{base}/tls/{hostname}.key"
        files[f"tls/{hostname}.crt"] = RenderedFile(site.certificate.chain_pem, PUBLIC_MODE)
        files[f"tls/{hostname}.key"] = RenderedFile(site.certificate.key_pem, PRIVATE_MODE)
    client_ca: str | None = None
    if site.wants_client_certificate:
        files[f"client-ca/{hostname}.pem"] = RenderedFile(client_ca_file(site), PUBLIC_MODE)
        client_ca = f"{base}/client-ca/{hostname}.pem"
        if (crls := client_crl_file(site)) is not None:
            files[f"client-crl/{hostname}.pem"] = RenderedFile(crls, PUBLIC_MODE)
    return chain, key, client_ca, files


def _checked_upstream(site: Site, upstreams: UpstreamChecks, trust_pem: bytes) -> CheckedUpstream:
    """The site's upstream as checked, or `ValueError` saying why it cannot be served."""
    checked = upstreams.get(site.upstream, "the upstream was not checked")
    if not isinstance(checked, CheckedUpstream):
        raise ValueError(checked)
    if checked.tls and not trust_pem.strip():
        raise ValueError("no trust bundle was given to verify https upstreams")
    return checked


# -- the configuration --------------------------------------------------------------------


def _http_preamble(version: str, sites: int, longest_hostname: int, tls: NginxTls) -> str:
    # A bucket holds several names (names hash at load; a fuller bucket needs fewer).
    names_bucket = _power_of_two(max(128, 4 * (longest_hostname + 16)))
    return f"""\
# certward data plane for nginx: state {version}
# Rendered by certward; edits are replaced at the next render.
pid run/nginx.pid;
error_log logs/error.log notice;
worker_processes auto;
pcre_jit on;

events {{
    worker_connections 4096;
}}

http {{
    server_tokens off;
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    server_names_hash_bucket_size {names_bucket};
    server_names_hash_max_size {_power_of_two(max(1024, 2 * sites))};
    variables_hash_bucket_size 128;
    variables_hash_max_size {_power_of_two(max(1024, 8 * sites))};
    map_hash_bucket_size 128;

    # Headers with underscores are dropped, so no SSL_Client_S_DN reaches an app.
    underscores_in_headers off;
    ignore_invalid_headers on;
    client_max_body_size 0;
    keepalive_timeout 75s;

    # The TLS policy (certward.dataplane.tls_policy), the same as the gateway's.
{_indented(tls.directives(), 1)}

    proxy_http_version 1.1;
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_redirect off;
    proxy_read_timeout 300s;
    proxy_send_timeout 300s;
{forwarded_headers()}
    # A literal dollar sign for rule labels (map values would read "$" as a variable).
    geo $cw_dollar {{
        default "$";
    }}
    # 1 when the Host header names another host than the TLS handshake's SNI (compared
    # without case and trailing dot): a connection serves the host it was opened for.
    map "$ssl_server_name:$host" $cw_misdirected {{
        "~*^([^:]+?)\\.?:\\1\\z" 0;
        default 1;
    }}
    map $http_upgrade $cw_upstream_connection {{
        default upgrade;
        "" "";
    }}
    # Client-certificate headers only for a certificate that verified.
    map $ssl_client_verify $cw_client_s_dn {{
        SUCCESS $ssl_client_s_dn;
        default "";
    }}
    map $ssl_client_verify $cw_client_i_dn {{
        SUCCESS $ssl_client_i_dn;
        default "";
    }}
    map $ssl_client_verify $cw_client_fingerprint {{
        SUCCESS $ssl_client_fingerprint;
        default "";
    }}
    map $ssl_client_verify $cw_client_serial {{
        SUCCESS $ssl_client_serial;
        default "";
    }}
    # The decision of a site without rules or deny ranges: only the -doc default.
    map $uri $cw_plain_rule {{
        "~^/(?<cw_plain_seg>[^/]*)(?<=-doc)(?:/|\\z)" d;
        default n;
    }}
    map $cw_plain_rule $cw_plain_verdict {{
        d deny;
        default allow;
    }}
    map $cw_plain_rule $cw_plain_label {{
        d "deny-all /$cw_plain_seg";
        default default;
    }}
    # Set in every location before anything else; unset for a request nginx refuses
    # before that (a malformed one), which is logged with empty decision and rule.
    uninitialized_variable_warn off;
    log_format cw_https escape=json '{{"time":"$time_iso8601","listener":"https",'
        '"host":"$server_name","method":"$request_method","path":"$uri",'
        '"request":"$request_uri","ip":"$remote_addr","status":$status,'
        '"decision":"$cw_verdict","rule":"$cw_rule","client_verify":"$ssl_client_verify",'
        '"client_subject":"$ssl_client_s_dn","client_issuer":"$ssl_client_i_dn",'
        '"sni":"$ssl_server_name","upstream_status":"$upstream_status",'
        '"request_time":$request_time}}';
    log_format cw_http escape=json '{{"time":"$time_iso8601","listener":"http",'
        '"host":"$host","method":"$request_method","path":"$uri",'
        '"request":"$request_uri","ip":"$remote_addr","status":$status}}';

"""


def _power_of_two(value: int) -> int:
    result = 1
    while result < value:
        result *= 2
    return result


def _site_blocks(
    index: int,
    site: Site,
    *,
    https: str,
    chain: str,
    key: str,
    client_ca: str | None,
    upstream: UpstreamTarget,
) -> str:
    """The geo/map blocks and the ``server`` of one hostname.

    A site without deny ranges or path rules (most of them) shares the http-level
    ``$cw_plain_*`` variables: nginx's load time grows faster than the number of
    variables (1,000 sites with four maps each took 7 s more to load than without).
    """
    lines: list[str] = [
        f"    # {site.hostname} ({comment(site.app)}/{comment(site.environment)})\n"
    ]
    if not site.deny_ranges and not path_patterns(site):
        lines.append(
            _server(f"cw_{index}", "cw_plain", site, https, chain, key, client_ca, upstream)
        )
        return "".join(lines) + "\n"
    var = f"cw_{index}"
    lines.append(decision_blocks(site, var))
    lines.append(_server(var, var, site, https, chain, key, client_ca, upstream))
    return "".join(lines) + "\n"


def _server(
    name: str,
    decision: str,
    site: Site,
    https: str,
    chain: str,
    key: str,
    client_ca: str | None,
    upstream: UpstreamTarget,
) -> str:
    # The same decision in both locations: the named one takes requests whose client
    # certificate failed verification (nginx's 495), with $uri untouched.
    body = [
        f"set $cw_verdict ${decision}_verdict;",
        f"set $cw_rule ${decision}_label;",
        "# A request that already went through the platform: a loop.",
        "if ($cw_loop) {",
        "    return 508;",
        "}",
        "# Served by SNI: a request naming another host on this connection is refused.",
        "if ($cw_misdirected) {",
        "    return 421;",
        "}",
        "if ($cw_verdict = deny) {",
        f"    return 403 {quote(FORBIDDEN_PAGE)};",
        "}",
        f"proxy_pass {upstream.proxy_pass};",
    ]
    lines = [
        f"listen {https} ssl {nginx_listen_parameters()};",
        f"server_name {site.hostname};",
        "access_log logs/access.log cw_https;",
        f"ssl_certificate {quote(chain)};",
        f"ssl_certificate_key {quote(key)};",
    ]
    if client_ca is not None:
        lines += [
            "ssl_verify_client optional;",
            f"ssl_client_certificate {quote(client_ca)};",
            f"ssl_verify_depth {CLIENT_VERIFY_DEPTH};",
            *_crl_line(site, client_ca),
            "# A certificate that fails verification counts as not verified.",
            f"error_page 495 496 = @{name}_unverified;",
        ]
    lines += tls_lines(upstream)
    if site.hsts_max_age is not None:
        lines += [
            "proxy_hide_header Strict-Transport-Security;",
            f'add_header Strict-Transport-Security "max-age={site.hsts_max_age}" always;',
        ]
    lines += [
        'default_type "text/html; charset=utf-8";',
        *_block("location /", body),
        *_block(f"location @{name}_unverified", body),
    ]
    return _indented(_block("server", lines), 1)


def _crl_line(site: Site, client_ca: str) -> list[str]:
    """``ssl_crl`` beside the site's client CA file, where a client CA has a CRL."""
    if not site.client_crls():
        return []
    crl_file = client_ca.replace("/client-ca/", "/client-crl/")
    return [f"ssl_crl {quote(crl_file)};"]


def _default_servers(*, https: str, http: str, acme: str, version: str) -> str:
    rejecting = _block(
        "server",
        [
            f"listen {https} ssl {nginx_listen_parameters()} default_server;",
            "ssl_reject_handshake on;",
        ],
    )
    unknown = _block(
        "server",
        [
            f"listen {http} default_server;",
            "server_name _;",
            "access_log logs/access.log cw_http;",
            "# Declares the variables cw_https logs, also when no site sets them.",
            'set $cw_verdict "";',
            'set $cw_rule "";',
            *_plain_locations(acme, version, http),
            *_block(
                "location /",
                ["default_type text/plain;", f"return 404 {quote('unknown host' + chr(10))};"],
            ),
        ],
    )
    return (
        "    # An unknown (or absent) SNI name: no certificate, the handshake is refused.\n"
        + _indented(rejecting, 1)
        + "\n    # Plain HTTP for a host not served: ACME challenges, otherwise 404.\n"
        + _indented(unknown, 1)
        + "\n"
    )


def _redirect_server(
    hostnames: list[str], *, http: str, https: str, acme: str, version: str
) -> str:
    if not hostnames:
        return ""
    # A non-default HTTPS port stays in the redirect.
    port = https.rpartition(":")[2]
    authority = "$host" if port == "443" else f"$host:{port}"
    server = _block(
        "server",
        [
            f"listen {http};",
            "server_name",
            *(f"    {hostname}" for hostname in hostnames),
            ";",
            "access_log logs/access.log cw_http;",
            *_plain_locations(acme, version, http),
            *_block("location /", [f"return 301 https://{authority}$request_uri;"]),
        ],
    )
    return (
        "    # Plain HTTP for served hosts: ACME challenges, otherwise a redirect to HTTPS.\n"
        + _indented(server, 1)
    )


def _plain_locations(acme: str, version: str, http: str) -> list[str]:
    return [
        *_block(
            "location ^~ /.well-known/acme-challenge/",
            [
                f"proxy_pass {acme};",
                "proxy_set_header Host $host;",
                "proxy_set_header X-Real-IP $remote_addr;",
                "proxy_set_header X-Forwarded-For $remote_addr;",
                "proxy_set_header X-Forwarded-Proto http;",
                'proxy_set_header Connection "";',
            ],
        ),
        *_block(
            f"location = {STATE_PATH}",
            [
                *(f"allow {address};" for address in _state_readers(http)),
                "deny all;",
                "default_type text/plain;",
                f"return 200 {quote(version + chr(10))};",
            ],
        ),
    ]


def _state_readers(http: str) -> list[str]:
    """Loopback, and the listen address itself when it is one IP (the agent connects to
    it from the same host, so that is the source address it comes from)."""
    host = http.rpartition(":")[0].strip("[]")
    readers = ["127.0.0.0/8", "::1"]
    if _is_ip(host):
        address = ipaddress.ip_address(host)
        if not (address.is_unspecified or address.is_loopback):
            readers.append(str(address))
    return readers


def _block(head: str, lines: list[str]) -> list[str]:
    return [f"{head} {{", *(f"    {line}" for line in lines), "}"]


def _indented(lines: list[str], level: int) -> str:
    pad = "    " * level
    return "".join(f"{pad}{line}\n" for line in lines)


# -- checks ------------------------------------------------------------------------------


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_hostname(hostname: str) -> None:
    if not is_dns_name(hostname):
        raise ValueError(f"{hostname!r} is not a lower-case DNS host name")


def _check_prefix(prefix: str) -> str:
    """The directory, without a trailing slash; it is written into file names."""
    if not prefix.startswith("/"):
        raise ValueError(f"prefix must be an absolute directory, not {prefix!r}")
    if "$" in prefix or any(ord(c) < 0x20 or ord(c) == 0x7F for c in prefix):
        raise ValueError(
            f"prefix {prefix!r} holds '$' or a control character, which nginx would "
            "read as a variable or cannot quote"
        )
    return prefix.rstrip("/") or ""


def _listen(value: str, what: str) -> str:
    """``host:port`` (``[v6]:port``) as an nginx ``listen`` address."""
    host, sep, port_text = value.strip().rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    bare = host[1:-1] if bracketed else host
    valid_host = (bracketed and _is_ip(bare)) or (
        not bracketed and bool(_LISTEN_HOST.fullmatch(host))
    )
    if not sep or not valid_host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{what} must be host:port (or [v6]:port), not {value!r}")
    return f"{host}:{int(port_text)}"
