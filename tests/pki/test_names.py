"""Host names and SAN coverage (RFC 6125 with the CA/Browser Forum wildcard rules)."""

from __future__ import annotations

import pytest

from certward.pki.names import (
    HostnameError,
    covers,
    dns_name_matches,
    is_dns_label,
    is_dns_name,
    normalize_hostname,
)
from tests.material.factory import TestCA


@pytest.mark.parametrize(
    ("pattern", "hostname", "expected"),
    [
        ("shop.example.com", "shop.example.com", True),
        ("SHOP.Example.com", "shop.example.com", True),
        ("shop.example.com.", "shop.example.com", True),
        ("shop.example.com", "www.shop.example.com", False),
        ("*.example.com", "shop.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.com", "example.com", False),
        ("*", "localhost", False),
        ("s*.example.com", "shop.example.com", False),
        ("shop.*.com", "shop.example.com", False),
        ("*.*.example.com", "a.b.example.com", False),
        ("*.xn--bcher-kva.example", "www.xn--bcher-kva.example", True),
    ],
)
def test_dns_name_matching_follows_rfc_6125(pattern: str, hostname: str, expected: bool) -> None:
    """A wildcard is the whole left-most label, covers one label, never a bare TLD."""
    assert dns_name_matches(pattern, hostname) is expected


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("Shop.Example.COM", "shop.example.com"),
        ("shop.example.com.", "shop.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("127.0.0.1", "127.0.0.1"),
        ("2001:DB8::1", "2001:db8::1"),
    ],
)
def test_hostnames_are_normalized_to_lowercase_a_labels(given: str, normalized: str) -> None:
    """Case, trailing dots and unicode labels do not change which host is meant."""
    assert normalize_hostname(given) == normalized


@pytest.mark.parametrize(
    "bad", ["", "-shop.example.com", "shop..example.com", "a" * 64 + ".com", "sh op.com"]
)
def test_invalid_hostnames_are_refused(bad: str) -> None:
    """Text that is no DNS name or IP address raises HostnameError."""
    with pytest.raises(HostnameError):
        normalize_hostname(bad)


def test_ip_addresses_are_covered_only_by_ip_sans() -> None:
    """An IP host needs an IP SAN; a DNS SAN spelling the address does not count."""
    ca = TestCA.root()
    by_ip = ca.issue_leaf("host", sans=["10.1.2.3"]).certificate
    assert covers(by_ip, "10.1.2.3")
    assert not covers(by_ip, "10.1.2.4")


def test_the_common_name_is_never_used_for_matching() -> None:
    """A certificate without SANs covers nothing, whatever its CN says."""
    leaf = TestCA.root().issue_leaf("shop.example.com", no_san=True).certificate
    assert not covers(leaf, "shop.example.com")


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("a", True),
        ("shop-1", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("", False),
        ("-shop", False),
        ("shop-", False),
        ("Shop", False),
        ("shop\n", False),
        ("sh_op", False),
    ],
)
def test_a_dns_label_is_lower_case_ldh(text: str, label: bool) -> None:
    """1-63 lower-case letters, digits and hyphens, no hyphen at either end."""
    assert is_dns_label(text) is label


@pytest.mark.parametrize(
    ("text", "min_labels", "name"),
    [
        ("localhost", 1, True),
        ("localhost", 2, False),
        ("apps.example.net", 2, True),
        ("apps..example", 1, False),
        ("apps.example.", 1, False),
        ("apps\n.example", 2, False),
        (".".join(["a" * 63] * 3) + "." + "a" * 61, 1, True),  # 253 characters
        (".".join(["a" * 63] * 3) + "." + "a" * 62, 1, False),  # 254
    ],
)
def test_a_dns_name_is_labels_joined_by_dots(text: str, min_labels: int, name: bool) -> None:
    """`is_dns_label` labels, at least ``min_labels`` of them, 253 characters at most."""
    assert is_dns_name(text, min_labels=min_labels) is name
