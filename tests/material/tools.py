"""External programs the tests drive, and what to do when one is missing.

``require_tool("openssl")`` returns the program's absolute path. When the program is
missing the test is skipped on a developer machine, but fails when ``CI=true``: CI must
run every test, and the failure names the Debian package to add to ``.ci/run``.

PostgreSQL is a service, not a program: ``require_postgresql()`` returns the database URL
from ``CERTWARD_TEST_DATABASE_URL`` once a TCP connection to 127.0.0.1:5432 succeeds.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from typing import NoReturn

import pytest

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DATABASE_URL_VARIABLE = "CERTWARD_TEST_DATABASE_URL"
POSTGRESQL_ADDRESS = ("127.0.0.1", 5432)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tool:
    """An external program: the names it goes by on PATH and the Debian package with it."""

    name: str
    executables: tuple[str, ...]
    debian_package: str


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(name="openssl", executables=("openssl",), debian_package="openssl"),
        Tool(name="java", executables=("java",), debian_package="openjdk-17-jre-headless"),
        Tool(name="javac", executables=("javac",), debian_package="openjdk-17-jdk-headless"),
        Tool(name="keytool", executables=("keytool",), debian_package="openjdk-17-jre-headless"),
        Tool(name="nginx", executables=("nginx",), debian_package="nginx"),
        Tool(name="pebble", executables=("pebble",), debian_package="pebble"),
        Tool(
            name="pebble-challtestsrv",
            executables=("pebble-challtestsrv",),
            debian_package="pebble",
        ),
        Tool(
            name="chromium",
            executables=("chromium", "chromium-browser"),
            debian_package="chromium",
        ),
        Tool(name="psql", executables=("psql",), debian_package="postgresql-client"),
        Tool(name="curl", executables=("curl",), debian_package="curl"),
        Tool(name="testssl", executables=("testssl",), debian_package="testssl.sh"),
    )
}


@dataclass(frozen=True, slots=True, kw_only=True)
class JavaTools:
    """Absolute paths of the JDK programs the tests use."""

    java: str
    javac: str
    keytool: str


def in_ci() -> bool:
    """True when the ``CI`` environment variable says so (``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def require_tool(name: str) -> str:
    """The absolute path of the external program ``name``; skip (or, in CI, fail) without it.

    ``name`` is a key of ``TOOLS``; ``"postgresql"`` is accepted too and returns the
    database URL (see ``require_postgresql``).
    """
    if name in {"postgresql", "postgres"}:
        return require_postgresql()
    try:
        tool = TOOLS[name]
    except KeyError:
        raise ValueError(f"unknown tool {name!r}; known: {', '.join(TOOLS)}, postgresql") from None
    for executable in tool.executables:
        path = shutil.which(executable)
        if path is not None:
            return os.path.abspath(path)
    _missing(
        f"{tool.name} is not on PATH (looked for {', '.join(tool.executables)}); "
        f"it comes with the Debian package {tool.debian_package!r} "
        f"(apt-get install {tool.debian_package})"
    )


def require_java_tools() -> JavaTools:
    """``java``, ``javac`` and ``keytool``, all three or skip (fail in CI)."""
    return JavaTools(
        java=require_tool("java"),
        javac=require_tool("javac"),
        keytool=require_tool("keytool"),
    )


def require_postgresql() -> str:
    """The test database URL; skip (fail in CI) unless 127.0.0.1:5432 answers.

    ``CERTWARD_TEST_DATABASE_URL`` overrides the default, the server these machines run.
    """
    url = os.environ.get(DATABASE_URL_VARIABLE, "").strip() or DEFAULT_DATABASE_URL
    host, port = POSTGRESQL_ADDRESS
    try:
        with socket.create_connection((host, port), timeout=2):
            pass
    except OSError as exc:
        _missing(
            f"{DATABASE_URL_VARIABLE} is set but nothing accepts connections on "
            f"{host}:{port} ({exc}); PostgreSQL comes with the Debian package 'postgresql' "
            "(apt-get install postgresql) and must be running"
        )
    return url


def _missing(message: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"{message}. CI=true, so a missing tool fails the test.", pytrace=False)
    pytest.skip(message)
