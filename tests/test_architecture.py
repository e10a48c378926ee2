"""The rules docs/architecture.md states, held by reading the source with ast.

- **Pure modules do no IO.** A module is pure when its docstring says so (``PURE:``,
  ``Pure:``/``Pure.``, ``(pure)``/``(pure: ...)`` or "a pure function"), and every
  module of `certward.pki` is; docs/architecture.md marks the same modules PURE.
- **Only certward/clock.py reads the clock**, in any spelling: names are resolved
  through each module's imports, aliases included.
- **Only certward/randomness.py draws randomness**: everything else takes a
  `Randomness` (the services `Context` carries one).
- **Layers import inwards** (`LAYERS`, the table of docs/architecture.md): values and
  rules, then services, then the API and the console, then the CLI; the remote CLI and
  the API client talk to the REST API only.
- **docs/architecture.md's module list is the tree**: every path it names exists, and
  every module is named.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "certward"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
PURE_PACKAGES = ["pki"]
IO_MODULES = {
    "os",
    "pathlib",
    "io",
    "socket",
    "ssl",
    "subprocess",
    "shutil",
    "tempfile",
    "time",
    "urllib",
    "http",
    "httpx",
    "requests",
    "certifi",
    "acme",
    "sqlalchemy",
    "alembic",
    "certward.db",
    "certward.model",
    "certward.settings",
    "certward.clock",
    "certward.randomness",
    "certward.trust",
    "certward.cli.app",
}
PURE_EXCEPTIONS = {"urllib.parse", "socket.inet_aton", "http.HTTPStatus"}  # values only
DATA_PLANE_RUNNERS = {"gateway_runner.py"}

# How a module docstring declares the module itself pure.
PURITY_CLAIM = re.compile(r"\bPURE\b|\bPure[:.]|\(pure[:)]|\ba pure function\b")
# Docstrings that speak of pure code elsewhere without claiming purity for themselves.
SPEAKS_OF_PURE_CODE = {
    "clock.py",
    "bundles/__init__.py",
    "dataplane/__init__.py",
    "issuing/__init__.py",
    "randomness.py",
    "services/__init__.py",
}

CLOCK_MODULE = "clock.py"
# Qualified names that read the clock whenever they are called.
CLOCK_READERS = {
    "datetime.datetime.now",
    "datetime.datetime.utcnow",
    "datetime.datetime.today",
    "datetime.date.today",
    "time.time",
    "time.time_ns",
    "time.monotonic",
    "time.monotonic_ns",
    "time.perf_counter",
    "time.perf_counter_ns",
    "time.process_time",
    "time.process_time_ns",
    "time.thread_time",
    "time.thread_time_ns",
    "time.clock_gettime",
    "time.clock_gettime_ns",
    "os.times",
}
# Qualified names that read the clock when called without the time to convert.
CLOCK_READERS_WITHOUT_ARGUMENT = {
    "time.localtime": 0,
    "time.gmtime": 0,
    "time.ctime": 0,
    "time.asctime": 0,
    "time.strftime": 1,
}

RANDOMNESS_MODULE = "randomness.py"
RANDOM_MODULES = {"random", "secrets"}  # the standard library's, not certward.secrets
RANDOM_FUNCTIONS = {"os.urandom", "os.getrandom", "uuid.uuid1", "uuid.uuid4"}


def modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def name_of(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


@cache
def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    for child in ast.iter_child_nodes(tree):
        if _is_type_checking(child):
            assert isinstance(child, ast.If)
            for other in child.orelse:
                yield other
                yield from _runtime_nodes(other)
            continue
        yield child
        yield from _runtime_nodes(child)


def imported_names(path: Path) -> set[str]:
    """What ``path`` imports at run time: ``os`` for ``import os``, ``os.path`` for
    ``from os import path``."""
    names: set[str] = set()
    for node in _runtime_nodes(parse(path)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


class Names:
    """What each name of one module stands for, from its imports (``dt`` -> ``datetime``)."""

    def __init__(self, tree: ast.Module) -> None:
        self.bound: dict[str, str] = {}
        self.imported: list[tuple[ast.AST, str]] = []  # (node, qualified name imported)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.bound[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        self.bound[top] = top
                    self.imported.append((node, alias.name))
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    qualified = f"{node.module}.{alias.name}"
                    self.bound[alias.asname or alias.name] = qualified
                    self.imported.append((node, qualified))

    def qualified(self, node: ast.AST) -> str | None:
        """``dt.datetime.now`` -> ``datetime.datetime.now`` when ``dt`` is an imported name."""
        if isinstance(node, ast.Name):
            return self.bound.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualified(node.value)
            return None if base is None else f"{base}.{node.attr}"
        return None

    def references(self, tree: ast.Module) -> Iterator[tuple[ast.AST, str]]:
        """Every imported name a module names, qualified, outermost attribute first."""
        inner: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                inner.add(id(node.value))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name | ast.Attribute) and id(node) not in inner:
                qualified = self.qualified(node)
                if qualified is not None:
                    yield node, qualified
        yield from self.imported


def clock_reads(source: str) -> list[str]:
    """Where ``source`` reads the clock, as ``line: qualified name``."""
    tree = ast.parse(source)
    names = Names(tree)
    calls = {id(node.func): node for node in ast.walk(tree) if isinstance(node, ast.Call)}
    found = []
    for node, qualified in names.references(tree):
        prefixes = [qualified.rsplit(".", n)[0] for n in range(qualified.count(".") + 1)]
        if any(prefix in CLOCK_READERS for prefix in prefixes):
            found.append(f"{getattr(node, 'lineno', 0)}: {qualified}")
        elif qualified in CLOCK_READERS_WITHOUT_ARGUMENT:
            call = calls.get(id(node))
            arguments = CLOCK_READERS_WITHOUT_ARGUMENT[qualified]
            if call is None or len(call.args) + len(call.keywords) <= arguments:
                found.append(f"{getattr(node, 'lineno', 0)}: {qualified}")
    return sorted(set(found))


def randomness_draws(source: str) -> list[str]:
    """Where ``source`` draws randomness itself, as ``line: qualified name``."""
    tree = ast.parse(source)
    found = []
    for node, qualified in Names(tree).references(tree):
        top = qualified.split(".")[0]
        if top in RANDOM_MODULES or any(
            qualified == name or qualified.startswith(name + ".") for name in RANDOM_FUNCTIONS
        ):
            found.append(f"{getattr(node, 'lineno', 0)}: {qualified}")
    return sorted(set(found))


def declares_purity(path: Path) -> bool:
    return bool(PURITY_CLAIM.search(ast.get_docstring(parse(path)) or ""))


@cache
def pure_modules() -> list[Path]:
    """The modules that must do no IO: all of certward.pki, and those that say they are pure."""
    in_packages = {p for package in PURE_PACKAGES for p in modules(PACKAGE / package)}
    return sorted(in_packages | {p for p in modules(PACKAGE) if declares_purity(p)})


@pytest.mark.parametrize("path", pure_modules(), ids=name_of)
def test_pure_modules_import_nothing_that_does_io(path: Path) -> None:
    """Pure code takes values (and an explicit ``at``) and returns values.

    No files, network, clock, randomness of its own or database: a caller passes them.
    """
    forbidden = {
        name
        for name in imported_names(path)
        if not any(name == ok or name.startswith(ok + ".") for ok in PURE_EXCEPTIONS)
        and any(name == io or name.startswith(io + ".") for io in IO_MODULES)
    }
    assert not forbidden, f"{path.name} imports {sorted(forbidden)}"


def test_the_pure_modules_are_the_ones_the_documents_name() -> None:
    """A module that speaks of purity claims it in the words the rule reads, and docs agree.

    So a docstring cannot say "pure" in a form the rule misses, and every module
    docs/architecture.md marks PURE is checked.
    """
    checked = {name_of(p) for p in pure_modules()}
    unread = [
        name_of(p)
        for p in modules(PACKAGE)
        if re.search(r"(?i)\bpure\b", ast.get_docstring(parse(p)) or "")
        and name_of(p) not in checked
        and name_of(p) not in SPEAKS_OF_PURE_CODE
    ]
    assert not unread, f"docstrings that mention purity without claiming it: {unread}"
    documented = documented_pure()
    assert documented
    missing = [
        doc
        for doc in documented
        if doc.rstrip("/") not in PURE_PACKAGES and PACKAGE / doc not in pure_modules()
    ]
    assert not missing, f"docs/architecture.md calls these PURE, their docstrings do not: {missing}"


def documented_pure() -> list[str]:
    """The paths docs/architecture.md's module map marks PURE (``dataplane/state.py``)."""
    return [path for path, description in module_list() if description[:1] == ["PURE"]]


