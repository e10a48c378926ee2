"""One error tree, drawn as it is; one closed catalogue of refusal codes, documented."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import certward
from certward import errors
from certward.errors import CertwardError, RefusalCode
from certward.pki.problems import ProblemCode

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "certward"
API_DOC = ROOT / "docs" / "api.md"
CODE = re.compile(r"`([a-z][a-z0-9]*(?:-[a-z0-9]+)*)`")


def documented_codes() -> set[str]:
    """Every code named in docs/api.md's table of error codes."""
    text = API_DOC.read_text()
    start = text.index("| status | codes |")
    table = text[start : text.index("\n\n", start)]
    return set(CODE.findall(table))


def test_every_refusal_code_is_documented() -> None:
    assert {c.value for c in RefusalCode} - documented_codes() == set()


def test_nothing_is_documented_that_is_not_a_refusal_code() -> None:
    assert documented_codes() - {c.value for c in RefusalCode} == set()


def test_refusal_codes_are_kebab_case_and_distinct_from_problem_codes() -> None:
    for code in RefusalCode:
        assert CODE.fullmatch(f"`{code.value}`"), code
        assert code.name == code.value.upper().replace("-", "_")
    # A refusal code may equal a problem code only where both mean the same upload cap.
    assert {c.value for c in RefusalCode} & {c.value for c in ProblemCode} == {"too-large"}


def _literal_codes(path: Path) -> list[str]:
    """Where a module gives a code as a plain string instead of a catalogue member."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "code":
            value = node.value
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if not any(isinstance(t, ast.Name) and t.id == "default_code" for t in targets):
                continue
            value = node.value
        else:
            continue
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {value.value!r}")
    return found


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_no_code_is_a_plain_string(path: Path) -> None:
    assert _literal_codes(path) == []


def drawn_tree() -> dict[str, str | None]:
    """Each class the errors.py docstring draws, with the class it is drawn under."""
    doc = errors.__doc__ or ""
    block = doc[doc.index("::\n") + 3 : doc.index("\nRule failures")]
    parents: dict[str, str | None] = {}
    path: list[str] = []
    for line in block.splitlines():
        drawn = re.match(r"    ([│├└─ ]*)([A-Z]\w+)(?:\s|$)", line)
        if drawn is None:
            continue
        depth = len(drawn.group(1)) // 4
        del path[depth:]
        parents[drawn.group(2)] = path[-1] if path else None
        path.append(drawn.group(2))
    return parents


def actual_tree() -> dict[str, str | None]:
    """Each subclass of CertwardError in every certward module, with its base."""
    for module in pkgutil.walk_packages(certward.__path__, "certward."):
        if module.name.endswith("__main__") or module.name == "certward.migrations.env":
            continue  # the CLI run as a script; alembic's environment, run by alembic
        importlib.import_module(module.name)
    parents: dict[str, str | None] = {CertwardError.__name__: None}
    pending = [CertwardError]
    while pending:
        base = pending.pop()
        for sub in base.__subclasses__():
            assert sub.__name__ not in parents, f"two error classes named {sub.__name__}"
            parents[sub.__name__] = base.__name__
            pending.append(sub)
    return parents


def test_the_drawn_tree_is_the_class_hierarchy() -> None:
    assert drawn_tree() == actual_tree()
