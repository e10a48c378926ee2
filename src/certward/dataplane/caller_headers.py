"""The request headers a caller may not set, and the platform's own hop mark.

Apps behind certward trust some request headers because certward sets them: the
client-certificate headers (``SSL-Client-*``), the TLS facts (``SSL-Protocol``,
``SSL-Cipher``) and the caller's address (``X-Real-IP``, ``X-Forwarded-For``). Apps
also commonly trust headers other proxies set (``X-Forwarded-Host``, ``Forwarded``,
``True-Client-IP``, RFC 9440's ``Client-Cert``...). A caller who sends any of them
could impersonate a partner or an address, so both data planes drop every one of
them, in any letter case and with ``_`` for ``-``, before adding their own.

The gateway drops every header whose name is in `STRIPPED_NAMES` or starts with one
of `STRIPPED_PREFIXES`. nginx cannot match a header name by prefix, so it clears
`STRIPPED_NAMES` one by one — the list names every member of the prefix families in
use by common proxies and apps — and ignores names with ``_`` altogether
(``ignore_invalid_headers``).

Loops: both data planes add the platform's mark to ``CDN-Loop`` (RFC 8586) on every
request they forward, and refuse with 508 a request that already carries it — an
upstream that points back into the platform, directly or through other proxies that
keep the header, cannot turn one request into thousands.

Pure: names and values, no IO.
"""

from __future__ import annotations

import re

STRIPPED_PREFIXES: tuple[str, ...] = ("ssl-", "x-ssl-", "x-forwarded-", "x-client-")
"""Header-name prefixes (lower case, ``-`` spelling) the gateway drops."""

_CLIENT_FIELDS = (
    "verify",
    "cert",
    "escaped-cert",
    "raw-cert",
    "chain",
    "s-dn",
    "i-dn",
    "s-dn-legacy",
    "i-dn-legacy",
    "fingerprint",
    "serial",
    "v-start",
    "v-end",
    "v-remain",
    "dn",
    "subject",
    "issuer",
    "san",
)

STRIPPED_NAMES: frozenset[str] = frozenset(
    {
        # TLS facts and client-certificate headers certward sets, and their X- kin
        *(f"ssl-client-{field}" for field in _CLIENT_FIELDS),
        *(f"x-ssl-client-{field}" for field in _CLIENT_FIELDS),
        *(f"x-client-{field}" for field in _CLIENT_FIELDS),
        "ssl-protocol",
        "ssl-cipher",
        "ssl-session-id",
        "ssl-session-reused",
        "ssl-server-name",
        "ssl-early-data",
        "x-ssl",
        "x-ssl-protocol",
        "x-ssl-cipher",
        "x-ssl-cert",
        "x-ssl-verified",
        "client-cert",
        "client-cert-chain",
        # the caller's address and the original request, as proxies pass them on
        "x-real-ip",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-server",
        "x-forwarded-ssl",
        "x-forwarded-scheme",
        "x-forwarded-uri",
        "x-forwarded-client-cert",
        "x-forwarded-tls-client-cert",
        "x-forwarded-tls-client-cert-info",
        "forwarded",
        "x-client-ip",
        "true-client-ip",
        "x-cluster-client-ip",
        "x-original-forwarded-for",
        "x-original-host",
        "x-original-url",
        "x-rewrite-url",
        "cf-connecting-ip",
        "fastly-client-ip",
    }
)
"""Every header name (lower case, ``-`` spelling) that both data planes drop."""

HOP_MARK_HEADER = "CDN-Loop"
HOP_MARK = "certward"
"""The cdn-id both data planes append to ``CDN-Loop`` and refuse to see again."""

_HOP_MARK_IN_VALUE = re.compile(r"(?:^|,)[ \t]*certward[ \t]*(?:;|,|$)", re.IGNORECASE)


def is_stripped(name: str) -> bool:
    """Whether the data planes drop a caller's header called ``name`` (any spelling)."""
    spelled = name.strip().lower().replace("_", "-")
    return spelled in STRIPPED_NAMES or spelled.startswith(STRIPPED_PREFIXES)


def carries_hop_mark(value: str) -> bool:
    """Whether one ``CDN-Loop`` field value names the platform's own mark."""
    return _HOP_MARK_IN_VALUE.search(value) is not None


HOP_MARK_NGINX_REGEX = r"~*(^|,)[ \t]*certward[ \t]*(;|,|$)"
"""`carries_hop_mark` as an nginx ``map`` regex (the same expression)."""
