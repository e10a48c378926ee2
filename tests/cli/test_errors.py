"""How the API client commands fail: one clear message, and the documented exit code."""

from __future__ import annotations

import socket

import httpx
import pytest

from certward.api_client import ApiClient, ApiProblem, UnexpectedAnswer, normalize_server
from tests.cli.conftest import Cli


def unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_an_unreachable_server_is_one_line_and_exit_1(cli: Cli) -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    result = cli("app", "list", "--server", url)
    assert result.code == 1
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line == f"Error: certward server unreachable at {url} (connection refused)"


def test_a_missing_token_is_a_usage_error(cli: Cli) -> None:
    result = cli("app", "list", token="")
    assert result.code == 2
    assert "--token or CERTWARD_TOKEN" in result.stderr


def test_usage_errors_exit_2(cli: Cli) -> None:
    assert cli("app", "create", "x", "--plan", "enterprise").code == 2
    assert cli("rollback", "--app", "a", "--env", "e", "--to", "0").code == 2
    assert cli("client-cert", "add", "--app", "a", "--env", "e", "--file", "/nonexistent").code == 2


def test_refusals_show_status_code_and_detail_or_the_problem_json(cli: Cli) -> None:
    text = cli.refused("app", "show", "nowhere")
    assert text.stderr.splitlines()[0] == "Refused (404 app-not-found): Not found"
    as_json = cli.refused("app", "show", "nowhere", "--json")
    problem = as_json.problem()
    assert problem["code"] == "app-not-found"
    assert problem["status"] == 404

    duplicate = cli.ok("app", "create", "twice")
    assert duplicate.stderr == ""
    assert "409 app-exists" in cli.refused("app", "create", "twice").stderr


def test_the_server_url_may_carry_the_api_prefix_or_a_trailing_slash(cli: Cli) -> None:
    assert normalize_server("http://h:8700/api/v1/") == "http://h:8700"
    cli.ok("app", "list", "--server", cli.server.url + "/api/v1/")


def test_an_answer_that_is_not_certward_is_named_as_such() -> None:
    def not_certward(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/apps"):
            return httpx.Response(200, text="<html>welcome</html>")
        return httpx.Response(502, text="<html><body>Bad gateway</body></html>")

    with ApiClient("http://proxy.test", "cw_x", transport=httpx.MockTransport(not_certward)) as api:
        with pytest.raises(UnexpectedAnswer, match="is this certward's URL"):
            api.list_apps()
        with pytest.raises(ApiProblem) as refused:
            api.get_app("shop")
    assert refused.value.status == 502
    assert refused.value.code == "http-error"
    assert "Bad gateway" in refused.value.detail


def test_path_names_are_escaped_whole() -> None:
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json={})

    with ApiClient("http://certward.test", "cw_x", transport=httpx.MockTransport(record)) as api:
        api.get_app("../tokens")
        api.get_app("a?b#c")
    assert seen == ["/api/v1/apps/..%2Ftokens", "/api/v1/apps/a%3Fb%23c"]
