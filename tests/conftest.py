"""Shared fixtures: external tools, OpenSSL-made material and Java's PKCS12 loader.

A test that needs a program either asks for a fixture below (``openssl``,
``java_tools``, ``openssl_cli``, ``pkcs12_check``, ``postgresql_url``), calls
``require_tool("name")`` (also a fixture), or carries ``@pytest.mark.external("name")``.
All three skip when the program is missing, and fail when ``CI=true``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.material import tools
from tests.material.java import Pkcs12Check
from tests.material.openssl_cli import OpenSSLCli


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.external("openssl", "java")`` requires each named tool."""
    for marker in item.iter_markers(name="external"):
        for name in marker.args:
            tools.require_tool(name)


@pytest.fixture(name="require_tool", scope="session")
def require_tool_fixture() -> Callable[[str], str]:
    """``require_tool("nginx")`` -> absolute path; skip, or fail when ``CI=true``."""
    return tools.require_tool


@pytest.fixture(scope="session")
def openssl() -> str:
    """Absolute path of ``openssl``."""
    return tools.require_tool("openssl")


@pytest.fixture(scope="session")
def java_tools() -> tools.JavaTools:
    """Absolute paths of ``java``, ``javac`` and ``keytool``."""
    return tools.require_java_tools()


@pytest.fixture
def openssl_cli(openssl: str, tmp_path: Path) -> OpenSSLCli:
    """The ``openssl`` command, working under this test's ``tmp_path``."""
    return OpenSSLCli(executable=openssl, workdir=tmp_path / "openssl")


@pytest.fixture(scope="session")
def pkcs12_check(
    java_tools: tools.JavaTools, tmp_path_factory: pytest.TempPathFactory
) -> Pkcs12Check:
    """``tests/java/Pkcs12Check.java``, compiled once per session."""
    return Pkcs12Check.compile(java_tools, tmp_path_factory.mktemp("pkcs12-check"))


@pytest.fixture(scope="session")
def postgresql_url() -> str:
    """``CERTWARD_TEST_DATABASE_URL`` once PostgreSQL answers on 127.0.0.1:5432."""
    return tools.require_postgresql()


@pytest.fixture
def nginx_may_enter_tmp_path(tmp_path: Path) -> Path:
    """``tmp_path``, traversable by every user when the tests run as root.

    nginx's workers read site certificates at every handshake; a master started as
    root runs them as ``nobody``, who cannot enter pytest's 0700 directories (an
    operator's directory must be reachable the same way, which the nginx agent checks).
    """
    if os.geteuid() == 0:
        for directory in (tmp_path, *tmp_path.parents):
            mode = directory.stat().st_mode
            if not mode & stat.S_IXOTH:
                directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            if directory.name.startswith("pytest-of-"):
                break
    return tmp_path