def module_list() -> list[tuple[str, list[str]]]:
    """Every path docs/architecture.md's module list names (``dataplane/state.py``,
    ``bundles/``), with the words that describe it: the leading words of each line at
    two spaces are paths under src/certward, at four paths under the package above."""
    text = ARCHITECTURE.read_text()
    block = text[text.index("```\nsrc/certward/") :].split("```", 2)[1]
    directory = ""
    found = []
    for line in block.splitlines()[2:]:
        indent = len(line) - len(line.lstrip())
        if indent not in (2, 4):
            continue
        words = line.split()
        paths = list(itertools.takewhile(lambda word: word.endswith((".py", "/")), words))
        description = [word.rstrip(":,") for word in words[len(paths) :]]
        if indent == 2:
            directory = paths[0] if len(paths) == 1 and paths[0].endswith("/") else ""
        else:
            paths = [directory + path for path in paths]
        found += [(path, description) for path in paths]
    return found


@pytest.mark.parametrize(
    "name",
    [
        "snapshot.py",
        "bundles/files.py",
        "expiry.py",
        "egress.py",
        "rate_limits.py",
        "issuing/ca.py",
        "issuing/renewal.py",
        "dataplane/state.py",
        "dataplane/access.py",
        "dataplane/request_target.py",
        "dataplane/nginx_client_ca.py",
        "authorization.py",
        "vocabulary.py",
    ],
)
def test_the_rules_and_values_are_checked_as_pure(name: str) -> None:
    """The docstring convention keeps covering the modules the architecture is built on."""
    assert PACKAGE / name in pure_modules()


