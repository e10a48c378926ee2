"""The refusal codes are one closed catalogue, documented and used everywhere."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from certward.errors import RefusalCode
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
