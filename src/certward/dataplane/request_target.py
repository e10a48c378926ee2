"""PURE: what a request line names, and the path every decision is made on.

A request target comes in four forms (RFC 9112 section 3.2). The gateway serves
*origin-form* (``/path?query``). It accepts *absolute-form*
(``https://host/path``) only by translating it to origin-form, once its authority has
been checked against ``Host`` and the TLS server name by the caller; *asterisk-form*
only as ``OPTIONS *``; *authority-form* (``CONNECT host:port``) never. Anything
refused is a `TargetRefused` (400).

Every decision — path rules, the implicit ``-doc`` deny, the ACME challenge path — is
made on `normalized_path` of the translated target, which is nginx's ``$uri``: the
query and fragment dropped, ``%XX`` decoded once, repeated slashes merged, ``.`` and
``..`` segments resolved. Where nginx answers 400 (a malformed or NUL escape, a
``..`` above the root) so does the gateway.

Path-rule prefixes are stored in that same decoded, normalised form
(`canonical_prefix`), so one prefix means the same on both data planes;
`served_prefix` normalises a prefix stored before that was enforced.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote, unquote_to_bytes

from certward.errors import InternalSignal

_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ABSOLUTE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)")
_NOT_PLAIN = ("%", "//", "/.", "?", "#", "\0")
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(:[0-9]*)?")


class TargetRefused(InternalSignal, ValueError):
    """A request target the gateway does not serve (answered 400)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestTarget:
    """A request target translated to origin-form.

    ``origin`` is what is forwarded upstream (``/path?query``, as the client spelled
    it); ``path`` is what every decision is made on; ``authority`` is the host an
    absolute-form target named (lower case, no port or trailing dot), else None;
    ``asterisk`` marks ``OPTIONS *``, which the gateway answers itself.
    """

    origin: str
    path: str
    authority: str | None = None
    asterisk: bool = False


def parse_target(method: str, target: str) -> RequestTarget:
    """The origin-form of ``target``; `TargetRefused` for a form the gateway refuses."""
    if method == "CONNECT":
        raise TargetRefused("CONNECT (authority-form) is not served: this is no forward proxy")
    if target == "*":
        if method != "OPTIONS":
            raise TargetRefused("the asterisk-form target is only for OPTIONS")
        return RequestTarget(origin="*", path="*", asterisk=True)
    if target.startswith("/"):
        return RequestTarget(origin=target, path=normalized_path(target))
    absolute = _ABSOLUTE.fullmatch(target)
    if absolute is None:
        raise TargetRefused("the request target is neither a path nor an absolute URI")
    if absolute["scheme"].lower() not in ("http", "https"):
        raise TargetRefused("an absolute URI must be http:// or https://")
    authority = absolute["authority"]
    if "@" in authority or not _HOST.fullmatch(authority):
        raise TargetRefused("the absolute URI's authority is not a host and optional port")
    rest = absolute["rest"]
    origin = rest if rest.startswith("/") else "/" + rest
    return RequestTarget(
        origin=origin, path=normalized_path(origin), authority=authority_host(authority)
    )


def authority_host(authority: str) -> str:
    """``Shop.Example:443`` → ``shop.example``; ``[::1]:80`` → ``[::1]``, as nginx's ``$host``."""
    if authority.startswith("["):
        host = authority.split("]", 1)[0] + "]"
    else:
        host = authority.split(":", 1)[0]
    return host.rstrip(".").lower()


def normalized_path(target: str) -> str:
    """The path a request is about, as nginx's ``$uri`` and the app see it: the query
    and fragment dropped, percent-escapes decoded, repeated slashes merged, ``.`` and
    ``..`` segments resolved (RFC 3986 section 5.2.4).

    Rules are matched against this, never the raw target, or ``/api%2Ddoc`` or
    ``/x/../api-doc`` would slip past a rule written for ``/api-doc``. Bytes that are
    not UTF-8 become U+FFFD (no prefix holds one). `TargetRefused`
    where nginx answers 400: a ``%`` not followed by two hex digits, an escaped NUL,
    a ``..`` that climbs above the root.
    """
    if target[:1] == "/" and target.isascii() and not any(m in target for m in _NOT_PLAIN):
        return target  # nothing to decode, merge or resolve: the common case, kept cheap
    raw = re.split("[?#]", target, maxsplit=1)[0]
    if _ESCAPE.search(raw):
        raise TargetRefused("the path holds a '%' that is not followed by two hex digits")
    path = unquote_to_bytes(raw.encode("utf-8", "surrogateescape")).decode("utf-8", "replace")
    if "\0" in path:
        raise TargetRefused("the path holds an escaped NUL")
    return _resolved(path, strict=True)