@pytest.mark.parametrize("path", modules(PACKAGE), ids=name_of)
def test_only_the_clock_module_reads_the_clock(path: Path) -> None:
    """The clock is read only in certward/clock.py; everything else takes a `Clock`.

    An asyncio loop's ``loop.time()`` is not the system clock for this rule: it is the
    clock the loop schedules its timers by (uvloop's is cached per iteration), so
    deadlines armed with ``call_at`` must be read from it.
    """
    if name_of(path) == CLOCK_MODULE:
        return
    reads = clock_reads(path.read_text())
    assert not reads, f"{name_of(path)} reads the clock: {reads}"


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import datetime\ndatetime.now()",
        "import datetime\ndatetime.datetime.now()",
        "import datetime as dt\ndt.datetime.now()",
        "from datetime import datetime as dt\ndt.now()",
        "from datetime import datetime as moment\nmoment.utcnow()",
        "from datetime import date\ndate.today()",
        "import time\ntime.time()",
        "import time as _time\n_time.monotonic()",
        "import time\nstarted = time.perf_counter",
        "from time import monotonic\nmonotonic()",
        "from time import monotonic_ns as now",
        "from time import time_ns",
        "import os\nos.times()",
        "import time\ntime.localtime()",
        "import time\ntime.strftime('%Y')",
        "def f():\n    import time\n    return time.monotonic()",
    ],
)
def test_every_spelling_of_the_clock_is_caught(source: str) -> None:
    assert clock_reads(source)


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import datetime\ndatetime.fromisoformat('2026-01-01')",
        "import time\ntime.sleep(1)",
        "import time\ntime.localtime(0)",
        "from sqlalchemy import func\nfunc.now()",
        "now = clock.now()",
        "deadline = loop.time() + 5",
    ],
)
def test_what_is_not_the_clock_is_not_caught(source: str) -> None:
    assert not clock_reads(source)


