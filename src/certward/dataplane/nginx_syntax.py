"""nginx configuration tokens: quoted strings, comments and map values.

Pure: text in, text out.
"""

from __future__ import annotations

import re

_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f]")


def quote(text: str) -> str:
    """A double-quoted nginx token: backslashes and quotes escaped, nothing else special."""
    if _CONTROL_BUT_NEWLINE.search(text):
        raise ValueError(f"{text!r} holds a control character")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped + '"'


def comment(text: str) -> str:
    """Text for a ``#`` comment: nothing that could end the line."""
    return "".join("?" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text)


def label(text: str) -> str:
    """A rule label as a map value: quoted, with ``$`` spelt through ``$cw_dollar`` (map
    values are templates) and control characters shown as ``?``."""
    return quote(comment(text).replace("$", "${cw_dollar}"))
