"""Host names and how certificates cover them (RFC 6125, with the CA/Browser Forum rules).

A wildcard is only the whole left-most label (``*.example.com``), matches exactly one
label, never an empty one, and never sits directly above a single-label suffix
(``*.com``). IP addresses match only IP SANs. The subject CN is never consulted.

The one grammar of DNS names in A-label form, lower-case (`is_dns_label`,
`is_dns_name`), is what app, environment and profile names, the platform domain, the
names the platform CA signs and the hostnames the data plane serves are checked against.
"""

from __future__ import annotations

import ipaddress
import re

from cryptography import x509

from certward.errors import InternalSignal

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
MAX_DNS_NAME_LENGTH = 253


def is_dns_label(text: str) -> bool:
    """Whether ``text`` is one DNS label: 1-63 lower-case letters, digits and hyphens, no
    hyphen at either end (LDH, RFC 1123)."""
    return _LABEL.fullmatch(text) is not None  # match() would let a trailing newline in


def is_dns_name(text: str, *, min_labels: int = 1) -> bool:
    """Whether ``text`` is a lower-case DNS name in A-label form: `is_dns_label` labels
    separated by dots, at least ``min_labels`` of them, `MAX_DNS_NAME_LENGTH` characters
    at most, no trailing dot."""
    labels = text.split(".")
    return (
        len(text) <= MAX_DNS_NAME_LENGTH
        and len(labels) >= min_labels
        and all(is_dns_label(label) for label in labels)
    )


class HostnameError(InternalSignal, ValueError):
    """The text is not a valid DNS host name or IP address."""


def normalize_hostname(hostname: str) -> str:
    """Lower-case A-label form, without a trailing dot; raises `HostnameError`."""
    name = hostname.strip().rstrip(".").lower()
    if not name or len(name) > MAX_DNS_NAME_LENGTH:
        raise HostnameError(f"{hostname!r} is not a valid host name")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise HostnameError(f"{hostname!r} is not a valid host name") from exc
    labels = ascii_name.split(".")
    if not all(is_dns_label(label) for label in labels):
        raise HostnameError(f"{hostname!r} is not a valid host name")
    return ascii_name


def is_ip(hostname: str) -> bool:
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def dns_name_matches(pattern: str, hostname: str) -> bool:
    """Whether the SAN ``pattern`` covers the normalized ``hostname``."""
    pattern = pattern.rstrip(".").lower()
    if not pattern.startswith("*."):
        return "*" not in pattern and pattern == hostname
    suffix = pattern[2:]
    if "*" in suffix or suffix.count(".") < 1:
        return False
    head, _, rest = hostname.partition(".")
    return bool(head) and rest == suffix


def covers(certificate: x509.Certificate, hostname: str) -> bool:
    """Whether ``certificate``'s SANs cover ``hostname`` (already normalized)."""
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    if is_ip(hostname):
        address = ipaddress.ip_address(hostname)
        return address in sans.get_values_for_type(x509.IPAddress)
    return any(dns_name_matches(p, hostname) for p in sans.get_values_for_type(x509.DNSName))
