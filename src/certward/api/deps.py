"""What routes receive: the context, the caller's principal, and parsed multipart uploads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from certward.authorization import Principal, hash_token
from certward.errors import (
    InvalidRequest,
    MalformedRequest,
    NotFound,
    RefusalCode,
    TooLarge,
    UnsupportedMediaType,
)
from certward.services import tokens
from certward.services.context import Context
from certward.services.uploads import Upload

MAX_PASSWORD_BYTES = 1024
MAX_TEXT_FIELD_BYTES = 8 * 1024


def url_without_nul(request: Request) -> None:
    """Nothing is named with a NUL character (PostgreSQL text cannot even hold one)."""
    if any("\x00" in value for value in request.path_params.values()):
        raise NotFound(
            "Nothing here has a name containing a NUL character.", code=RefusalCode.NOT_FOUND
        )
    if any("\x00" in value for _, value in request.query_params.multi_items()):
        raise InvalidRequest(
            "Query parameters cannot contain NUL characters.", code=RefusalCode.INVALID_REQUEST
        )


async def context(request: Request) -> Context:
    ctx: Context = request.app.state.context
    return ctx


ContextDep = Annotated[Context, Depends(context)]

PRINCIPAL_CACHE_SECONDS = 2.0
_PRINCIPAL_CACHE_SIZE = 1024


class PrincipalCache:
    """Recently authenticated tokens (by hash), so a burst of requests costs one lookup.

    Entries live ``PRINCIPAL_CACHE_SECONDS``; revoking through this process drops the
    entry at once, so a revoked token stops working here immediately and on other
    replicas within that time.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, token: str, *, now: float) -> Principal | None:
        entry = self._entries.get(hash_token(token))
        if entry is None or entry[0] < now:
            return None
        return entry[1]

    def put(self, token: str, principal: Principal, *, now: float) -> None:
        if len(self._entries) >= _PRINCIPAL_CACHE_SIZE:
            self._entries.clear()
        self._entries[hash_token(token)] = (now + PRINCIPAL_CACHE_SECONDS, principal)

    def forget(self, token_id: str) -> None:
        for key, (_, cached) in list(self._entries.items()):
            if cached.token_id == token_id:
                self._entries.pop(key, None)


async def principal(request: Request, ctx: ContextDep) -> Principal:
    """The principal of the ``Authorization: Bearer`` token; 401 without a valid one."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    token = value.strip() if scheme.lower() == "bearer" else None
    cache: PrincipalCache = request.app.state.principals
    now = ctx.clock.monotonic()
    if token:
        cached = cache.get(token, now=now)
        if cached is not None:
            return cached
    found = await run_in_threadpool(tokens.authenticate, ctx, token)
    if token:
        cache.put(token, found, now=now)
    return found


PrincipalDep = Annotated[Principal, Depends(principal)]


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadForm:
    """A parsed multipart upload: files by field, text fields (repeatable ones as lists)."""

    files: dict[str, Upload]
    fields: dict[str, list[str]]
    password: bytes | None = field(default=None, repr=False)

    def text(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None


async def read_upload_form(
    request: Request,
    ctx: Context,
    *,
    files: frozenset[str],
    fields: frozenset[str],
    repeatable: frozenset[str] = frozenset(),
    required_files: frozenset[str] = frozenset({"file"}),
) -> UploadForm:
    """Parse ``multipart/form-data`` with caps; unknown fields and oversize files refused."""
    content_type = request.headers.get("content-type", "")
    media_type, options = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        raise UnsupportedMediaType(
            "Uploads are multipart/form-data, with the certificate in the field 'file'."
        )
    boundary = options.get(b"boundary", b"")
    if not boundary:
        raise MalformedRequest("The multipart body cannot be read: it names no boundary.")
    # Read whole (the body-size wall caps it) to refuse a truncated body: without its
    # closing delimiter, a part may be cut anywhere and the parser would not notice.
    body = await request.body()
    close = b"--" + boundary + b"--"
    if not (body.startswith(close) or b"\r\n" + close in body):
        raise MalformedRequest(
            "The multipart body is truncated or uses another boundary than its Content-Type "
            "names: its closing delimiter is missing."
        )
    try:
        form = await request.form(
            max_files=len(files) + 1, max_fields=200, max_part_size=MAX_TEXT_FIELD_BYTES
        )
    except MultiPartException as exc:
        raise MalformedRequest(f"The multipart body cannot be read: {exc.message}") from exc
    except HTTPException as exc:  # Starlette's wrapping of MultiPartException inside an app
        raise MalformedRequest(f"The multipart body cannot be read: {exc.detail}") from exc
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise MalformedRequest("The multipart body cannot be read.") from exc
    try:
        return await _collect(form.multi_items(), ctx, files, fields, repeatable, required_files)
    finally:
        await form.close()


async def _collect(
    items: list[tuple[str, str | UploadFile]],
    ctx: Context,
    files: frozenset[str],
    fields: frozenset[str],
    repeatable: frozenset[str],
    required_files: frozenset[str],
) -> UploadForm:
    limit = ctx.settings.max_upload_bytes
    uploads: dict[str, Upload] = {}
    texts: dict[str, list[str]] = {}
    password: bytes | None = None
    for name, value in items:
        if name == "password" and "password" in fields:
            if password is not None:
                raise InvalidRequest(
                    "The field 'password' is given twice.", code=RefusalCode.DUPLICATE_FIELD
                )
            password = await _password(value)
        elif name in files:
            if not isinstance(value, UploadFile):
                raise InvalidRequest(
                    f"The field {name!r} must be a file upload.", code=RefusalCode.INVALID_FIELD
                )
            if name in uploads:
                raise InvalidRequest(
                    f"The file {name!r} is given twice.", code=RefusalCode.DUPLICATE_FIELD
                )
            data = await value.read(limit + 1)
            if len(data) > limit:
                raise TooLarge(
                    f"The file {name!r} is larger than the allowed {limit:,} bytes; certificate "
                    "material is never that large."
                )
            uploads[name] = Upload(filename=value.filename or name, data=data)
        elif name in fields:
            if isinstance(value, UploadFile):
                raise InvalidRequest(
                    f"The field {name!r} must be text.", code=RefusalCode.INVALID_FIELD
                )
            if "\x00" in value:
                raise InvalidRequest(
                    f"The field {name!r} contains a NUL character.", code=RefusalCode.INVALID_FIELD
                )
            if name in texts and name not in repeatable:
                raise InvalidRequest(
                    f"The field {name!r} is given twice.", code=RefusalCode.DUPLICATE_FIELD
                )
            texts.setdefault(name, []).append(value)
        else:
            raise InvalidRequest(f"Unknown field {name!r}.", code=RefusalCode.UNKNOWN_FIELD)
    for name in required_files - uploads.keys():
        raise InvalidRequest(f"The file {name!r} is required.", code=RefusalCode.MISSING_FIELD)
    return UploadForm(files=uploads, fields=texts, password=password)


async def _password(value: str | UploadFile) -> bytes:
    if isinstance(value, UploadFile):
        data = await value.read(MAX_PASSWORD_BYTES + 1)
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
    else:
        data = value.encode("utf-8")
    if len(data) > MAX_PASSWORD_BYTES:
        raise InvalidRequest(
            "The password is longer than 1024 bytes.", code=RefusalCode.INVALID_FIELD
        )
    return data