@pytest.mark.parametrize("path", modules(PACKAGE), ids=name_of)
def test_only_the_randomness_module_draws_randomness(path: Path) -> None:
    """Tokens, keys' passwords, jitter and temporary names come from a `Randomness`.

    Services take it from the `Context`, pure code is handed one, and the rest (the
    data plane's temporary names, the secret box's nonces, row ids) uses
    ``SYSTEM_RANDOMNESS`` from that module.
    (Keys and certificate serials are drawn by the cryptography library from
    OpenSSL's generator.)
    """
    if name_of(path) == RANDOMNESS_MODULE:
        return
    draws = randomness_draws(path.read_text())
    assert not draws, f"{name_of(path)} draws randomness itself: {draws}"


@pytest.mark.parametrize(
    "source",
    [
        "import secrets\nsecrets.token_hex(4)",
        "from secrets import token_urlsafe",
        "import random\nrandom.Random(1)",
        "from random import SystemRandom as R",
        "import os\nos.urandom(16)",
        "from os import urandom",
        "import uuid\nuuid.uuid4()",
    ],
)
def test_every_spelling_of_randomness_is_caught(source: str) -> None:
    assert randomness_draws(source)


def test_the_secret_box_module_is_not_the_secrets_module() -> None:
    assert not randomness_draws("from certward import secrets\nsecrets.SecretBox")
    assert not randomness_draws("from certward.secrets import SecretBox")


@pytest.mark.parametrize(
    "path",
    [
        PACKAGE / "dataplane" / name
        for name in (
            "state.py",
            "access.py",
            "nginx.py",
            "nginx_access.py",
            "nginx_syntax.py",
            "request_target.py",
            "caller_headers.py",
        )
    ]
    + [PACKAGE / "path_rule_checks.py"],
    ids=name_of,
)
def test_the_data_plane_rules_are_pure(path: Path) -> None:
    """The state, the decision and the nginx rendering do no IO."""
    forbidden = {
        name
        for name in imported_names(path)
        if not any(name == ok or name.startswith(ok + ".") for ok in PURE_EXCEPTIONS)
        and any(name == io or name.startswith(io + ".") for io in IO_MODULES)
    }
    assert not forbidden, f"{path.name} imports {sorted(forbidden)}"


def test_no_grab_bag_modules() -> None:
    """Modules are named after what they do, never utils/helpers/manager."""
    vague = {"utils.py", "helpers.py", "manager.py", "misc.py", "common.py"}
    assert not [p for p in modules(PACKAGE) if p.name in vague]


@dataclass(frozen=True)
class Layer:
    """The modules of one layer (``members``, by path under src/certward) and the
    modules and libraries they may not import (``banned``, dotted prefixes), but for the
    ``allowed`` prefixes among them."""

    name: str
    members: Callable[[str], bool]
    banned: tuple[str, ...]
    allowed: Callable[[str], bool] = lambda name: False


def dotted(path: Path) -> str:
    """``certward.dataplane.state`` for dataplane/state.py (a package for its __init__)."""
    return "certward." + name_of(path).removesuffix(".py").replace("/", ".").removesuffix(
        ".__init__"
    )


def _is_pure(path: str) -> bool:
    return PACKAGE / path in pure_modules()


def _pure_import(name: str) -> bool:
    return any(name == dotted(p) or name.startswith(dotted(p) + ".") for p in pure_modules())


