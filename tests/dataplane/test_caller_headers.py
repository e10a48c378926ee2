"""The one list of caller headers both data planes drop, and the hop mark."""

from __future__ import annotations

import re

import pytest

from certward.dataplane.caller_headers import (
    HOP_MARK_NGINX_REGEX,
    STRIPPED_NAMES,
    carries_hop_mark,
    is_stripped,
)


@pytest.mark.parametrize(
    "name",
    [
        "SSL-Client-Verify",
        "ssl_client_cert",
        "X-SSL-Client-S-DN",
        "x-ssl-anything-new",
        "X-Forwarded-Host",
        "X_Forwarded_Prefix",
        "Forwarded",
        "True-Client-IP",
        "X-Client-IP",
        "X-Real-IP",
        "Client-Cert",
        "SSL-Whatever",
    ],
)
def test_spoofable_names_are_stripped_in_any_spelling(name: str) -> None:
    assert is_stripped(name)


@pytest.mark.parametrize("name", ["Authorization", "Cookie", "X-Request-Id", "Accept", "SSLX"])
def test_ordinary_headers_pass(name: str) -> None:
    assert not is_stripped(name)


def test_every_listed_name_is_lower_case_dash_spelling() -> None:
    assert all(name == name.lower() and "_" not in name for name in STRIPPED_NAMES)


@pytest.mark.parametrize(
    ("value", "marked"),
    [
        ("certward", True),
        ("other-cdn, certward", True),
        ("CertWard; v=1", True),
        ("other-cdn,certward,third", True),
        ("certwardx", False),
        ("notcertward", False),
        ("other-cdn", False),
        ("", False),
    ],
)
def test_hop_mark_is_found_as_a_whole_cdn_id(value: str, marked: bool) -> None:
    assert carries_hop_mark(value) is marked
    nginx = re.compile(HOP_MARK_NGINX_REGEX.removeprefix("~*"), re.IGNORECASE)
    assert (nginx.search(value) is not None) is marked
