"""A certward REST API in process, on SQLite and on PostgreSQL, with helpers to drive it.

The ``api`` fixture opens a fresh installation per test (its own data directory and
master key; for PostgreSQL its own schema, dropped afterwards) on a `FixedClock` set
to the factory's ``NOW``, and yields an `Api`::

    def test_something(api: Api) -> None:
        api.create_app("shop")                        # licensed by default
        api.create_environment("shop", "prod")
        viewer = api.create_token("viewer", app="shop")
        response = api.client.get(api.env_url("shop", "prod", "/changes"), headers=viewer.headers)
        api.clock.advance(timedelta(days=400))       # move time for the next request
        with api.platform.context.database.reading() as session: ...   # look at the rows

Every test that takes ``api`` runs once per database (ids ``[sqlite]`` and
``[postgresql]``); ``@pytest.mark.parametrize("api", ["sqlite"], indirect=True)``
narrows a test to one. A module's own ``api_environ`` fixture adds ``CERTWARD_*``
variables (e.g. an ACME directory, or upload rate limits: by default they are lifted,
as the clock does not move). PostgreSQL comes from
``tests.material.tools.require_postgresql``: without a server the PostgreSQL variant
is skipped, or fails when ``CI=true``.

Every response the client receives is kept in ``api.responses`` (in order), so a test
can check a whole conversation at once, e.g. that no response ever carried a secret.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from certward.api import create_app
from certward.clock import FixedClock
from certward.platform import Platform, open_platform
from certward.services.context import Context
from certward.settings import Settings
from tests.material import tools
from tests.material.factory import NOW, IssuedCert, KeyType, TestCA

ADMIN_TOKEN = "cw_test-admin-token-0123456789abcdef"  # a test credential
API = "/api/v1"
DEFAULT_UPSTREAM = "http://{app}.backend.test:8080"
"""An app's own backend: a backend belongs to one app, so each app gets its own name."""
DATABASES = ("sqlite", "postgresql")
# The clock stands still in these tests: upload rate limits would never refill. Tests of
# the limits themselves set their own rates through ``api_environ``.
UNLIMITED_UPLOADS = {
    "CERTWARD_UPLOAD_RATE": "1000000/s",
    "CERTWARD_FAILED_UPLOAD_RATE": "1000000/s",
}


def bearer(token: str) -> dict[str, str]:
    """``Authorization`` headers for a token value."""
    return {"Authorization": f"Bearer {token}"}


def expect(response: httpx.Response, status: int) -> Any:
    """The JSON body of ``response`` after checking its status (the body shows on failure).

    A non-JSON body (a runtime bundle) comes back as bytes.
    """
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path} -> {response.status_code}, "
        f"expected {status}: {response.text}"
    )
    if not response.content:
        return None
    if "json" not in response.headers.get("content-type", ""):
        return response.content
    return response.json()


@dataclass(frozen=True, slots=True, kw_only=True)
class Token:
    """A token created through the API: its id, its value and the headers carrying it."""

    id: str
    value: str = field(repr=False)
    role: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.value)


