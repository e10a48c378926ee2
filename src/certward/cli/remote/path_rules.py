"""``certward path-rules``: an environment's staged path rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from certward.api_client import JsonObject
from certward.cli.remote.connection import Remote, connected
from certward.cli.remote.local_files import read_json_file
from certward.cli.remote.options import AppOption, EnvOption
from certward.cli.remote.terminal import NOTHING, print_line, print_rows, usage_error

path_rules_group = typer.Typer(
    help="An environment's path rules (staged until restart).", no_args_is_help=True
)


def _rule_text(rule: Any) -> Text:
    if not isinstance(rule, dict):
        return Text(NOTHING, style="dim")
    profile = rule.get("profile")
    return Text(f"{rule.get('rule')}" + (f" {profile}" if profile else ""))


def _print_path_rules(body: JsonObject) -> None:
    staged = body.get("staged") or {}
    applied = body.get("applied") or {}
    prefixes = sorted(set(staged) | set(applied))
    rows = [
        (
            prefix,
            _rule_text(applied.get(prefix)),
            _rule_text(staged.get(prefix)),
            "" if applied.get(prefix) == staged.get(prefix) else Text("pending", style="yellow"),
        )
        for prefix in prefixes
    ]
    print_rows(("prefix", "applied", "staged", ""), rows, empty="No path rules: requests pass.")


@path_rules_group.command("show")
@connected()
def path_rules_show(remote: Remote, app: AppOption, env: EnvOption) -> None:
    """The staged and the applied path rules."""
    with remote.connect() as api:
        body = api.path_rules(app, env)
    remote.emit(body, _print_path_rules)


@path_rules_group.command("set")
@connected()
def path_rules_set(
    remote: Remote,
    app: AppOption,
    env: EnvOption,
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            help='JSON {prefix: {"rule": ..., "profile"?: ...}} (- reads standard input).',
        ),
    ],
) -> None:
    """Stage the whole set of path rules ({} removes every rule); restart applies them."""
    rules = read_json_file(file, "path rules")
    if not isinstance(rules, dict):
        raise usage_error(f"{file} must hold a JSON object from path prefix to rule")
    with remote.connect() as api:
        body = api.replace_path_rules(app, env, rules)
    remote.emit(body, lambda shown: _print_staged_path_rules(shown, app, env))


def _print_staged_path_rules(body: JsonObject, app: str, env: str) -> None:
    _print_path_rules(body)
    print_line(f"Staged; apply with: certward restart --app {app} --env {env}", style="dim")
