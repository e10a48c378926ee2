"""Every error as ``application/problem+json`` (RFC 9457), with a stable ``code``.

Judged material adds ``problems``: ``[{code, severity, message}]``. Nothing secret is
ever echoed: validation errors name the field, never the value sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from certward.errors import Refusal, RefusalCode, ServiceBusy, TooManyRequests
from certward.pki.problems import Problem

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("certward.api")

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}

_HTTP_CODES = {
    400: RefusalCode.MALFORMED_REQUEST,  # e.g. a JSON body that cannot be parsed
    404: RefusalCode.NOT_FOUND,
    405: RefusalCode.METHOD_NOT_ALLOWED,
    413: RefusalCode.TOO_LARGE,
    415: RefusalCode.UNSUPPORTED_MEDIA_TYPE,
}


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    problems: Iterable[Problem | dict[str, str]] = (),
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:certward:problem:{code}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail,
        "problems": [p.to_dict() if isinstance(p, Problem) else p for p in problems],
    }
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into a problem response."""

    @app.exception_handler(Refusal)
    async def refusal(_: Request, exc: Refusal) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if isinstance(exc, TooManyRequests | ServiceBusy):
            headers = {"Retry-After": str(exc.retry_after)}
        return problem_response(
            exc.status,
            exc.code,
            exc.message,
            problems=exc.problems,
            extra=exc.detail,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "code": RefusalCode.INVALID_FIELD,
                "severity": "error",
                "message": f"{_location(error.get('loc', ()))}: {error.get('msg', 'invalid')}.",
            }
            for error in exc.errors()
        ]
        return problem_response(
            422,
            RefusalCode.INVALID_REQUEST,
            "The request does not match what this endpoint takes.",
            problems=problems,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, RefusalCode.HTTP_ERROR)
        headers = dict(exc.headers) if exc.headers else None
        return problem_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return problem_response(
            500, RefusalCode.INTERNAL_ERROR, "certward failed unexpectedly; see its log."
        )


def _location(loc: Iterable[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "request"