@dataclass(slots=True, kw_only=True)
class Api:
    """One running certward API (in process) and what a test needs around it.

    ``client`` sends requests (a Starlette ``TestClient``: server exceptions are raised in
    the test, so an unexpected 500 cannot go unnoticed); ``app`` is the FastAPI
    application (`api_routes` lists its routes). Helpers that create things use the
    admin token unless given ``headers`` and assert the documented status.
    """

    client: TestClient = field(repr=False)
    app: FastAPI = field(repr=False)
    admin_headers: dict[str, str] = field(repr=False)
    clock: FixedClock
    settings: Settings
    platform: Platform = field(repr=False)
    database: str  # "sqlite" or "postgresql"
    responses: list[httpx.Response] = field(default_factory=list, repr=False)

    @property
    def context(self) -> Context:
        return self.platform.context

    # -- URLs ------------------------------------------------------------------------------

    @staticmethod
    def app_url(app: str, suffix: str = "") -> str:
        return f"{API}/apps/{app}{suffix}"

    @staticmethod
    def env_url(app: str, env: str, suffix: str = "") -> str:
        """``/api/v1/apps/{app}/environments/{env}`` followed by ``suffix``."""
        return f"{API}/apps/{app}/environments/{env}{suffix}"

    # -- apps, environments, tokens ----------------------------------------------------------

    def create_app(
        self, name: str, plan: str = "licensed", *, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        response = self.client.post(
            f"{API}/apps", json={"name": name, "plan": plan}, headers=headers or self.admin_headers
        )
        body: dict[str, Any] = expect(response, 201)
        return body

    def create_environment(
        self,
        app: str,
        name: str,
        upstream: str = DEFAULT_UPSTREAM,
        *,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        response = self.client.post(
            self.app_url(app, "/environments"),
            json={"name": name, "upstream": upstream.format(app=app)},
            headers=headers or self.admin_headers,
        )
        body: dict[str, Any] = expect(response, 201)
        return body

    def create_app_and_environment(
        self, app: str, env: str, plan: str = "licensed"
    ) -> dict[str, Any]:
        """An app with one environment; returns the environment."""
        self.create_app(app, plan)
        return self.create_environment(app, env)

    def create_token(
        self,
        role: str,
        *,
        app: str | None = None,
        environment: str | None = None,
        description: str = "",
        headers: dict[str, str] | None = None,
    ) -> Token:
        """A token of ``role`` (``admin``, ``member``, ``viewer``, ``runtime``) via the API."""
        response = self.client.post(
            f"{API}/tokens",
            json={"role": role, "app": app, "environment": environment, "description": description},
            headers=headers or self.admin_headers,
        )
        body = expect(response, 201)
        return Token(id=body["id"], value=body["token"], role=body["role"])

    # -- outgoing material -------------------------------------------------------------------

    def upload_client_certificate(
        self,
        app: str,
        env: str,
        file: bytes,
        *,
        filename: str = "client.p12",
        password: str | bytes | None = None,
        pins: Sequence[str] = (),
        call_name: str | None = None,
        description: str | None = None,
        key: bytes | None = None,
        chain: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST the multipart upload; ``pins`` go as repeated fields. Status not checked."""
        files: list[tuple[str, tuple[str, bytes]]] = [("file", (filename, file))]
        if key is not None:
            files.append(("key", ("key.pem", key)))
        if chain is not None:
            files.append(("chain", ("chain.pem", chain)))
        fields: list[tuple[str, str | bytes]] = [("pins", pin) for pin in pins]
        if password is not None:
            fields.append(("password", password))
        if call_name is not None:
            fields.append(("call_name", call_name))
        if description is not None:
            fields.append(("description", description))
        return self.client.post(
            self.env_url(app, env, "/client-certificates"),
            files=files,
            data=_form(fields),
            headers=headers or self.admin_headers,
        )

    def upload_authority(
        self, app: str, env: str, pem: bytes, *, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST CA certificates (PEM) as the multipart field ``file``. Status not checked."""
        return self.client.post(
            self.env_url(app, env, "/certificate-authorities"),
            files={"file": ("ca.pem", pem)},
            headers=headers or self.admin_headers,
        )

    def restart(self, app: str, env: str, *, headers: dict[str, str] | None = None) -> Any:
        """POST .../restart and return the applied version (asserts 200)."""
        return expect(
            self.client.post(
                self.env_url(app, env, "/restart"), headers=headers or self.admin_headers
            ),
            200,
        )

    def changes(self, app: str, env: str) -> list[dict[str, Any]]:
        """The pending changes of an environment (as admin)."""
        body = expect(
            self.client.get(self.env_url(app, env, "/changes"), headers=self.admin_headers), 200
        )
        changes: list[dict[str, Any]] = body["changes"]
        return changes


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiRoute:
    """A route of the application as a client sees it: its full path and its `APIRoute`."""

    path: str
    route: APIRoute

    @property
    def methods(self) -> list[str]:
        return sorted(self.route.methods)

    @property
    def parameters(self) -> list[str]:
        """Names of the path parameters, in order."""
        return [m.group(1) for m in _PATH_PARAMETER.finditer(self.path)]

    def fill(self, values: dict[str, str]) -> str:
        """The path with each ``{parameter}`` replaced; `KeyError` names a missing one."""
        return _PATH_PARAMETER.sub(lambda m: values[m.group(1)], self.path)


_PATH_PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")


def api_routes(app: FastAPI) -> list[ApiRoute]:
    """Every FastAPI route of ``app`` with its full path, however routers were included."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    if iterate is None:  # FastAPI that copies included routes into app.routes
        return [ApiRoute(path=r.path, route=r) for r in app.routes if isinstance(r, APIRoute)]
    return [
        ApiRoute(path=context.path, route=context.original_route)
        for context in iterate(app.routes)
        if isinstance(context.original_route, APIRoute)
    ]


def _form(fields: Iterable[tuple[str, str | bytes]]) -> dict[str, list[str | bytes]]:
    """Form fields for httpx: a repeated name becomes a list (sent as repeated parts)."""
    form: dict[str, list[str | bytes]] = {}
    for name, value in fields:
        form.setdefault(name, []).append(value)
    return form


# -- material -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def client_ca() -> TestCA:
    """A root CA issuing client certificates (one per session: EC keys, cheap)."""
    return TestCA.root(name="certward API test client CA")


def client_leaf(
    ca: TestCA, common_name: str, *, key_type: KeyType | str = KeyType.EC_P256, **options: Any
) -> IssuedCert:
    """A client certificate (``clientAuth``) issued by ``ca``; options go to ``issue_leaf``."""
    return ca.issue_leaf(common_name, eku=["clientAuth"], key_type=key_type, **options)


# -- the installation -----------------------------------------------------------------------


@pytest.fixture
def api_environ() -> dict[str, str]:
    """Extra ``CERTWARD_*`` variables for the ``api`` fixture; a test module overrides it."""
    return {}


@pytest.fixture(params=DATABASES)
def api(
    request: pytest.FixtureRequest, tmp_path: Path, api_environ: dict[str, str]
) -> Iterator[Api]:
    """A fresh certward API on each database (see the module docstring)."""
    kind: str = request.param
    data_dir = tmp_path / "certward-data"
    environ = {
        "CERTWARD_DATA_DIR": str(data_dir),
        "CERTWARD_ADMIN_TOKEN": ADMIN_TOKEN,
        **UNLIMITED_UPLOADS,
        **api_environ,
    }
    with _database_url(kind) as url:
        if url is not None:
            environ["CERTWARD_DATABASE_URL"] = url
        settings = Settings.from_env(environ)
        clock = FixedClock(NOW)
        platform = open_platform(settings, clock=clock)
        try:
            application = create_app(platform.context)
            harness = Api(
                client=TestClient(application, base_url="http://certward.test"),
                app=application,
                admin_headers=bearer(ADMIN_TOKEN),
                clock=clock,
                settings=settings,
                platform=platform,
                database=kind,
            )
            harness.client.event_hooks = {"request": [], "response": [_keep(harness.responses)]}
            with harness.client:
                yield harness
        finally:
            platform.close()


def _keep(responses: list[httpx.Response]) -> Any:
    def hook(response: httpx.Response) -> None:
        response.read()
        responses.append(response)

    return hook


@contextmanager
def _database_url(kind: str) -> Iterator[str | None]:
    """None for SQLite (the data directory's file); for PostgreSQL a URL into a new schema."""
    if kind == "sqlite":
        yield None
        return
    base = make_url(tools.require_postgresql()).set(drivername="postgresql+psycopg")
    schema = f"certward_api_{secrets.token_hex(6)}"
    admin = create_engine(base, connect_args={"connect_timeout": 5})
    try:
        try:
            with admin.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            message = f"PostgreSQL at {base.render_as_string()} refused a connection: {reason}"
            if tools.in_ci():
                pytest.fail(f"{message}. CI=true, so this fails the test.", pytrace=False)
            pytest.skip(message)
        try:
            url = base.update_query_dict({"options": f"-csearch_path={schema}"})
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()
