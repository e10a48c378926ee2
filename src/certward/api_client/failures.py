"""The three ways a request to the API fails: unreachable, refused (a problem), or answered
with something certward would not send. Messages never hold a password or a token."""

from __future__ import annotations

import httpx

from certward.api_client.payloads import JsonObject
from certward.errors import CertwardError, RefusalCode

_STANDARD_PROBLEM_MEMBERS = frozenset({"type", "title", "status", "code", "detail", "problems"})


class ApiClientError(CertwardError):
    """A request to the certward API did not succeed."""


class ServerUnreachable(ApiClientError):
    """Nothing answered at ``server``: the message is one line saying why."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"certward server unreachable at {server} ({reason})")
        self.server = server
        self.reason = reason


class UnexpectedAnswer(ApiClientError):
    """A success answer that is not what the certward API sends (wrong URL, a proxy)."""


class ApiProblem(ApiClientError):
    """The API refused: an ``application/problem+json`` answer (or a stand-in for one)."""

    def __init__(self, status: int, body: JsonObject) -> None:
        self.status = status
        self.body = body
        self.code = str(body.get("code") or RefusalCode.HTTP_ERROR)
        self.title = str(body.get("title") or f"HTTP {status}")
        self.detail = str(body.get("detail") or "")
        problems = body.get("problems")
        self.problems: tuple[JsonObject, ...] = tuple(
            p for p in (problems if isinstance(problems, list) else []) if isinstance(p, dict)
        )
        super().__init__(f"{status} {self.code}: {self.detail or self.title}")

    @property
    def extra(self) -> JsonObject:
        """Members beyond RFC 9457's and certward's own, e.g. ``conflicts`` or ``domains``."""
        return {k: v for k, v in self.body.items() if k not in _STANDARD_PROBLEM_MEMBERS}

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiProblem:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # Not certward speaking (a proxy, a load balancer): say what came back.
            text = " ".join(response.text.split())[:200]
            body = {
                "code": RefusalCode.HTTP_ERROR,
                "title": response.reason_phrase or f"HTTP {response.status_code}",
                "detail": text or "The answer has no body.",
            }
        return cls(response.status_code, body)
