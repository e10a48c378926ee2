"""The ``certward`` commands that drive a certward server through its REST API.

People get Rich tables; scripts add ``--json`` and get the API's JSON as it came. Every
command names its server with ``--server``/``CERTWARD_SERVER`` and its bearer token
with ``--token``/``CERTWARD_TOKEN``. Exit codes: 0 done, 1 the server refused (the
problem's code, detail and every listed problem on standard error) or could not be
reached (one line), 2 a usage error. Passwords come from ``--password-file``,
``--password-stdin`` or a hidden prompt, never from an argument, and are never printed.

``remote_app`` is merged into the ``certward`` Typer app by `certward.cli`; it imports
neither FastAPI nor SQLAlchemy, so these commands start quickly.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from certward.api_client import (
    DEFAULT_SERVER,
    UNSET,
    ApiClient,
    ApiClientError,
    ApiProblem,
    JsonObject,
    UploadFile,
)
from certward.expiry import CertificateStatus
from certward.pki.convert import Pkcs12Profile
from certward.pki.csr import CsrKeyType
from certward.pki.material import MaterialKind, sniff_kind
from certward.vocabulary import Plan, Role

remote_app = typer.Typer(no_args_is_help=True)

_PANEL_OUTGOING: Final = "Apps, environments and outgoing certificates"
_PANEL_RELEASE: Final = "Staged changes and versions"
_PANEL_INCOMING: Final = "Incoming: TLS certificates, domains, access"
_PANEL_PLATFORM: Final = "Tokens, audit and the platform"

_PKCS12_SUFFIXES: Final = frozenset({".p12", ".pfx"})
_CERTIFICATE_SUFFIXES: Final = frozenset({".p12", ".pfx", ".pem", ".crt", ".cer", ".der"})
_NOTHING: Final = "—"


class InventoryKind(StrEnum):
    """The kinds of certificate the inventory lists (``GET /api/v1/certificates?kind=``)."""

    MANAGED = "managed"
    CUSTOM_DOMAIN = "custom-domain"
    CLIENT = "client"
    AUTHORITY = "authority"


# -- options every command shares -----------------------------------------------------------

ServerOption = Annotated[
    str,
    typer.Option(
        "--server",
        envvar="CERTWARD_SERVER",
        help="URL of the certward server.",
        rich_help_panel="Connection",
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="CERTWARD_TOKEN",
        help="Bearer token (prefer CERTWARD_TOKEN: arguments show in process lists).",
        show_default=False,
        rich_help_panel="Connection",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON (errors: problem JSON on stderr).")
]
AppOption = Annotated[str, typer.Option("--app", help="App name.", show_default=False)]
EnvOption = Annotated[str, typer.Option("--env", help="Environment name.", show_default=False)]
OptionalAppOption = Annotated[
    str | None, typer.Option("--app", help="Only this app.", show_default=False)
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        help="File holding the password (one trailing line break ignored).",
        show_default=False,
    ),
]
PasswordStdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]
YesOption = Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")]
IpRangeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--ip-range", help="IPv4 or IPv6 network in CIDR form (repeatable).", show_default=False
    ),
]


def _input_file(help_text: str) -> Any:
    """A ``typer.Option`` for a file to upload: it must exist and be readable (else exit 2)."""
    return typer.Option(
        exists=True, dir_okay=False, readable=True, help=help_text, show_default=False
    )


# -- output ---------------------------------------------------------------------------------


def _stdout() -> Console:
    return Console(highlight=False, soft_wrap=False)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=False)


def _say(message: str, style: str | None = None) -> None:
    _stdout().print(Text(message, style=style or ""))


def _emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _show(body: Any, as_json: bool, printer: Callable[[Any], None]) -> None:
    """The API's answer as JSON for scripts, or drawn by ``printer`` for people."""
    if as_json:
        _emit_json(body)
    else:
        printer(body)


def _usage_error(message: str) -> typer.Exit:
    """Say what is wrong with the command line; the caller raises the result (exit 2)."""
    _stderr().print(Text(f"Error: {message}", style="red"))
    return typer.Exit(2)


def _when(value: Any) -> str:
    """An API timestamp as ``YYYY-MM-DD HH:MM`` (UTC, as the API gives it)."""
    if not isinstance(value, str):
        return _NOTHING
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return value


def _cell(value: Any) -> Text:
    """A value as table text (never Rich markup: names may hold brackets)."""
    if value is None or value in ("", []):
        return Text(_NOTHING, style="dim")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, list | tuple):
        return Text(", ".join(_plain(v) for v in value))
    return Text(_plain(value))


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value) or _NOTHING
    return _NOTHING if value is None else str(value)


def _table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str = "") -> Table:
    table = Table(
        box=box.SIMPLE,
        pad_edge=False,
        title=Text(title, style="bold") if title else None,
        title_justify="left",
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(v if isinstance(v, Text) else _cell(v) for v in row))
    return table


def _print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str) -> None:
    if not rows:
        _say(empty)
        return
    _stdout().print(_table(columns, rows))