INTERFACES = (
    "certward.api",
    "certward.api_client",
    "certward.web",
    "certward.cli",
    "certward.server",
    "certward.worker",
)
STORAGE = (
    "certward.services",
    "certward.platform",
    "certward.db",
    "certward.model",
    "certward.migrations",
)
LAYERS = [
    Layer("values and rules (PURE)", _is_pure, INTERFACES + STORAGE),
    Layer(
        "services",
        lambda path: path.startswith("services/"),
        # of the data plane its values only (the state), never the serving modules
        (*INTERFACES, "certward.platform", "certward.dataplane"),
        allowed=_pure_import,
    ),
    Layer(
        "api and console",
        lambda path: path.startswith(("api/", "web/")),
        ("certward.cli", "certward.api_client", "certward.server", "certward.worker"),
    ),
    Layer(
        # certward.dataplane serves a DataPlaneState; only services/dataplane_feed builds
        # it. The gateway's runner is the one exception: it opens the installation and
        # hands each worker a follower of the feed.
        "data plane",
        lambda path: path.startswith("dataplane/") and path[10:] not in DATA_PLANE_RUNNERS,
        (*STORAGE, "certward.api", "certward.web", "certward.cli", "sqlalchemy"),
    ),
    Layer(
        "remote CLI and API client",
        lambda path: path.startswith(("cli/remote/", "api_client/")),
        (
            *STORAGE,
            "certward.api",
            "certward.web",
            "certward.server",
            "certward.worker",
            "sqlalchemy",
            "alembic",
            "fastapi",
        ),
    ),
    Layer("API client", lambda path: path.startswith("api_client/"), ("certward.cli",)),
]


def layer_violations(layer: Layer, path: Path) -> list[str]:
    """What ``path`` imports at run time (lazily too) that its layer may not."""
    return sorted(
        name
        for name in imported_names(path)
        if any(name == banned or name.startswith(banned + ".") for banned in layer.banned)
        and not layer.allowed(name)
    )


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_layers_import_inwards(layer: Layer) -> None:
    """The import rules of docs/architecture.md: a layer never reaches outwards."""
    members = [p for p in modules(PACKAGE) if layer.members(name_of(p))]
    assert members, f"no module is in the layer {layer.name}"
    broken = {name_of(path): found for path in members if (found := layer_violations(layer, path))}
    assert not broken, f"{layer.name} reach outwards: {broken}"


def test_a_layer_violation_is_caught(tmp_path: Path) -> None:
    """An outward import is found at module level and inside a function, and one made
    for annotations only is not."""
    module = tmp_path / "violation.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "from certward.dataplane.state import Site\n"
        "if TYPE_CHECKING:\n"
        "    from certward.model import App\n"
        "def serve() -> None:\n"
        "    from certward.dataplane.gateway import Gateway\n"
        "import certward.api.routes\n"
    )
    services = next(layer for layer in LAYERS if layer.name == "services")
    assert layer_violations(services, module) == [
        "certward.api.routes",
        "certward.dataplane.gateway.Gateway",
    ]


def test_every_path_the_module_list_names_exists() -> None:
    named = [path for path, _ in module_list()]
    assert named
    missing = [path for path in named if not (PACKAGE / path).exists()]
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_every_module_is_in_the_module_list() -> None:
    """A package's __init__.py is named by the package (``bundles/``), a migration
    revision by ``migrations/versions/``."""
    named = {path for path, _ in module_list()}
    unnamed = [
        name_of(path)
        for path in modules(PACKAGE)
        if name_of(path) not in named
        and not (path.name == "__init__.py" and f"{name_of(path.parent)}/" in named)
        and not (
            path.parent == PACKAGE / "migrations" / "versions" and "migrations/versions/" in named
        )
    ]
    assert not unnamed, f"docs/architecture.md's module list does not name: {unnamed}"
