"""The answers the gateway gives itself: its error pages and ``OPTIONS *`` (pure)."""

from __future__ import annotations

from http import HTTPStatus

ALLOWED_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"


def _page(status: str, message: str) -> bytes:
    return (
        f"<!doctype html><html><head><title>{status}</title></head>"
        f"<body><h1>{status}</h1><p>{message}</p></body></html>\n"
    ).encode()


BAD_REQUEST_PAGE = _page("400 Bad Request", "The request target is not served here.")
MALFORMED_PAGE = _page("400 Bad Request", "The request is malformed.")
FORBIDDEN_PAGE = _page("403 Forbidden", "Access to this path is restricted.")
MISDIRECTED_PAGE = _page("421 Misdirected Request", "This connection serves another host.")
BAD_GATEWAY_PAGE = _page("502 Bad Gateway", "The app did not answer.")
LOOP_DETECTED_PAGE = _page(
    "508 Loop Detected", "This request has already passed through this platform."
)


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase of ``status`` (``b""`` for a code without one)."""
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


def hsts_line(hsts: bytes | None) -> bytes:
    """The ``Strict-Transport-Security`` header line of a site's setting (or nothing)."""
    return b"" if hsts is None else b"Strict-Transport-Security: " + hsts + b"\r\n"


def own_answer(status: int, page: bytes, *, close: bool, hsts: bytes | None = None) -> bytes:
    """A whole answer: ``page`` as HTML (not cached), or for 200 the ``Allow`` answer
    to ``OPTIONS *``; ``close`` adds ``Connection: close``, ``hsts`` the site's
    ``Strict-Transport-Security``."""
    if status == 200:
        head = b"HTTP/1.1 200 OK\r\nAllow: " + ALLOWED_METHODS + b"\r\nContent-Length: 0\r\n"
    else:
        head = (
            b"HTTP/1.1 %d %s\r\nContent-Type: text/html; charset=utf-8\r\n"
            b"Content-Length: %d\r\nCache-Control: no-store\r\n"
            % (status, reason_phrase(status), len(page))
        )
    head += hsts_line(hsts)
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + page