def _print_details(title: str, rows: Iterable[tuple[str, Any]]) -> None:
    table = Table(show_header=False, box=box.SIMPLE, pad_edge=False)
    table.add_column("field", style="dim", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name, value in rows:
        table.add_row(name, value if isinstance(value, Text) else _cell(value))
    console = _stdout()
    if title:
        console.print(Text(title, style="bold"))
    console.print(table)


def _print_warnings(body: JsonObject) -> None:
    """The problems an accepted upload or restart came back with (warnings)."""
    problems = body.get("problems")
    if isinstance(problems, list):
        _print_problem_list(_stdout(), problems)


def _print_problem_list(console: Console, problems: Sequence[Any], said: str = "") -> None:
    """Each problem on a line: severity, code, and the message unless ``said`` already."""
    for problem in problems:
        if not isinstance(problem, dict):
            continue
        severity = str(problem.get("severity", "error"))
        style = "red" if severity == "error" else "yellow"
        line = Text(f"  {severity} ", style=f"bold {style}")
        line.append(f"[{problem.get('code', '?')}]", style=style)
        message = str(problem.get("message", ""))
        if message and message != said:
            line.append(f" {message}")
        if problem.get("certificate"):
            line.append(f" ({problem['certificate']})", style="dim")
        console.print(line)


def _print_problem(problem: ApiProblem, as_json: bool) -> None:
    """A refusal on standard error: code, title and detail, every problem, extra members."""
    if as_json:
        typer.echo(json.dumps(problem.body, indent=2, ensure_ascii=False), err=True)
        return
    console = _stderr()
    head = Text(f"Refused ({problem.status} {problem.code}): ", style="bold red")
    head.append(problem.title, style="red")
    console.print(head)
    if problem.detail:
        console.print(Text(f"  {problem.detail}"))
    _print_problem_list(console, problem.problems, said=problem.detail)
    for name, value in problem.extra.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                console.print(Text(f"  {name}: {_plain(item)}"))
        else:
            console.print(Text(f"  {name}: {_plain(value)}"))
    if problem.status == 401:
        console.print(Text("  Check the token given with --token or CERTWARD_TOKEN.", style="dim"))


# -- connection, files and passwords --------------------------------------------------------


@contextmanager
def _connect(
    server: str, token: str | None, *, as_json: bool = False, needs_token: bool = True
) -> Iterator[ApiClient]:
    """An `ApiClient` for the command; refusals and connection failures end it with exit 1."""
    secret = (token or "").strip()
    if needs_token and not secret:
        raise _usage_error("give a token with --token or CERTWARD_TOKEN")
    try:
        with ApiClient(server, secret or None) as api:
            yield api
    except ApiProblem as problem:
        _print_problem(problem, as_json)
        raise typer.Exit(1) from problem
    except ApiClientError as exc:
        _stderr().print(Text(f"Error: {exc}", style="red"))
        raise typer.Exit(1) from exc


def _upload(path: Path) -> UploadFile:
    try:
        return UploadFile(path.name, path.read_bytes())
    except OSError as exc:
        raise _usage_error(f"cannot read {path}: {exc.strerror}") from exc


def _optional_upload(path: Path | None) -> UploadFile | None:
    return None if path is None else _upload(path)


def _strip_line_break(raw: bytes) -> bytes:
    """One trailing line break belongs to the file, not to the password."""
    for ending in (b"\r\n", b"\n"):
        if raw.endswith(ending):
            return raw[: -len(ending)]
    return raw


def _password(path: Path | None, from_stdin: bool, *, prompt: str | None) -> bytes | None:
    """The password from a file, standard input, or (``prompt``, on a terminal) a hidden
    prompt; None when none is given and none is needed."""
    if path is not None and from_stdin:
        raise _usage_error("give the password either as a file or on standard input, not both")
    if from_stdin:
        return _strip_line_break(sys.stdin.buffer.read())
    if path is not None:
        try:
            return _strip_line_break(path.read_bytes())
        except OSError as exc:
            raise _usage_error(f"cannot read the password file {path}: {exc.strerror}") from exc
    if prompt is not None and sys.stdin.isatty():
        entered: str = typer.prompt(
            prompt, hide_input=True, default="", show_default=False, err=True
        )
        return entered.encode("utf-8")
    return None


def _is_pkcs12(upload: UploadFile) -> bool:
    return (
        Path(upload.filename).suffix.lower() in _PKCS12_SUFFIXES
        or sniff_kind(upload.data) is MaterialKind.PKCS12
    )


def _is_encrypted_key(upload: UploadFile | None) -> bool:
    return upload is not None and b"ENCRYPTED" in upload.data[:4096]


def _confirm(question: str, yes: bool) -> None:
    """Ask before destroying something rollback cannot bring back; scripts pass ``--yes``."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise _usage_error(f"{question} Add --yes to confirm without a question.")
    if not typer.confirm(question, default=False):
        raise typer.Exit(1)


def _write_file(path: Path, data: bytes, *, private: bool) -> None:
    """Write ``data`` atomically; ``private`` files (bundles hold keys) get mode 0600."""
    directory = path.parent if str(path.parent) else Path()
    try:
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    except OSError as exc:
        raise _usage_error(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o600 if private else 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _read_json_file(path: Path, what: str) -> Any:
    """JSON from ``path`` (``-``: standard input); unreadable or invalid JSON is exit 2."""
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise _usage_error(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise _usage_error(f"{path} is not valid JSON ({what}): {exc}") from exc


# -- apps -----------------------------------------------------------------------------------

app_group = typer.Typer(help="Apps and their plans.", no_args_is_help=True)
remote_app.add_typer(app_group, name="app", rich_help_panel=_PANEL_OUTGOING)


def _print_app(body: JsonObject) -> None:
    _print_details(
        f"App {body.get('name')}",
        [
            ("plan", body.get("plan")),
            ("environments", body.get("environments")),
            ("created", _when(body.get("created_at"))),
        ],
    )


@app_group.command("create")
def app_create(
    name: Annotated[str, typer.Argument(help="App name (a DNS label).")],
    plan: Annotated[
        Plan, typer.Option("--plan", help="licensed apps may bring their own certificates.")
    ] = Plan.FREE,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an app (admin token)."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.create_app(name, plan.value)
    if as_json:
        _emit_json(body)
        return
    _say(f"Created app {body['name']} ({body['plan']}).")


@app_group.command("list")
def app_list(
    server: ServerOption = DEFAULT_SERVER, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """The apps the token may see."""
    with _connect(server, token, as_json=as_json) as api:
        apps = api.list_apps()
    if as_json:
        _emit_json(apps)
        return
    _print_rows(
        ("name", "plan", "environments", "created"),
        [
            (a.get("name"), a.get("plan"), a.get("environments"), _when(a.get("created_at")))
            for a in apps
        ],
        empty="No apps.",
    )


@app_group.command("show")
def app_show(
    name: Annotated[str, typer.Argument(help="App name.")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """An app, its plan and its environments."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.get_app(name)
    _show(body, as_json, _print_app)


@app_group.command("update")
def app_update(
    name: Annotated[str, typer.Argument(help="App name.")],
    plan: Annotated[Plan, typer.Option("--plan", help="The new plan.")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change an app's plan (admin token)."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.update_app(name, plan=plan.value)
    if as_json:
        _emit_json(body)
        return
    _say(f"App {body['name']} is now {body['plan']}.")


@app_group.command("delete")
def app_delete(
    name: Annotated[str, typer.Argument(help="App name.")],
    yes: YesOption = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete an app with its environments and every certificate and key it holds."""
    _confirm(f"Delete app {name} with everything in it?", yes)
    with _connect(server, token, as_json=as_json) as api:
        api.delete_app(name)
    if not as_json:
        _say(f"Deleted app {name}.")


# -- environments ---------------------------------------------------------------------------

env_group = typer.Typer(help="Environments of an app.", no_args_is_help=True)
remote_app.add_typer(env_group, name="env", rich_help_panel=_PANEL_OUTGOING)


def _print_environment(body: JsonObject) -> None:
    _print_details(
        f"Environment {body.get('app')}/{body.get('name')}",
        [
            ("hostname", body.get("hostname")),
            ("upstream", body.get("upstream")),
            ("PKCS12 profile", body.get("pkcs12_profile")),
            ("no client certificate", body.get("no_client_certificate")),
            ("applied version", body.get("applied_version")),
            ("created", _when(body.get("created_at"))),
        ],
    )


@env_group.command("create")
def env_create(
    app: Annotated[str, typer.Argument(help="App name.")],
    name: Annotated[str, typer.Argument(help="Environment name (a DNS label).")],
    upstream: Annotated[
        str, typer.Option("--upstream", help="URL the environment's traffic goes to.")
    ],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an environment; it gets a default hostname and a managed certificate."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.create_environment(app, name, upstream=upstream)
    _show(body, as_json, _print_environment)


@env_group.command("list")
def env_list(
    app: Annotated[str, typer.Argument(help="App name.")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The app's environments."""
    with _connect(server, token, as_json=as_json) as api:
        environments = api.list_environments(app)
    if as_json:
        _emit_json(environments)
        return
    _print_rows(
        ("name", "hostname", "upstream", "PKCS12 profile", "applied version"),
        [
            (
                e.get("name"),
                e.get("hostname"),
                e.get("upstream"),
                e.get("pkcs12_profile"),
                e.get("applied_version"),
            )
            for e in environments
        ],
        empty=f"App {app} has no environments.",
    )


@env_group.command("show")
def env_show(
    app: Annotated[str, typer.Argument(help="App name.")],
    name: Annotated[str, typer.Argument(help="Environment name.")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One environment."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.get_environment(app, name)
    _show(body, as_json, _print_environment)


@env_group.command("update")
def env_update(
    app: Annotated[str, typer.Argument(help="App name.")],
    name: Annotated[str, typer.Argument(help="Environment name.")],
    upstream: Annotated[
        str | None, typer.Option("--upstream", help="New upstream URL (live).", show_default=False)
    ] = None,
    pkcs12_profile: Annotated[
        Pkcs12Profile | None,
        typer.Option(
            "--pkcs12-profile", help="PKCS12 profile runtimes read (staged).", show_default=False
        ),
    ] = None,
    no_client_certificate: Annotated[
        list[str] | None,
        typer.Option(
            "--no-client-certificate",
            help="Host or Module.Service called without a client certificate (repeatable; "
            "replaces the list; staged).",
            show_default=False,
        ),
    ] = None,
    clear_no_client_certificate: Annotated[
        bool,
        typer.Option(
            "--clear-no-client-certificate", help="Empty the no-client-certificate list (staged)."
        ),
    ] = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change the upstream (live), the PKCS12 profile or the no-client-certificate list.

    The profile and the list are staged until restart."""
    if no_client_certificate and clear_no_client_certificate:
        raise _usage_error("give --no-client-certificate or --clear-no-client-certificate")
    hosts = [] if clear_no_client_certificate else no_client_certificate
    if upstream is None and pkcs12_profile is None and hosts is None:
        raise _usage_error(
            "nothing to change: give --upstream, --pkcs12-profile or --no-client-certificate"
        )
    with _connect(server, token, as_json=as_json) as api:
        body = api.update_environment(
            app,
            name,
            upstream=upstream,
            pkcs12_profile=pkcs12_profile.value if pkcs12_profile else None,
            no_client_certificate=hosts,
        )
    _show(body, as_json, _print_environment)


@env_group.command("delete")
def env_delete(
    app: Annotated[str, typer.Argument(help="App name.")],
    name: Annotated[str, typer.Argument(help="Environment name.")],
    yes: YesOption = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete an environment with its certificates, versions and domains."""
    _confirm(f"Delete environment {app}/{name} with everything in it?", yes)
    with _connect(server, token, as_json=as_json) as api:
        api.delete_environment(app, name)
    if not as_json:
        _say(f"Deleted environment {app}/{name}.")


@env_group.command("managed-certificate")
def env_managed_certificate(
    app: Annotated[str, typer.Argument(help="App name.")],
    name: Annotated[str, typer.Argument(help="Environment name.")],
    pem: Annotated[
        bool, typer.Option("--pem", help="Print the certificate and chain PEM.")
    ] = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The platform-issued certificate of the environment's default hostname."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.managed_certificate(app, name)
    if as_json:
        _emit_json(body)
        return
    if pem:
        typer.echo(
            str(body.get("certificate_pem") or "") + str(body.get("chain_pem") or ""), nl=False
        )
        return
    _print_details(
        f"Managed certificate of {body.get('hostname')}",
        [
            ("state", body.get("state")),
            ("subject", body.get("subject")),
            ("issuer", body.get("issuer")),
            ("valid", f"{_when(body.get('not_before'))} → {_when(body.get('not_after'))}"),
            ("renew after", _when(body.get("renew_after"))),
            ("SHA-256", body.get("sha256_fingerprint")),
            ("attempts", body.get("attempts")),
            ("last error", body.get("last_error")),
        ],
    )


@env_group.command("runtime-bundle")
def env_runtime_bundle(
    app: Annotated[str, typer.Argument(help="App name.")],
    name: Annotated[str, typer.Argument(help="Environment name.")],
    out: Annotated[Path, typer.Option("--out", help="File to write (a gzipped tar, mode 0600).")],
    version: Annotated[
        int | None, typer.Option("--version", min=1, help="A version (default: the applied one).")
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
) -> None:
    """Download a runtime bundle as it is (``certward bundle install`` also unpacks it)."""
    with _connect(server, token) as api:
        bundle = api.runtime_bundle(app, name, version=version)
    _write_file(out, bundle.content, private=True)
    _say(f"Wrote version {bundle.version} of {app}/{name}'s runtime bundle to {out}.")


# -- client certificates --------------------------------------------------------------------

client_cert_group = typer.Typer(
    help="Client certificates an environment presents to the partners it calls (staged).",
    no_args_is_help=True,
)
remote_app.add_typer(client_cert_group, name="client-cert", rich_help_panel=_PANEL_OUTGOING)


def _print_client_certificate(body: JsonObject, title: str) -> None:
    chain = body.get("chain") or []
    _print_details(
        title,
        [
            ("id", body.get("id")),
            ("subject", body.get("subject")),
            ("issuer", body.get("issuer")),
            ("valid", f"{_when(body.get('not_before'))} → {_when(body.get('not_after'))}"),
            ("pins", body.get("pins")),
            ("call name", body.get("call_name")),
            ("description", body.get("description")),
            ("state", body.get("state")),
            ("chain", [c.get("subject") for c in chain if isinstance(c, dict)]),
            ("serial", body.get("serial")),
            ("SHA-256", body.get("sha256_fingerprint")),
        ],
    )
    _print_warnings(body)


@client_cert_group.command("add")
def client_cert_add(
    app: AppOption,
    env: EnvOption,
    file: Annotated[Path, _input_file("PKCS12 file, or a PEM/DER certificate.")],
    key: Annotated[
        Path | None, _input_file("Private key file (for a PEM/DER certificate).")
    ] = None,
    chain: Annotated[Path | None, _input_file("Chain file (for a PEM/DER certificate).")] = None,
    password_file: PasswordFileOption = None,
    password_stdin: PasswordStdinOption = False,
    pin: Annotated[
        list[str] | None,
        typer.Option(
            "--pin",
            help="Host, IP address or Module.Service it is used for (repeatable).",
            show_default=False,
        ),
    ] = None,
    call_name: Annotated[
        str | None,
        typer.Option("--call-name", help="The name runtimes ask for it by.", show_default=False),
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="Free text.", show_default=False)
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload a client certificate; it is judged at once and staged until restart.

    Without --password-file or --password-stdin, a terminal is asked for the password."""
    upload = _upload(file)
    key_upload = _optional_upload(key)
    needs_password = _is_pkcs12(upload) or _is_encrypted_key(key_upload)
    password = _password(
        password_file,
        password_stdin,
        prompt=f"Password of {file.name}" if needs_password else None,
    )
    with _connect(server, token, as_json=as_json) as api:
        body = api.upload_client_certificate(
            app,
            env,
            file=upload,
            password=password,
            key=key_upload,
            chain=_optional_upload(chain),
            pins=pin or (),
            call_name=call_name,
            description=description,
        )
    if as_json:
        _emit_json(body)
        return
    _print_client_certificate(body, f"Staged client certificate {body.get('id')}")
    _say(f"Apply it with: certward restart --app {app} --env {env}", style="dim")


@client_cert_group.command("list")
def client_cert_list(
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every client certificate of the environment (every page)."""
    with _connect(server, token, as_json=as_json) as api:
        certificates = api.list_client_certificates(app, env)
    if as_json:
        _emit_json(certificates)
        return
    _print_rows(
        ("id", "subject", "valid until", "pins", "call name", "state"),
        [
            (
                c.get("id"),
                c.get("subject"),
                _when(c.get("not_after")),
                c.get("pins"),
                c.get("call_name"),
                c.get("state"),
            )
            for c in certificates
        ],
        empty=f"{app}/{env} has no client certificates.",
    )


CertificateIdArgument = Annotated[str, typer.Argument(help="The client certificate's id.")]


@client_cert_group.command("show")
def client_cert_show(
    certificate_id: CertificateIdArgument,
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One client certificate."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.get_client_certificate(app, env, certificate_id)
    if as_json:
        _emit_json(body)
        return
    _print_client_certificate(body, f"Client certificate {certificate_id}")


@client_cert_group.command("update")
def client_cert_update(
    certificate_id: CertificateIdArgument,
    app: AppOption,
    env: EnvOption,
    pin: Annotated[
        list[str] | None,
        typer.Option("--pin", help="The pins, replacing all (repeatable).", show_default=False),
    ] = None,
    add_pin: Annotated[
        list[str] | None,
        typer.Option("--add-pin", help="A pin to add (repeatable).", show_default=False),
    ] = None,
    remove_pin: Annotated[
        list[str] | None,
        typer.Option("--remove-pin", help="A pin to remove (repeatable).", show_default=False),
    ] = None,
    no_pins: Annotated[bool, typer.Option("--no-pins", help="Remove every pin.")] = False,
    call_name: Annotated[
        str | None, typer.Option("--call-name", help="A new call name.", show_default=False)
    ] = None,
    no_call_name: Annotated[
        bool, typer.Option("--no-call-name", help="Remove the call name.")
    ] = False,
    description: Annotated[
        str | None, typer.Option("--description", help="A new description.", show_default=False)
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change pins, call name or description (staged until restart)."""
    if sum((pin is not None, no_pins, bool(add_pin or remove_pin))) > 1:
        raise _usage_error("give --pin, --no-pins, or --add-pin/--remove-pin, not several")
    if call_name is not None and no_call_name:
        raise _usage_error("give --call-name or --no-call-name, not both")
    if not (pin or no_pins or add_pin or remove_pin or call_name or no_call_name) and (
        description is None
    ):
        raise _usage_error("nothing to change: give pins, a call name or a description")
    with _connect(server, token, as_json=as_json) as api:
        pins: list[str] | None = [] if no_pins else pin
        if add_pin or remove_pin:
            current = api.get_client_certificate(app, env, certificate_id)
            removed = {p.lower() for p in remove_pin or ()}
            pins = [p for p in current.get("pins") or [] if str(p).lower() not in removed]
            pins += [p for p in add_pin or () if p.lower() not in {q.lower() for q in pins}]
        body = api.update_client_certificate(
            app,
            env,
            certificate_id,
            pins=pins,
            call_name=None if no_call_name else (call_name if call_name is not None else UNSET),
            description=description,
        )
    if as_json:
        _emit_json(body)
        return
    _print_client_certificate(body, f"Updated client certificate {certificate_id} (staged)")


@client_cert_group.command("delete")
def client_cert_delete(
    certificate_id: CertificateIdArgument,
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove a client certificate (staged: restart applies it, rollback brings it back)."""
    with _connect(server, token, as_json=as_json) as api:
        api.delete_client_certificate(app, env, certificate_id)
    if not as_json:
        _say(f"Removed client certificate {certificate_id} (staged until restart).")


# -- bulk import ------------------------------------------------------------------------------

_ENTRY_KEYS: Final = frozenset(
    {"pins", "call_name", "description", "key", "chain", "password_file"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportEntry:
    """One certificate file of a bulk import, as the mapping file describes it."""

    file: str
    pins: tuple[str, ...] = ()
    call_name: str | None = None
    description: str | None = None
    key: str | None = None
    chain: str | None = None
    password_file: Path | None = None


@dataclass(slots=True)
class ImportOutcome:
    """What became of the files of a bulk import, for the summary and ``--json``."""

    imported: list[JsonObject] = field(default_factory=list)
    failed: list[JsonObject] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def read_import_mapping(path: Path) -> list[ImportEntry]:
    """The mapping file of ``client-cert import-dir``: a JSON object from file name to
    ``{"pins", "call_name", "description", "key", "chain", "password_file"}`` (every
    member optional; ``password_file`` relative to the mapping file)."""
    data = _read_json_file(path, "the mapping of file names to pins")
    if not isinstance(data, dict):
        raise _usage_error(f"{path} must hold a JSON object from file name to its pins")
    entries: list[ImportEntry] = []
    for name, spec in data.items():
        where = f"{path}: entry {name!r}"
        if not name or Path(name).name != name:
            raise _usage_error(f"{where}: give a file name in the directory, not a path")
        if not isinstance(spec, dict):
            raise _usage_error(f'{where} must be an object such as {{"pins": [...]}}')
        unknown = sorted(set(spec) - _ENTRY_KEYS)
        if unknown:
            raise _usage_error(
                f"{where}: unknown member {unknown[0]!r} (known: {', '.join(sorted(_ENTRY_KEYS))})"
            )
        pins = spec.get("pins", [])
        if isinstance(pins, str):
            pins = [pins]
        if not isinstance(pins, list) or not all(isinstance(p, str) for p in pins):
            raise _usage_error(f"{where}: pins must be a list of names")
        texts = {
            k: spec.get(k) for k in ("call_name", "description", "key", "chain", "password_file")
        }
        for member, value in texts.items():
            if value is not None and not isinstance(value, str):
                raise _usage_error(f"{where}: {member} must be text")
        password_file = texts["password_file"]
        entries.append(
            ImportEntry(
                file=name,
                pins=tuple(pins),
                call_name=texts["call_name"],
                description=texts["description"],
                key=texts["key"],
                chain=texts["chain"],
                password_file=None if password_file is None else path.parent / password_file,
            )
        )
    return entries


def _import_one(
    api: ApiClient,
    app: str,
    env: str,
    directory: Path,
    entry: ImportEntry,
    password: bytes | None,
    outcome: ImportOutcome,
) -> None:
    """Upload one file; a refusal or an unreadable file is recorded, never raised."""
    try:
        upload = UploadFile(entry.file, (directory / entry.file).read_bytes())
        key = _entry_file(directory, entry.key)
        chain = _entry_file(directory, entry.chain)
        if entry.password_file is not None:
            password = _strip_line_break(entry.password_file.read_bytes())
    except OSError as exc:
        outcome.failed.append(
            {
                "file": entry.file,
                "status": None,
                "code": "file-not-found"
                if isinstance(exc, FileNotFoundError)
                else "unreadable-file",
                "detail": f"{exc.filename or entry.file}: {exc.strerror}",
                "problems": [],
            }
        )
        return
    try:
        body = api.upload_client_certificate(
            app,
            env,
            file=upload,
            password=password,
            key=key,
            chain=chain,
            pins=entry.pins,
            call_name=entry.call_name,
            description=entry.description,
        )
    except ApiProblem as problem:
        if problem.status == 401:
            raise  # the token is refused: no other file would fare better
        outcome.failed.append(
            {
                "file": entry.file,
                "status": problem.status,
                "code": problem.code,
                "detail": problem.detail,
                "problems": list(problem.problems),
                **problem.extra,
            }
        )
        return
    outcome.imported.append({"file": entry.file, "client_certificate": body})


def _entry_file(directory: Path, name: str | None) -> UploadFile | None:
    if name is None:
        return None
    return UploadFile(name, (directory / name).read_bytes())


def _failure_reason(failure: JsonObject) -> str:
    """The detail, then the error messages of the problem list it does not repeat."""
    parts = [str(failure.get("detail") or "")]
    for problem in failure.get("problems") or []:
        if isinstance(problem, dict) and problem.get("severity") == "error":
            message = str(problem.get("message", ""))
            if message and message not in parts[0]:
                parts.append(message)
    return " ".join(p for p in parts if p)


def _print_import_summary(outcome: ImportOutcome) -> None:
    rows: list[Sequence[Any]] = []
    for item in outcome.imported:
        body = item["client_certificate"]
        rows.append(
            (
                item["file"],
                Text("imported", style="green"),
                body.get("id"),
                body.get("pins"),
                body.get("subject"),
            )
        )
    for failure in outcome.failed:
        rows.append(
            (
                failure["file"],
                Text("failed", style="red"),
                Text(str(failure.get("code")), style="red"),
                None,
                _failure_reason(failure),
            )
        )
    for name in outcome.skipped:
        rows.append((name, Text("skipped", style="yellow"), None, None, "not in the mapping file"))
    _stdout().print(
        _table(("file", "result", "id or problem", "pins", "subject or why"), rows, title="Import")
    )
    total = len(outcome.imported) + len(outcome.failed)
    summary = f"Imported {len(outcome.imported)} of {total} file(s)"
    summary += f"; {len(outcome.failed)} failed." if outcome.failed else "."
    if outcome.skipped:
        summary += f" {len(outcome.skipped)} certificate file(s) skipped: not in the mapping."
    _say(summary, style="bold red" if outcome.failed else "bold green")


@client_cert_group.command("import-dir")
def client_cert_import_dir(
    directory: Annotated[
        Path,
        typer.Argument(
            exists=True, file_okay=False, readable=True, help="Directory holding the files."
        ),
    ],
    app: AppOption,
    env: EnvOption,
    pins_from: Annotated[
        Path,
        typer.Option(
            "--pins-from",
            exists=True,
            dir_okay=False,
            readable=True,
            help="JSON object: file name -> {pins, call_name, description, key, chain, "
            "password_file}.",
        ),
    ],
    password_file: PasswordFileOption = None,
    password_stdin: PasswordStdinOption = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload every file the mapping names, with its pins; say what failed and why.

    Exit 1 when any file failed."""
    entries = read_import_mapping(pins_from)
    if not entries:
        raise _usage_error(f"{pins_from} names no files")
    needs_prompt = any(
        e.password_file is None and Path(e.file).suffix.lower() in _PKCS12_SUFFIXES for e in entries
    )
    password = _password(
        password_file,
        password_stdin,
        prompt="Password of the PKCS12 files" if needs_prompt else None,
    )
    named = {e.file for e in entries} | {n for e in entries for n in (e.key, e.chain) if n}
    outcome = ImportOutcome(
        skipped=sorted(
            p.name
            for p in directory.iterdir()
            if p.is_file()
            and not p.name.startswith(".")
            and p.suffix.lower() in _CERTIFICATE_SUFFIXES
            and p.name not in named
        )
    )
    with (
        _connect(server, token, as_json=as_json) as api,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=_stderr(),
            transient=True,
        ) as progress,
    ):
        task = progress.add_task("Importing", total=len(entries))
        for entry in entries:
            progress.update(task, description=f"Importing {entry.file}")
            _import_one(api, app, env, directory, entry, password, outcome)
            progress.advance(task)
    if as_json:
        _emit_json(
            {"imported": outcome.imported, "failed": outcome.failed, "skipped": outcome.skipped}
        )
    else:
        _print_import_summary(outcome)
    if outcome.failed:
        raise typer.Exit(1)


# -- certificate authorities ----------------------------------------------------------------

authority_group = typer.Typer(
    help="CA certificates an environment trusts for the partners it calls (staged).",
    no_args_is_help=True,
)
remote_app.add_typer(authority_group, name="authority", rich_help_panel=_PANEL_OUTGOING)


def _print_authority(body: JsonObject, title: str) -> None:
    _print_stored_certificates(body.get("certificates") or [], title)
    _print_details("", [("id", body.get("id")), ("state", body.get("state"))])
    _print_warnings(body)


def _print_stored_certificates(certificates: Sequence[Any], title: str) -> None:
    _stdout().print(
        _table(
            ("subject", "valid until", "SHA-256"),
            [
                (c.get("subject"), _when(c.get("not_after")), c.get("sha256_fingerprint"))
                for c in certificates
                if isinstance(c, dict)
            ],
            title=title,
        )
    )


@authority_group.command("add")
def authority_add(
    app: AppOption,
    env: EnvOption,
    file: Annotated[Path, _input_file("PEM with a root and/or intermediates.")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload CA certificates (judged as authorities; staged until restart)."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.upload_authority(app, env, file=_upload(file))
    if as_json:
        _emit_json(body)
        return
    _print_authority(body, f"Staged certificate authority {body.get('id')}")


@authority_group.command("list")
def authority_list(
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The environment's certificate authorities."""
    with _connect(server, token, as_json=as_json) as api:
        authorities = api.list_authorities(app, env)
    if as_json:
        _emit_json(authorities)
        return
    _print_rows(
        ("id", "certificates", "state", "created"),
        [
            (
                a.get("id"),
                [c.get("subject") for c in a.get("certificates") or [] if isinstance(c, dict)],
                a.get("state"),
                _when(a.get("created_at")),
            )
            for a in authorities
        ],
        empty=f"{app}/{env} has no certificate authorities.",
    )


@authority_group.command("show")
def authority_show(
    authority_id: Annotated[str, typer.Argument(help="The authority's id.")],
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One certificate authority and its certificates."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.get_authority(app, env, authority_id)
    if as_json:
        _emit_json(body)
        return
    _print_authority(body, f"Certificate authority {authority_id}")


@authority_group.command("delete")
def authority_delete(
    authority_id: Annotated[str, typer.Argument(help="The authority's id.")],
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove a certificate authority (staged until restart)."""
    with _connect(server, token, as_json=as_json) as api:
        api.delete_authority(app, env, authority_id)
    if not as_json:
        _say(f"Removed certificate authority {authority_id} (staged until restart).")


# -- staged changes, restart, rollback, versions --------------------------------------------

_QUIET_KEYS: Final = frozenset({"id", "sha256_fingerprint", "certificates"})


def _state_summary(state: Any, keys: Iterable[str] | None = None) -> Text:
    """A staged or applied object in one cell: its fields (``keys``: only those)."""
    if not isinstance(state, dict):
        return Text(_NOTHING, style="dim")
    if keys is None:
        keys = [k for k, v in state.items() if k not in _QUIET_KEYS and v not in (None, "", [])]
    lines = [
        f"{k}: {_when(state.get(k)) if k.startswith('not_') else _plain(state.get(k))}"
        for k in keys
    ]
    return Text("\n".join(lines) or _NOTHING)


def _print_changes(body: JsonObject) -> None:
    applied = body.get("applied_version")
    head = (
        f"Applied: version {applied} ({str(body.get('applied_digest'))[:12]}…)"
        if applied is not None
        else "Applied: nothing yet"
    )
    _say(f"{head}; staged: {str(body.get('staged_digest'))[:12]}…")
    changes = body.get("changes") or []
    if not changes:
        _say("No pending changes.")
        return
    rows: list[Sequence[Any]] = []
    for change in changes:
        before, after = change.get("before"), change.get("after")
        keys = None
        if isinstance(before, dict) and isinstance(after, dict):
            keys = [k for k in {**before, **after} if before.get(k) != after.get(k)]
        rows.append(
            (
                change.get("change"),
                change.get("object_type"),
                change.get("object_id"),
                _state_summary(before, keys),
                _state_summary(after, keys),
            )
        )
    _stdout().print(_table(("change", "object", "id", "current (applied)", "new (staged)"), rows))
    _say(f"{len(changes)} pending change(s); restart applies them.")


@remote_app.command("changes", rich_help_panel=_PANEL_RELEASE)
def changes_command(
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """What a restart would change: the applied version against the staged state."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.changes(app, env)
    _show(body, as_json, _print_changes)


def _print_applied(body: JsonObject, app: str, env: str) -> None:
    if body.get("changed"):
        _say(
            f"Applied version {body.get('version')} of {app}/{env} "
            f"(digest {body.get('digest')}) at {_when(body.get('applied_at'))}.",
            style="bold green",
        )
    else:
        _say(f"Nothing staged: version {body.get('version')} of {app}/{env} stays applied.")
    _print_warnings(body)


@remote_app.command("restart", rich_help_panel=_PANEL_RELEASE)
def restart_command(
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Apply every staged change as a new version (everything is judged again first)."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.restart(app, env)
    if as_json:
        _emit_json(body)
        return
    _print_applied(body, app, env)


@remote_app.command("rollback", rich_help_panel=_PANEL_RELEASE)
def rollback_command(
    app: AppOption,
    env: EnvOption,
    to: Annotated[int, typer.Option("--to", min=1, help="The version to go back to.")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Apply an earlier version's content again, as a new version."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.rollback(app, env, version=to)
    if as_json:
        _emit_json(body)
        return
    _print_applied(body, app, env)


@remote_app.command("versions", rich_help_panel=_PANEL_RELEASE)
def versions_command(
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The applied versions, newest first."""
    with _connect(server, token, as_json=as_json) as api:
        versions = api.versions(app, env)
    if as_json:
        _emit_json(versions)
        return
    _print_rows(
        ("version", "current", "applied", "by token", "digest"),
        [
            (
                v.get("version"),
                Text("current", style="bold green") if v.get("current") else "",
                _when(v.get("applied_at")),
                v.get("actor"),
                v.get("digest"),
            )
            for v in versions
        ],
        empty=f"{app}/{env} has no applied version yet.",
    )


# -- TLS certificates -----------------------------------------------------------------------

tls_cert_group = typer.Typer(
    help="An app's TLS certificates for custom domains (live).", no_args_is_help=True
)
remote_app.add_typer(tls_cert_group, name="tls-cert", rich_help_panel=_PANEL_INCOMING)
TlsIdArgument = Annotated[str, typer.Argument(help="The TLS certificate's id.")]


def _print_tls_certificate(body: JsonObject, title: str) -> None:
    domains = [
        f"{d.get('hostname')} ({d.get('environment')})"
        for d in body.get("domains") or []
        if isinstance(d, dict)
    ]
    _print_details(
        title,
        [
            ("id", body.get("id")),
            ("status", body.get("status")),
            ("origin", body.get("origin")),
            ("common name", body.get("common_name")),
            ("SANs", body.get("sans")),
            ("subject", body.get("subject")),
            ("issuer", body.get("issuer")),
            ("valid", f"{_when(body.get('not_before'))} → {_when(body.get('not_after'))}"),
            ("key", body.get("key_type")),
            ("chain", [c.get("subject") for c in body.get("chain") or [] if isinstance(c, dict)]),
            ("domains", domains),
            ("description", body.get("description")),
            ("SHA-256", body.get("sha256_fingerprint")),
        ],
    )
    _print_warnings(body)


@tls_cert_group.command("upload")
def tls_cert_upload(
    app: AppOption,
    certificate: Annotated[Path, _input_file("Certificate, PEM or DER (may hold the chain).")],
    key: Annotated[Path, _input_file("Its private key, PEM or DER.")],
    chain: Annotated[Path | None, _input_file("Intermediate certificates.")] = None,
    password_file: PasswordFileOption = None,
    password_stdin: PasswordStdinOption = False,
    description: Annotated[
        str | None, typer.Option("--description", help="Free text.", show_default=False)
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload a certificate with its key and chain (judged as a TLS certificate)."""
    key_upload = _upload(key)
    password = _password(
        password_file,
        password_stdin,
        prompt=f"Password of {key.name}" if _is_encrypted_key(key_upload) else None,
    )
    with _connect(server, token, as_json=as_json) as api:
        body = api.upload_tls_certificate(
            app,
            certificate=_upload(certificate),
            private_key=key_upload,
            chain=_optional_upload(chain),
            password=password,
            description=description,
        )
    if as_json:
        _emit_json(body)
        return
    _print_tls_certificate(body, f"Uploaded TLS certificate {body.get('id')}")


@tls_cert_group.command("csr")
def tls_cert_csr(
    app: AppOption,
    common_name: Annotated[
        str, typer.Option("--common-name", help="The first name (at most 64 characters).")
    ],
    san: Annotated[
        list[str] | None,
        typer.Option("--san", help="A further name (repeatable).", show_default=False),
    ] = None,
    key_type: Annotated[
        CsrKeyType, typer.Option("--key-type", help="The key certward generates.")
    ] = CsrKeyType.EC_P256,
    description: Annotated[
        str | None, typer.Option("--description", help="Free text.", show_default=False)
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the CSR here (else it is printed).", show_default=False),
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Have certward generate a key and a CSR: send the CSR to your CA, then `complete`."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.create_tls_csr(
            app,
            common_name=common_name,
            sans=san or (),
            key_type=key_type.value,
            description=description or "",
        )
    csr = str(body.get("csr_pem") or "")
    if out is not None:
        _write_file(out, csr.encode(), private=False)
    if as_json:
        _emit_json(body)
        return
    _print_tls_certificate(body, f"Pending TLS certificate {body.get('id')}")
    if out is not None:
        _say(f"Wrote the CSR to {out}.")
    else:
        typer.echo(csr, nl=False)
    _say(
        f"Then: certward tls-cert complete {body.get('id')} --app {app} --certificate FILE",
        style="dim",
    )


@tls_cert_group.command("acme")
def tls_cert_acme(
    app: AppOption,
    san: Annotated[
        list[str],
        typer.Option("--san", help="A name to cover (repeatable; the first is the common name)."),
    ],
    description: Annotated[
        str | None, typer.Option("--description", help="Free text.", show_default=False)
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Order a certificate from the platform's ACME CA; certward renews it by itself.

    Every name must already resolve to the platform (HTTP-01)."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.order_acme_tls_certificate(app, sans=san, description=description or "")
    if as_json:
        _emit_json(body)
        return
    _print_tls_certificate(body, f"TLS certificate {body.get('id')} from the ACME CA")


@tls_cert_group.command("complete")
def tls_cert_complete(
    tls_certificate_id: TlsIdArgument,
    app: AppOption,
    certificate: Annotated[Path, _input_file("The certificate the CA signed.")],
    chain: Annotated[Path | None, _input_file("Its intermediate certificates.")] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give a pending CSR the certificate its CA signed."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.complete_tls_csr(
            app,
            tls_certificate_id,
            certificate=_upload(certificate),
            chain=_optional_upload(chain),
        )
    if as_json:
        _emit_json(body)
        return
    _print_tls_certificate(body, f"Completed TLS certificate {tls_certificate_id}")


@tls_cert_group.command("list")
def tls_cert_list(
    app: AppOption,
    status: Annotated[
        CertificateStatus | None,
        typer.Option("--status", help="Only this status.", show_default=False),
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The app's TLS certificates, oldest first."""
    with _connect(server, token, as_json=as_json) as api:
        certificates = api.list_tls_certificates(app, status=status.value if status else None)
    if as_json:
        _emit_json(certificates)
        return
    _print_rows(
        ("id", "status", "names", "valid until", "domains", "description"),
        [
            (
                c.get("id"),
                c.get("status"),
                c.get("sans") or c.get("common_name"),
                _when(c.get("not_after")),
                [d.get("hostname") for d in c.get("domains") or [] if isinstance(d, dict)],
                c.get("description"),
            )
            for c in certificates
        ],
        empty=f"App {app} has no TLS certificates.",
    )


@tls_cert_group.command("show")
def tls_cert_show(
    tls_certificate_id: TlsIdArgument,
    app: AppOption,
    csr_out: Annotated[
        Path | None,
        typer.Option(
            "--csr-out", help="Write a pending certificate's CSR here.", show_default=False
        ),
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One TLS certificate and the domains using it."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.get_tls_certificate(app, tls_certificate_id)
    if csr_out is not None:
        if not body.get("csr_pem"):
            raise _usage_error(f"TLS certificate {tls_certificate_id} has no CSR")
        _write_file(csr_out, str(body["csr_pem"]).encode(), private=False)
    if as_json:
        _emit_json(body)
        return
    _print_tls_certificate(body, f"TLS certificate {tls_certificate_id}")


@tls_cert_group.command("replace")
def tls_cert_replace(
    tls_certificate_id: TlsIdArgument,
    app: AppOption,
    replacement: Annotated[
        str, typer.Option("--with", help="Id of the certificate taking over its domains.")
    ],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move every custom domain using a certificate to its replacement, at once."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.replace_tls_certificate(app, tls_certificate_id, replacement_id=replacement)
    if as_json:
        _emit_json(body)
        return
    _print_tls_certificate(body, f"TLS certificate {replacement} now serves")


@tls_cert_group.command("delete")
def tls_cert_delete(
    tls_certificate_id: TlsIdArgument,
    app: AppOption,
    yes: YesOption = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a TLS certificate and its key (refused while a domain uses it)."""
    _confirm(f"Delete TLS certificate {tls_certificate_id} and its private key?", yes)
    with _connect(server, token, as_json=as_json) as api:
        api.delete_tls_certificate(app, tls_certificate_id)
    if not as_json:
        _say(f"Deleted TLS certificate {tls_certificate_id}.")


# -- domains --------------------------------------------------------------------------------

domain_group = typer.Typer(help="An environment's hostnames (live).", no_args_is_help=True)
remote_app.add_typer(domain_group, name="domain", rich_help_panel=_PANEL_INCOMING)
HostnameArgument = Annotated[str, typer.Argument(help="The hostname.")]


def _domain_row(domain: JsonObject) -> Sequence[Any]:
    certificate = domain.get("certificate")
    if not isinstance(certificate, dict):
        return (domain.get("hostname"), domain.get("kind"), None, None, None)
    return (
        domain.get("hostname"),
        domain.get("kind"),
        certificate.get("status"),
        _when(certificate.get("not_after")),
        certificate.get("id"),
    )


_DOMAIN_COLUMNS: Final = ("hostname", "kind", "status", "valid until", "certificate")


@domain_group.command("add")
def domain_add(
    hostname: HostnameArgument,
    app: AppOption,
    env: EnvOption,
    certificate: Annotated[
        str, typer.Option("--certificate", help="Id of one of the app's TLS certificates.")
    ],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Serve a custom hostname from the environment with one of the app's certificates."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.add_custom_domain(app, env, hostname=hostname, certificate_id=certificate)
    if as_json:
        _emit_json(body)
        return
    _stdout().print(_table(_DOMAIN_COLUMNS, [_domain_row(body)], title="Added"))


@domain_group.command("list")
def domain_list(
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The default hostname, then the custom domains."""
    with _connect(server, token, as_json=as_json) as api:
        domains = api.list_domains(app, env)
    if as_json:
        _emit_json(domains)
        return
    _print_rows(_DOMAIN_COLUMNS, [_domain_row(d) for d in domains], empty="No hostnames.")


@domain_group.command("remove")
def domain_remove(
    hostname: HostnameArgument,
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop serving a custom hostname."""
    with _connect(server, token, as_json=as_json) as api:
        api.remove_custom_domain(app, env, hostname)
    if not as_json:
        _say(f"{hostname} is no longer served by {app}/{env}.")


# -- access profiles ------------------------------------------------------------------------

access_profile_group = typer.Typer(
    help="Who may call an app: IP ranges and client CAs (live).", no_args_is_help=True
)
remote_app.add_typer(access_profile_group, name="access-profile", rich_help_panel=_PANEL_INCOMING)
ProfileArgument = Annotated[str, typer.Argument(help="The profile's name.")]


def _ca_tree(certificates: Sequence[Any], title: str) -> Tree:
    tree = Tree(Text(title, style="bold"))

    def grow(branch: Tree, nodes: Sequence[Any]) -> None:
        for node in nodes:
            if not isinstance(node, dict):
                continue
            label = Text("✓ " if node.get("selected") else "  ", style="green")
            label.append(str(node.get("subject")))
            label.append(
                f"  until {_when(node.get('not_after'))}  {node.get('sha256_fingerprint')}",
                style="dim",
            )
            grow(branch.add(label), node.get("children") or [])

    grow(tree, certificates)
    return tree


def _print_ca_tree(body: JsonObject) -> None:
    certificates = body.get("certificates") or []
    if not certificates:
        _say("No client CAs: only the IP ranges let requests through.")
        return
    _stdout().print(_ca_tree(certificates, "Client CAs (✓ selected; none selected: all accepted)"))


def _print_access_profile(body: JsonObject) -> None:
    _print_details(
        f"Access profile {body.get('name')}",
        [
            ("IP ranges", body.get("ip_ranges")),
            ("created", _when(body.get("created_at"))),
            ("updated", _when(body.get("updated_at"))),
        ],
    )
    _print_ca_tree(body)


@access_profile_group.command("create")
def access_profile_create(
    name: ProfileArgument,
    app: AppOption,
    ip_range: IpRangeOption = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an access profile."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.create_access_profile(app, name, ip_ranges=ip_range or ())
    _show(body, as_json, _print_access_profile)


@access_profile_group.command("list")
def access_profile_list(
    app: AppOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The app's access profiles."""
    with _connect(server, token, as_json=as_json) as api:
        profiles = api.list_access_profiles(app)
    if as_json:
        _emit_json(profiles)
        return
    _print_rows(
        ("name", "IP ranges", "client CAs", "updated"),
        [
            (
                p.get("name"),
                p.get("ip_ranges"),
                _count_nodes(p.get("certificates") or []),
                _when(p.get("updated_at")),
            )
            for p in profiles
        ],
        empty=f"App {app} has no access profiles.",
    )


def _count_nodes(nodes: Sequence[Any]) -> int:
    return sum(1 + _count_nodes(n.get("children") or []) for n in nodes if isinstance(n, dict))


@access_profile_group.command("show")
def access_profile_show(
    name: ProfileArgument,
    app: AppOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """A profile's IP ranges and its client CAs as a tree."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.get_access_profile(app, name)
    _show(body, as_json, _print_access_profile)


@access_profile_group.command("update")
def access_profile_update(
    name: ProfileArgument,
    app: AppOption,
    ip_range: IpRangeOption = None,
    no_ip_ranges: Annotated[
        bool, typer.Option("--no-ip-ranges", help="Remove every IP range.")
    ] = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replace a profile's IP ranges (live)."""
    if bool(ip_range) == no_ip_ranges:
        raise _usage_error("give the new ranges with --ip-range, or --no-ip-ranges")
    with _connect(server, token, as_json=as_json) as api:
        body = api.update_access_profile(app, name, ip_ranges=ip_range or [])
    _show(body, as_json, _print_access_profile)


@access_profile_group.command("delete")
def access_profile_delete(
    name: ProfileArgument,
    app: AppOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a profile (refused while a path rule names it)."""
    with _connect(server, token, as_json=as_json) as api:
        api.delete_access_profile(app, name)
    if not as_json:
        _say(f"Deleted access profile {name}.")


@access_profile_group.command("add-cas")
def access_profile_add_cas(
    name: ProfileArgument,
    app: AppOption,
    file: Annotated[Path, _input_file("PEM with CA certificates, or one DER certificate.")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add client CA certificates to a profile (merged; shown as a tree)."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.upload_client_cas(app, name, file=_upload(file))
    if as_json:
        _emit_json(body)
        return
    _print_ca_tree(body)
    _print_warnings(body)


@access_profile_group.command("select-cas")
def access_profile_select_cas(
    name: ProfileArgument,
    app: AppOption,
    fingerprint: Annotated[
        list[str] | None,
        typer.Option(
            "--fingerprint", help="SHA-256 of an accepted CA (repeatable).", show_default=False
        ),
    ] = None,
    none: Annotated[
        bool, typer.Option("--none", help="Select none: every CA of the profile is accepted.")
    ] = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Choose the CAs whose client certificates are accepted (each with the CAs below it)."""
    if bool(fingerprint) == none:
        raise _usage_error("give the accepted CAs with --fingerprint, or --none")
    with _connect(server, token, as_json=as_json) as api:
        body = api.select_client_cas(app, name, selected=fingerprint or [])
    _show(body, as_json, _print_ca_tree)


@access_profile_group.command("remove-ca")
def access_profile_remove_ca(
    name: ProfileArgument,
    fingerprint: Annotated[str, typer.Argument(help="SHA-256 of the CA to remove.")],
    app: AppOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove one client CA from a profile."""
    with _connect(server, token, as_json=as_json) as api:
        api.remove_client_ca(app, name, fingerprint)
    if not as_json:
        _say(f"Removed the client CA {fingerprint} from {name}.")


# -- IP deny profiles -----------------------------------------------------------------------

ip_deny_group = typer.Typer(
    help="Address ranges refused on the environments they are attached to (live).",
    no_args_is_help=True,
)
remote_app.add_typer(ip_deny_group, name="ip-deny-profile", rich_help_panel=_PANEL_INCOMING)


def _print_ip_deny_profile(body: JsonObject) -> None:
    _print_details(
        f"IP deny profile {body.get('name')}",
        [
            ("IP ranges", body.get("ip_ranges")),
            ("attached to", body.get("environments")),
            ("updated", _when(body.get("updated_at"))),
        ],
    )


@ip_deny_group.command("create")
def ip_deny_create(
    name: ProfileArgument,
    app: AppOption,
    ip_range: IpRangeOption = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an IP deny profile."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.create_ip_deny_profile(app, name, ip_ranges=ip_range or ())
    _show(body, as_json, _print_ip_deny_profile)


@ip_deny_group.command("list")
def ip_deny_list(
    app: AppOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The app's IP deny profiles and where they are attached."""
    with _connect(server, token, as_json=as_json) as api:
        profiles = api.list_ip_deny_profiles(app)
    if as_json:
        _emit_json(profiles)
        return
    _print_rows(
        ("name", "IP ranges", "attached to", "updated"),
        [
            (p.get("name"), p.get("ip_ranges"), p.get("environments"), _when(p.get("updated_at")))
            for p in profiles
        ],
        empty=f"App {app} has no IP deny profiles.",
    )


@ip_deny_group.command("show")
def ip_deny_show(
    name: ProfileArgument,
    app: AppOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One IP deny profile."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.get_ip_deny_profile(app, name)
    _show(body, as_json, _print_ip_deny_profile)


@ip_deny_group.command("update")
def ip_deny_update(
    name: ProfileArgument,
    app: AppOption,
    ip_range: IpRangeOption = None,
    no_ip_ranges: Annotated[
        bool, typer.Option("--no-ip-ranges", help="Remove every IP range.")
    ] = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replace an IP deny profile's ranges (live)."""
    if bool(ip_range) == no_ip_ranges:
        raise _usage_error("give the new ranges with --ip-range, or --no-ip-ranges")
    with _connect(server, token, as_json=as_json) as api:
        body = api.update_ip_deny_profile(app, name, ip_ranges=ip_range or [])
    _show(body, as_json, _print_ip_deny_profile)


@ip_deny_group.command("delete")
def ip_deny_delete(
    name: ProfileArgument,
    app: AppOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete an IP deny profile (refused while attached)."""
    with _connect(server, token, as_json=as_json) as api:
        api.delete_ip_deny_profile(app, name)
    if not as_json:
        _say(f"Deleted IP deny profile {name}.")


@ip_deny_group.command("attach")
def ip_deny_attach(
    app: AppOption,
    env: EnvOption,
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Every profile to attach: the whole set.", show_default=False),
    ] = None,
    none: Annotated[bool, typer.Option("--none", help="Detach every profile.")] = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set the IP deny profiles attached to an environment, as a whole set (live)."""
    if bool(names) == none:
        raise _usage_error("name the profiles to attach, or give --none")
    with _connect(server, token, as_json=as_json) as api:
        body = api.attach_ip_deny_profiles(app, env, profiles=names or [])
    if as_json:
        _emit_json(body)
        return
    _print_attached(body, app, env)


def _print_attached(body: JsonObject, app: str, env: str) -> None:
    profiles = body.get("profiles") or []
    if profiles:
        _say(f"IP deny profiles attached to {app}/{env}: {', '.join(map(str, profiles))}.")
    else:
        _say(f"No IP deny profile is attached to {app}/{env}.")


@ip_deny_group.command("attached")
def ip_deny_attached(
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The IP deny profiles attached to an environment."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.attached_ip_deny_profiles(app, env)
    if as_json:
        _emit_json(body)
        return
    _print_attached(body, app, env)


# -- path rules -----------------------------------------------------------------------------

path_rules_group = typer.Typer(
    help="An environment's path rules (staged until restart).", no_args_is_help=True
)
remote_app.add_typer(path_rules_group, name="path-rules", rich_help_panel=_PANEL_INCOMING)


def _rule_text(rule: Any) -> Text:
    if not isinstance(rule, dict):
        return Text(_NOTHING, style="dim")
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
    _print_rows(("prefix", "applied", "staged", ""), rows, empty="No path rules: requests pass.")


@path_rules_group.command("show")
def path_rules_show(
    app: AppOption,
    env: EnvOption,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The staged and the applied path rules."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.path_rules(app, env)
    _show(body, as_json, _print_path_rules)


@path_rules_group.command("set")
def path_rules_set(
    app: AppOption,
    env: EnvOption,
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            help='JSON {prefix: {"rule": ..., "profile"?: ...}} (- reads standard input).',
        ),
    ],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stage the whole set of path rules ({} removes every rule); restart applies them."""
    rules = _read_json_file(file, "path rules")
    if not isinstance(rules, dict):
        raise _usage_error(f"{file} must hold a JSON object from path prefix to rule")
    with _connect(server, token, as_json=as_json) as api:
        body = api.replace_path_rules(app, env, rules)
    if as_json:
        _emit_json(body)
        return
    _print_path_rules(body)
    _say(f"Staged; apply with: certward restart --app {app} --env {env}", style="dim")


# -- inventory, metrics, health -------------------------------------------------------------


@remote_app.command("inventory", rich_help_panel=_PANEL_PLATFORM)
def inventory_command(
    status: Annotated[
        CertificateStatus | None,
        typer.Option("--status", help="Only this status.", show_default=False),
    ] = None,
    kind: Annotated[
        InventoryKind | None, typer.Option("--kind", help="Only this kind.", show_default=False)
    ] = None,
    app: OptionalAppOption = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            max=1000,
            help="At most this many (API default 100).",
            show_default=False,
        ),
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every certificate the token may see, soonest expiry first."""
    with _connect(server, token, as_json=as_json) as api:
        items = api.inventory(
            status=status.value if status else None,
            kind=kind.value if kind else None,
            app=app,
            limit=limit,
        )
    if as_json:
        _emit_json(items)
        return
    _print_rows(
        ("status", "valid until", "kind", "app", "environment", "subject or hostnames", "id"),
        [
            (
                i.get("status"),
                _when(i.get("not_after")),
                i.get("kind"),
                i.get("app"),
                i.get("environment"),
                i.get("hostnames") or i.get("subject"),
                i.get("id"),
            )
            for i in items
        ],
        empty="No certificates match.",
    )


@remote_app.command("metrics", rich_help_panel=_PANEL_PLATFORM)
def metrics_command(server: ServerOption = DEFAULT_SERVER, token: TokenOption = None) -> None:
    """The Prometheus metrics, as text (admin token)."""
    with _connect(server, token) as api:
        text = api.metrics()
    typer.echo(text, nl=False)


@remote_app.command("health", rich_help_panel=_PANEL_PLATFORM)
def health_command(server: ServerOption = DEFAULT_SERVER, as_json: JsonOption = False) -> None:
    """Whether the server answers (no token needed)."""
    with _connect(server, None, as_json=as_json, needs_token=False) as api:
        body = api.health()
    if as_json:
        _emit_json(body)
        return
    _say(f"certward at {api.server}: {body.get('status')}.")


# -- tokens and audit -----------------------------------------------------------------------

token_group = typer.Typer(help="API tokens.", no_args_is_help=True)
remote_app.add_typer(token_group, name="token", rich_help_panel=_PANEL_PLATFORM)


@token_group.command("create")
def token_create(
    role: Annotated[Role, typer.Option("--role", help="What the token may do.")],
    app: Annotated[
        str | None, typer.Option("--app", help="The app (all roles but admin).", show_default=False)
    ] = None,
    env: Annotated[
        str | None,
        typer.Option("--env", help="The environment (runtime tokens).", show_default=False),
    ] = None,
    description: Annotated[str, typer.Option("--description", help="Who or what uses it.")] = "",
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a token; its value is shown this once."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.create_token(role=role.value, app=app, environment=env, description=description)
    if as_json:
        _emit_json(body)
        return
    _print_details(
        f"Token {body.get('id')}",
        [
            ("role", body.get("role")),
            ("app", body.get("app")),
            ("environment", body.get("environment")),
            ("description", body.get("description")),
        ],
    )
    _stderr().print(Text("The token's value, shown this once:", style="bold"))
    typer.echo(str(body.get("token")))


@token_group.command("list")
def token_list(
    app: OptionalAppOption = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The tokens the caller may see (never their values)."""
    with _connect(server, token, as_json=as_json) as api:
        tokens = api.list_tokens(app=app)
    if as_json:
        _emit_json(tokens)
        return
    _print_rows(
        ("id", "role", "app", "environment", "description", "created", "revoked"),
        [
            (
                t.get("id"),
                t.get("role"),
                t.get("app"),
                t.get("environment"),
                t.get("description"),
                _when(t.get("created_at")),
                _when(t.get("revoked_at")) if t.get("revoked_at") else None,
            )
            for t in tokens
        ],
        empty="No tokens.",
    )


@token_group.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (not its value).")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a token: it stops working at once."""
    with _connect(server, token, as_json=as_json) as api:
        body = api.revoke_token(token_id)
    if as_json:
        _emit_json(body)
        return
    _say(f"Revoked token {body.get('id')} ({body.get('role')}).")


@remote_app.command("audit", rich_help_panel=_PANEL_PLATFORM)
def audit_command(
    app: OptionalAppOption = None,
    before: Annotated[
        int | None,
        typer.Option("--before", min=1, help="Only events older than this id.", show_default=False),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            max=500,
            help="At most this many (API default 100).",
            show_default=False,
        ),
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Audit events, newest first."""
    with _connect(server, token, as_json=as_json) as api:
        events = api.audit(app=app, before=before, limit=limit)
    if as_json:
        _emit_json(events)
        return
    _print_rows(
        ("id", "at", "action", "object", "app", "by token"),
        [
            (
                e.get("id"),
                _when(e.get("at")),
                e.get("action"),
                f"{e.get('object_type')} {e.get('object_id')}",
                e.get("app"),
                e.get("actor_token_id"),
            )
            for e in events
        ],
        empty="No audit events.",
    )


# -- the platform CA ------------------------------------------------------------------------

platform_ca_group = typer.Typer(
    help="The platform CA's public certificates and CRLs (no token needed).",
    no_args_is_help=True,
)
remote_app.add_typer(platform_ca_group, name="platform-ca", rich_help_panel=_PANEL_PLATFORM)
AllOption = Annotated[
    bool, typer.Option("--all", help="Every published root and intermediate (show: retired too).")
]
CaIdArgument = Annotated[str, typer.Argument(help="The CA certificate's id.")]
OutOption = Annotated[Path, typer.Option("--out", help="File to write (DER).")]


@platform_ca_group.command("show")
def platform_ca_show(
    every: AllOption = False, server: ServerOption = DEFAULT_SERVER, as_json: JsonOption = False
) -> None:
    """The platform CA's certificates with their state."""
    with _connect(server, None, as_json=as_json, needs_token=False) as api:
        certificates = api.platform_ca_certificates(every=every)
    if as_json:
        _emit_json(certificates)
        return
    _print_rows(
        ("id", "kind", "state", "subject", "valid until", "SHA-256"),
        [
            (
                c.get("id"),
                c.get("kind"),
                c.get("state"),
                c.get("subject"),
                _when(c.get("not_after")),
                c.get("sha256_fingerprint"),
            )
            for c in certificates
        ],
        empty="No published CA certificates.",
    )


@platform_ca_group.command("pem")
def platform_ca_pem(
    every: AllOption = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write here (else printed).", show_default=False)
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """The active root (what machines import to trust default hostnames) as PEM."""
    with _connect(server, None, needs_token=False) as api:
        pem = api.platform_ca_pem(every=every)
    if out is None:
        typer.echo(pem, nl=False)
        return
    _write_file(out, pem.encode(), private=False)
    _say(f"Wrote the platform CA to {out}.")


@platform_ca_group.command("certificate")
def platform_ca_certificate(
    ca_id: CaIdArgument, out: OutOption, server: ServerOption = DEFAULT_SERVER
) -> None:
    """Download one CA certificate in DER."""
    with _connect(server, None, needs_token=False) as api:
        download = api.platform_ca_certificate(ca_id)
    _write_file(out, download.content, private=False)
    _say(f"Wrote CA certificate {ca_id} to {out}.")


@platform_ca_group.command("crl")
def platform_ca_crl(
    ca_id: CaIdArgument, out: OutOption, server: ServerOption = DEFAULT_SERVER
) -> None:
    """Download one CA's certificate revocation list in DER."""
    with _connect(server, None, needs_token=False) as api:
        download = api.platform_ca_crl(ca_id)
    _write_file(out, download.content, private=False)
    _say(f"Wrote the CRL of {ca_id} to {out}.")


# -- the nginx data plane ---------------------------------------------------------------------

data_plane_group = typer.Typer(
    help="What the nginx data plane serves (platform admin).", no_args_is_help=True
)
remote_app.add_typer(data_plane_group, name="data-plane", rich_help_panel=_PANEL_PLATFORM)


@data_plane_group.command("excluded")
def data_plane_excluded(
    server: ServerOption = DEFAULT_SERVER, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """The sites nginx leaves out of its configuration, why, and since when."""
    with _connect(server, token, as_json=as_json) as api:
        sites = api.excluded_sites()
    if as_json:
        _emit_json(sites)
        return
    _print_rows(
        ("hostname", "app", "environment", "reason", "since"),
        [
            (s.get("hostname"), s.get("app"), s.get("environment"), s.get("reason"), s.get("since"))
            for s in sites
        ],
        empty="No site is left out: nginx serves every one.",
    )
