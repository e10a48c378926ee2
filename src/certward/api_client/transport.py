"""The client's HTTP transport: one ``httpx.Client`` per server and token, requests to the
API's path templates (each name escaped whole), answers decoded or turned into failures."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar
from urllib.parse import quote

import httpx

from certward import __version__
from certward.api_client.failures import ApiProblem, ServerUnreachable, UnexpectedAnswer
from certward.api_client.payloads import Download, JsonObject

DEFAULT_SERVER: Final = "http://127.0.0.1:8700"
API_PREFIX: Final = "/api/v1"
DEFAULT_TIMEOUT_SECONDS: Final = 60.0
PAGE_SIZE: Final = 1000  # the largest page the client-certificate listing serves

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
_Json = TypeVar("_Json", dict[str, Any], list[Any])


def normalize_server(server: str) -> str:
    """``server`` without a trailing slash or ``/api/v1``: people paste either form."""
    base = server.strip().rstrip("/")
    if base.endswith(API_PREFIX):
        base = base[: -len(API_PREFIX)]
    return base


class ApiTransport:
    """One certward server and one bearer token over HTTP; a context manager closing its
    connections. The operations of `ApiClient` are built on `_request` and the decoders."""

    def __init__(
        self,
        server: str,
        token: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = normalize_server(server)
        headers = {"User-Agent": f"certward-cli/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # Loading the CA bundle takes a noticeable part of a command's run; a plain-HTTP
        # server never needs it, as redirects (to https or anywhere) are not followed.
        self._http = httpx.Client(
            base_url=self.server,
            headers=headers,
            timeout=timeout,
            transport=transport,
            verify=self.server.lower().startswith("https://"),
            follow_redirects=False,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(
        self,
        method: Method,
        template: str,
        /,
        *,
        params: Mapping[str, str | int | bool | None] | None = None,
        body: Any = None,
        files: Sequence[tuple[str, tuple[str, bytes]]] | None = None,
        fields: Sequence[tuple[str, str]] | None = None,
        **names: str,
    ) -> httpx.Response:
        """Send one request to ``template`` (the API's path, ``{name}`` filled from
        ``names``, each escaped whole so a name cannot reach another path)."""
        path = template.format_map({k: quote(v, safe="") for k, v in names.items()})
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        try:
            if files is not None:
                response = self._http.request(
                    method, path, params=query, files=list(files), data=_form(fields or ())
                )
            elif body is not None:
                response = self._http.request(
                    method,
                    path,
                    params=query,
                    content=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"},
                )
            else:
                response = self._http.request(method, path, params=query)
        except httpx.TimeoutException as exc:
            raise ServerUnreachable(self.server, "no answer in time") from exc
        except httpx.HTTPError as exc:
            raise ServerUnreachable(self.server, _reason(exc)) from exc
        if response.status_code >= 400:
            raise ApiProblem.from_response(response)
        return response

    def _object(self, response: httpx.Response) -> JsonObject:
        body: JsonObject = self._decode_as(response, dict, "an object")
        return body

    def _list(self, response: httpx.Response) -> list[JsonObject]:
        body: list[JsonObject] = self._decode_as(response, list, "a list")
        return body

    def _decode_as(self, response: httpx.Response, kind: type[_Json], what: str) -> _Json:
        """The answer's JSON, which must be ``what`` (a ``kind``), else `UnexpectedAnswer`."""
        body = self._decode(response)
        if not isinstance(body, kind):
            raise UnexpectedAnswer(
                f"{self.server} answered {response.request.url.path} with JSON that is not "
                f"{what}: is this certward's URL?"
            )
        return body

    def _decode(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise UnexpectedAnswer(
                f"{self.server} answered {response.request.url.path} with something other "
                "than JSON: is this certward's URL?"
            ) from exc

    @staticmethod
    def _download(response: httpx.Response) -> Download:
        version = response.headers.get("X-Certward-Version")
        return Download(
            content=response.content,
            media_type=response.headers.get("Content-Type", "application/octet-stream"),
            version=int(version) if version and version.isdigit() else None,
        )


def add_password(
    files: list[tuple[str, tuple[str, bytes]]],
    fields: list[tuple[str, str]],
    password: bytes | None,
) -> None:
    """Send the password exactly: as text when it is UTF-8, else as a file part, which
    the API reads without one trailing line break (so one is added for it to remove)."""
    if password is None:
        return
    try:
        fields.append(("password", password.decode("utf-8")))
    except UnicodeDecodeError:
        files.append(("password", ("password", password + b"\n")))


def _form(fields: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Form fields for httpx: a repeated name (``pins``) becomes repeated parts."""
    form: dict[str, list[str]] = {}
    for name, value in fields:
        form.setdefault(name, []).append(value)
    return form


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _reason(exc: httpx.HTTPError) -> str:
    """One short reason: the innermost OS error's text when there is one."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
