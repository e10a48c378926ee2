"""Every API operation has an `ApiClient` method and every method a ``certward`` command.

The client's requests name the API's path templates literally (``self._request("GET",
"/api/v1/apps/{app}", ...)``), or as the ``collection``/``item`` of a range profile's
`RangeProfilePaths` (``self._request("GET", paths.item, ...)``: one such request for
each kind in ``RANGE_PROFILES``), so the OpenAPI document of ``create_app`` can be
checked against them without running anything: a new route without a command fails here.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
import typer
from typer.core import TyperGroup

from certward import api_client
from certward.api_client import RANGE_PROFILES, ApiClient, RangeProfilePaths
from certward.cli import remote as cli_remote
from certward.cli.app import app
from certward.cli.remote.range_profiles import RangeProfileCommands
from tests.cli.conftest import LiveServer

SOURCES = sorted(Path(api_client.__file__).parent.glob("*.py"))
NOT_FOR_PEOPLE = {
    # Answered for the ACME CA validating a name (HTTP-01), never called by a person.
    ("GET", "/.well-known/acme-challenge/{token}"),
}


def openapi(server: LiveServer) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{server.url}/api/v1/openapi.json", timeout=30).json()
    return document


def templates(node: ast.expr) -> list[str]:
    """The path templates a request's second argument names: a literal, or a property of
    the range profiles' `RangeProfilePaths` (then that path of every kind)."""
    if isinstance(node, ast.Attribute) and isinstance(
        getattr(RangeProfilePaths, node.attr, None), property
    ):
        return [getattr(paths, node.attr) for paths in RANGE_PROFILES]
    template = ast.literal_eval(node)
    assert isinstance(template, str), ast.unparse(node)
    return [template]


def requests_in_client() -> dict[tuple[str, str], str]:
    """``(method, path template)`` of every ``self._request`` call -> the method making it.

    `ApiClient` inherits its methods from one class per part of the API, each in a module
    of the ``certward.api_client`` package, so every class of the package is read."""
    found: dict[tuple[str, str], str] = {}
    functions = [
        function
        for source in SOURCES
        for node in ast.parse(source.read_text()).body
        if isinstance(node, ast.ClassDef)
        for function in node.body
        if isinstance(function, ast.FunctionDef)
    ]
    for function in functions:
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "_request"
                and function.name != "_request"
            ):
                method = ast.literal_eval(node.args[0])
                for template in templates(node.args[1]):
                    found[(method, template)] = function.name
    return found


def test_every_operation_of_the_openapi_document_has_a_client_method(
    live_server: LiveServer,
) -> None:
    spec = openapi(live_server)
    operations = {
        (method.upper(), path) for path, by_method in spec["paths"].items() for method in by_method
    }
    covered = requests_in_client()
    assert operations - covered.keys() - NOT_FOR_PEOPLE == set(), "operations without a method"
    assert covered.keys() - operations == set(), "ApiClient requests no route answers"


def test_every_client_method_is_used_by_a_command() -> None:
    public = {
        name
        for name, member in inspect.getmembers(ApiClient, inspect.isfunction)
        if not name.startswith("_") and name != "close"
    }
    used = {
        node.attr
        for module in sorted(Path(cli_remote.__file__).parent.glob("*.py"))
        for node in ast.walk(ast.parse(module.read_text()))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "api"
    }
    assert public - used == set()


def test_every_kind_of_range_profile_has_its_commands() -> None:
    """The range-profile methods serve each kind of ``RANGE_PROFILES``: every kind has a
    group of commands, so each kind's requests are made by a command."""
    described = {
        value.paths
        for module in sorted(Path(cli_remote.__file__).parent.glob("*.py"))
        for value in vars(importlib.import_module(f"certward.cli.remote.{module.stem}")).values()
        if isinstance(value, RangeProfileCommands)
    }
    assert described == set(RANGE_PROFILES)


def test_the_command_groups_are_registered_in_certward() -> None:
    command = typer.main.get_command(app)
    assert isinstance(command, TyperGroup)
    for name in (
        "app", "env", "client-cert", "authority", "domain", "tls-cert", "access-profile",
        "ip-deny-profile", "path-rules", "changes", "restart", "rollback", "versions",
        "inventory", "token", "audit", "platform-ca", "metrics", "health",
    ):  # fmt: skip
        assert name in command.commands, name
    assert "inspect" in command.commands  # the operator commands stay


def test_the_inventory_kinds_are_the_apis(live_server: LiveServer) -> None:
    """The CLI spells the kinds out itself (importing them would load SQLAlchemy)."""
    kinds = openapi(live_server)["components"]["schemas"]["CertificateKind"]["enum"]
    assert issubclass(cli_remote.InventoryKind, StrEnum)
    assert [k.value for k in cli_remote.InventoryKind] == kinds
