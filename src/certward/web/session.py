"""Console sessions in a sealed cookie, CSRF tokens, and one-shot notices.

The console signs people in with the same bearer tokens the API takes. The token must
never be readable by the page's JavaScript nor by whoever copies the cookie jar
without the master key, so the session cookie holds the token *sealed*: an AES-256-GCM
envelope made by the installation's `SecretBox` and bound to its purpose by its
associated data. It is re-authenticated on every request, so a revoked token ends its
sessions at once. A signed-in cookie also names a server-side session
(`certward.services.console_sessions`) by a random secret: signing out ends that
session in the database, so a copy of the cookie saved before sign-out opens nothing.

Every session, signed in or not, carries a random CSRF token: each form repeats it in
a hidden field and every POST is refused unless the two match (the cookie is also
``SameSite=Strict``, so another site's form never carries it). Signing in starts a new
session with a new CSRF token, so a token planted before sign-in is worthless after.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from certward.errors import Forbidden, RefusalCode, SecretError
from certward.randomness import Randomness
from certward.secrets import SecretBox

SESSION_COOKIE = "certward_session"
NOTICE_COOKIE = "certward_notice"
CSRF_FIELD = "csrf"
SESSION_LIFETIME = timedelta(hours=12)
MAX_COOKIE_CHARS = 4096  # what browsers keep; anything longer was not made here
MAX_NOTICE_CHARS = 600

_SESSION_AAD = b"console:session:cookie"
_NOTICE_AAD = b"console:notice:cookie"
_CSRF_BYTES = 32


class CsrfRefused(Forbidden):
    """403: a form without this session's CSRF token (stale, or sent from another site)."""

    default_code = RefusalCode.CSRF_TOKEN_MISMATCH


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleSession:
    """What the session cookie says: the CSRF token, and once signed in the bearer token
    and the secret naming the server-side session."""

    csrf_token: str = field(repr=False)
    token: str | None = field(default=None, repr=False)
    session_secret: str | None = field(default=None, repr=False)
    issued_at: datetime

    @property
    def signed_in(self) -> bool:
        return self.token is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """A one-line message for the next page (``kind``: ``success`` or ``error``)."""

    kind: str
    text: str


class SessionSeal:
    """Seals and opens the console's cookies with the installation's secret box."""

    def __init__(self, box: SecretBox, randomness: Randomness) -> None:
        self._box = box
        self._randomness = randomness

    def new_session(
        self, *, at: datetime, token: str | None = None, session_secret: str | None = None
    ) -> ConsoleSession:
        """A fresh session with its own CSRF token (signed in when ``token`` is given)."""
        if (token is None) != (session_secret is None):
            raise ValueError("a signed-in session needs both a token and a session secret")
        return ConsoleSession(
            csrf_token=self._randomness.token_urlsafe(_CSRF_BYTES),
            token=token,
            session_secret=session_secret,
            issued_at=at,
        )

    def seal(self, session: ConsoleSession) -> str:
        document = {
            "csrf": session.csrf_token,
            "token": session.token,
            "sid": session.session_secret,
            "iat": session.issued_at.isoformat(),
        }
        return self._seal(json.dumps(document).encode(), _SESSION_AAD)

    def open(self, cookie: str | None, *, at: datetime) -> ConsoleSession | None:
        """The session in ``cookie``; None when absent, tampered with, foreign or expired."""
        document = self._open(cookie, _SESSION_AAD)
        if document is None:
            return None
        csrf_token, token, issued = document.get("csrf"), document.get("token"), document.get("iat")
        session_secret = document.get("sid")
        if not isinstance(csrf_token, str) or not isinstance(issued, str):
            return None
        if not (token is None or isinstance(token, str)):
            return None
        if not (session_secret is None or isinstance(session_secret, str)):
            return None
        if (token is None) != (session_secret is None):  # signed in only with a server session
            return None
        try:
            issued_at = datetime.fromisoformat(issued)
        except ValueError:
            return None
        if issued_at.tzinfo is None or not issued_at <= at < issued_at + SESSION_LIFETIME:
            return None
        return ConsoleSession(
            csrf_token=csrf_token, token=token, session_secret=session_secret, issued_at=issued_at
        )

    def seal_notice(self, notice: Notice) -> str:
        text = notice.text[:MAX_NOTICE_CHARS]
        return self._seal(json.dumps({"kind": notice.kind, "text": text}).encode(), _NOTICE_AAD)

    def open_notice(self, cookie: str | None) -> Notice | None:
        document = self._open(cookie, _NOTICE_AAD)
        if document is None:
            return None
        kind, text = document.get("kind"), document.get("text")
        if kind not in ("success", "error") or not isinstance(text, str):
            return None
        return Notice(kind=kind, text=text)

    def _seal(self, plaintext: bytes, aad: bytes) -> str:
        envelope = self._box.encrypt(plaintext, aad=aad)
        return base64.urlsafe_b64encode(envelope).decode("ascii").rstrip("=")

    def _open(self, cookie: str | None, aad: bytes) -> dict[str, object] | None:
        if not cookie or len(cookie) > MAX_COOKIE_CHARS:
            return None
        try:
            envelope = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
            document = json.loads(self._box.decrypt(envelope, aad=aad))
        except (SecretError, binascii.Error, ValueError, UnicodeDecodeError):
            return None
        return document if isinstance(document, dict) else None


def check_csrf(session: ConsoleSession, submitted: str | None) -> None:
    """Refuse a POST whose form does not repeat the session's CSRF token."""
    if not submitted or not hmac.compare_digest(
        submitted.encode("utf-8", "replace"), session.csrf_token.encode()
    ):
        raise CsrfRefused(
            "This form was not sent from this console session (it is stale, or came from "
            "another site). Reload the page and try again."
        )


def set_session_cookie(response: Response, request: Request, value: str) -> None:
    """HttpOnly (no script reads it), SameSite=Strict, Secure whenever served over https."""
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def set_notice_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        NOTICE_COOKIE,
        value,
        max_age=120,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_notice_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        NOTICE_COOKIE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
