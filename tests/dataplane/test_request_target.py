"""Request targets and path-rule prefixes as both data planes read them.

The expectations for `normalized_path` were read off nginx 1.22 (``$uri`` of each
target, or its 400); `canonical_prefix` keeps only prefixes that mean the same there.
"""

from __future__ import annotations

import pytest

from certward.dataplane.request_target import (
    PrefixRefused,
    RequestTarget,
    TargetRefused,
    canonical_prefix,
    normalized_path,
    parse_target,
    served_prefix,
)
from certward.path_rule_checks import served_rules


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("/a%2Fb", "/a/b"),
        ("//a//b", "/a/b"),
        ("/a/%2e/b", "/a/b"),
        ("/a/..", "/"),
        ("/a/%2e%2e", "/"),
        ("/a/%2E", "/a/"),
        ("/.", "/"),
        ("/a+b%20c", "/a+b c"),
        ("/a%252e%252e/x", "/a%2e%2e/x"),
        ("/a%3Fb?c", "/a?b"),
        ("/a%23b", "/a#b"),
        ("/api-doc#x", "/api-doc"),
        ("/a/.../b", "/a/.../b"),
        ("/a%0Ab", "/a\nb"),
        ("/caf%C3%A9", "/café"),
        ("/a%FFb", "/a\ufffdb"),
    ],
)
def test_paths_are_normalised_as_nginx_does(target: str, path: str) -> None:
    assert normalized_path(target) == path


@pytest.mark.parametrize(
    "target", ["/../secret", "/%2e%2e/x", "/..", "/a/b/..%2f..%2f..", "/a%00b", "/a%zzb", "/a%2"]
)
def test_paths_nginx_refuses_are_refused(target: str) -> None:
    with pytest.raises(TargetRefused):
        normalized_path(target)


@pytest.mark.parametrize(
    ("method", "target", "expected"),
    [
        ("GET", "/x?q=1", RequestTarget(origin="/x?q=1", path="/x")),
        (
            "GET",
            "https://Shop.Example:443/admin/x?q=1",
            RequestTarget(origin="/admin/x?q=1", path="/admin/x", authority="shop.example"),
        ),
        (
            "GET",
            "HTTP://shop.example.",
            RequestTarget(origin="/", path="/", authority="shop.example"),
        ),
        (
            "GET",
            "https://shop.example?x=1",
            RequestTarget(origin="/?x=1", path="/", authority="shop.example"),
        ),
        ("GET", "https://[::1]:8443/x", RequestTarget(origin="/x", path="/x", authority="[::1]")),
        ("OPTIONS", "*", RequestTarget(origin="*", path="*", asterisk=True)),
    ],
)
def test_targets_are_translated_to_origin_form(
    method: str, target: str, expected: RequestTarget
) -> None:
    assert parse_target(method, target) == expected


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "*"),
        ("DELETE", "*"),
        ("CONNECT", "shop.example:443"),
        ("CONNECT", "/"),
        ("GET", "shop.example/x"),
        ("GET", "ftp://shop.example/x"),
        ("GET", "https://user@shop.example/x"),
        ("GET", "https:///x"),
        ("GET", "https:/shop.example/x"),
        ("GET", "https://shop.example:abc/x"),
        ("GET", "https://shop.example/../x"),
    ],
)
def test_other_target_forms_are_refused(method: str, target: str) -> None:
    with pytest.raises(TargetRefused):
        parse_target(method, target)


@pytest.mark.parametrize(
    ("prefix", "canonical"),
    [
        ("/", "/"),
        ("/files/a%20b", "/files/a b"),
        ("/files/a b", "/files/a b"),
        ("/api%2Ddoc", "/api-doc"),
        ("/caf%C3%A9/", "/café/"),
        ("/we$ird(\"q'[x]{2}*+^|\\", "/we$ird(\"q'[x]{2}*+^|\\"),
        ("/a/.../b", "/a/.../b"),
    ],
)
def test_prefixes_are_stored_decoded(prefix: str, canonical: str) -> None:
    assert canonical_prefix(prefix) == canonical
    assert canonical_prefix(canonical) == canonical  # read back and sent again: unchanged
    assert normalized_path(canonical) == canonical  # a request for it is decided on it
    assert served_prefix(canonical) == canonical


@pytest.mark.parametrize(
    "prefix",
    [
        "files",
        "/a%2Fb",
        "/a//b",
        "/a/./b",
        "/a/../b",
        "/a/..",
        "/a/%2E",
        "/a%FF",
        "/100%",
        "/a%25b",
        "/a%00",
        "/a\tb",
        "/a\u200bb",
        "/a\u00a0b",
        "/a\ufffd",
        "/q?x",
        "/q%23x",
    ],
)
def test_prefixes_that_cannot_mean_the_same_everywhere_are_refused(prefix: str) -> None:
    with pytest.raises(PrefixRefused):
        canonical_prefix(prefix)


def test_prefixes_stored_before_the_check_are_served_as_the_path_they_name() -> None:
    assert served_prefix("/files/a%20b") == "/files/a b"
    assert served_prefix("/a//b") == "/a/b"
    assert served_prefix("/x/../admin") == "/admin"
    assert served_prefix("/a%2Fb") == "/a/b"
    rules = served_rules(
        {
            "/files/a%20b": {"rule": "deny-all"},
            "/files/a b": {"rule": "allow-all"},
            "/open": {"rule": "allow-all"},
        }
    )
    assert [(r.prefix, r.rule.value) for r in rules] == [
        ("/files/a b", "allow-all"),  # the one already canonical wins the tie
        ("/open", "allow-all"),
    ]