def _resolved(path: str, *, strict: bool) -> str:
    """Slashes merged and dot segments resolved; above the root: refused if ``strict``."""
    path = re.sub("/+", "/", path)
    if not path.startswith("/"):
        path = "/" + path
    segments = path.split("/")
    kept: list[str] = []
    for segment in segments[1:]:
        if segment == "..":
            if kept:
                kept.pop()
            elif strict:
                raise TargetRefused("the path climbs above the root with '..'")
        elif segment != ".":
            kept.append(segment)
    result = "/" + "/".join(kept)
    if segments[-1] in (".", "..") and not result.endswith("/"):
        result += "/"
    return result


# -- path-rule prefixes ---------------------------------------------------------------------


class PrefixRefused(InternalSignal, ValueError):
    """A path-rule prefix that cannot mean the same on both data planes."""


def canonical_prefix(prefix: str) -> str:
    """``prefix`` as it is stored and matched: percent-escapes decoded once, and checked.

    Refused (`PrefixRefused`, one sentence): no leading ``/``; an escaped ``/``
    (``%2F``, which the data planes read as a separator); an escape that is malformed
    or does not decode to UTF-8; a ``%`` left after decoding (``%25``), a ``?`` or
    ``#`` (they end a path), control or format characters, whitespace other than the
    space; empty, ``.`` or ``..`` segments (a request path never has them). The result
    is its own canonical form, so a prefix read back and sent again is unchanged.
    """
    if not prefix.startswith("/"):
        raise PrefixRefused(
            "does not start with '/': it is matched against the request path, which always does"
        )
    if re.search("%2[Ff]", prefix):
        raise PrefixRefused(
            "holds an escaped '/' (%2F), which the data planes read as a path separator; "
            "write '/' itself"
        )
    if _ESCAPE.search(prefix):
        raise PrefixRefused("holds a '%' that is not followed by two hex digits")
    try:
        decoded = unquote_to_bytes(prefix).decode("utf-8")
    except UnicodeDecodeError:
        raise PrefixRefused(
            "holds percent-escapes that do not decode to UTF-8 text; paths are matched as UTF-8"
        ) from None
    for character in decoded:
        if character == "%":
            raise PrefixRefused(
                "holds a '%' once decoded (%25): prefixes are stored decoded, and a "
                "literal '%' would be read as an escape"
            )
        if character in "?#":
            raise PrefixRefused(
                "holds '?' or '#': a query or fragment is never part of the path the rule "
                "is matched against"
            )
        if character == "\ufffd" or unicodedata.category(character).startswith("C"):
            raise PrefixRefused(
                f"holds U+{ord(character):04X}, a control, format or replacement character"
            )
        if character.isspace() and character != " ":
            raise PrefixRefused(
                f"holds U+{ord(character):04X}, a whitespace character other than the space"
            )
    segments = decoded.split("/")[1:]
    if any(segment in ("", ".", "..") for segment in segments[:-1]) or segments[-1] in (
        ".",
        "..",
    ):
        raise PrefixRefused(
            "holds an empty, '.' or '..' segment ('//', '/./', '/../'): a request path is "
            "normalised before it is matched, so it never has one"
        )
    return decoded


def served_prefix(prefix: str) -> str:
    """The prefix the data planes match for a stored ``prefix``: its canonical form, or
    for one stored before prefixes were checked, the path a request naming it is
    decided on (decoded, slashes merged, dot segments resolved)."""
    try:
        return canonical_prefix(prefix)
    except PrefixRefused:
        return _resolved(unquote(prefix, errors="replace"), strict=False)
