"""Client certificates in nginx's terms: the CA file of a site, and DNs as OpenSSL prints them.

Selected intermediates are trust anchors: nginx cannot set OpenSSL's partial-chain
flag, so every client CA is also written as a ``TRUSTED CERTIFICATE`` carrying the
clientAuth trust setting, which makes OpenSSL accept a chain that ends there. nginx
writes DNs the way OpenSSL's RFC 2253 printer does, not as ``rfc4514_string()``, so
each accepted issuer is rendered with `openssl_dn` from its CA certificate (the
gateway uses the same function for its ``SSL-Client-*-DN`` headers).

Pure: no files, sockets or clock.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certward.dataplane.state import AccessProfile, Site
from certward.pki import der

_CLIENT_AUTH_TRUST = bytes.fromhex("300c300a06082b06010505070302")
"""The DER ``X509_CERT_AUX`` that marks a certificate trusted for clientAuth."""


def client_ca_file(site: Site) -> bytes:
    """The site's client CAs for ``ssl_client_certificate``.

    Each CA appears twice: first as a ``TRUSTED CERTIFICATE`` trusted for clientAuth
    (loaded into the verification store first, it makes the CA an anchor even when its
    own issuer is absent), then as a plain ``CERTIFICATE``, which is all that the list
    of acceptable CA names sent to clients reads (the store ignores the duplicate).
    """
    certificates = _unique(x509.load_pem_x509_certificates(site.client_trust_pem()))
    trusted = [_trusted_pem(c.public_bytes(Encoding.DER)) for c in certificates]
    plain = [c.public_bytes(Encoding.PEM) for c in certificates]
    return b"".join(trusted + plain)


def client_crl_file(site: Site) -> bytes | None:
    """The CRLs of the site's client CAs for ``ssl_crl`` (PEM), or None when none has one.

    nginx checks every certificate of a client's chain once ``ssl_crl`` is set
    (OpenSSL's ``CRL_CHECK_ALL``): a CA of the chain without a CRL then fails the
    client certificate. certward sets it as soon as one client CA of the site has a
    CRL (revocation the tenant asked for is never skipped); the other CAs of the site
    need one too, roots included.
    """
    crls = site.client_crls()
    if not crls:
        return None
    return b"".join(x509.load_der_x509_crl(crl.der).public_bytes(Encoding.PEM) for crl in crls)


def _unique(certificates: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    seen: set[bytes] = set()
    out: list[x509.Certificate] = []
    for certificate in certificates:
        encoded = certificate.public_bytes(Encoding.DER)
        if encoded not in seen:
            seen.add(encoded)
            out.append(certificate)
    return out


def _trusted_pem(certificate_der: bytes) -> bytes:
    body = base64.b64encode(certificate_der + _CLIENT_AUTH_TRUST)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        b"-----BEGIN TRUSTED CERTIFICATE-----\n"
        + b"\n".join(lines)
        + b"\n-----END TRUSTED CERTIFICATE-----\n"
    )


def accepted_issuer_dns(site: Site, profile: AccessProfile) -> list[str]:
    """The profile's accepted issuers as nginx's ``$ssl_client_i_dn`` will read them.

    Each RFC 4514 issuer is looked up among the site's CA certificates and printed the
    OpenSSL way; an issuer with no certificate at hand is parsed from its string.
    """
    by_subject: dict[str, x509.Name] = {}
    pem = site.client_trust_pem() + profile.trust_pem
    if pem.strip():
        for certificate in x509.load_pem_x509_certificates(pem):
            by_subject.setdefault(certificate.subject.rfc4514_string(), certificate.subject)
    out: list[str] = []
    for issuer in sorted(profile.accepted_issuers):
        name = by_subject.get(issuer)
        if name is None:
            try:
                name = x509.Name.from_rfc4514_string(issuer)
            except ValueError:
                continue  # cannot match anything: the issuer stays refused
        try:
            rendered = openssl_dn(name)
        except ValueError:
            continue  # a value OpenSSL could not print either: never matches
        if rendered not in out:
            out.append(rendered)
    return out


# OpenSSL's short names of the attribute types found in distinguished names; a type
# missing here is printed as a dotted OID with its value dumped, as OpenSSL does for
# the types it does not know.
OPENSSL_SHORT_NAMES: Mapping[str, str] = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "title",
    "2.5.4.13": "description",
    "2.5.4.15": "businessCategory",
    "2.5.4.16": "postalAddress",
    "2.5.4.17": "postalCode",
    "2.5.4.18": "postOfficeBox",
    "2.5.4.19": "physicalDeliveryOfficeName",
    "2.5.4.20": "telephoneNumber",
    "2.5.4.41": "name",
    "2.5.4.42": "GN",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.45": "x500UniqueIdentifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "2.5.4.72": "role",
    "2.5.4.97": "organizationIdentifier",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
    "1.2.840.113549.1.9.2": "unstructuredName",
    "1.2.840.113549.1.9.8": "unstructuredAddress",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
}

# Bytes per character of the ASN.1 string types OpenSSL prints as text (0: UTF-8).
_STRING_WIDTH = {12: 0, 18: 1, 19: 1, 20: 1, 21: 1, 22: 1, 23: 1, 24: 1, 25: 1, 26: 1, 27: 1}
_STRING_WIDTH |= {28: 4, 30: 2}
_ALWAYS_ESCAPED = frozenset(',+"\\<>;')


def openssl_dn(name: x509.Name) -> str:
    """``name`` exactly as OpenSSL prints it with ``XN_FLAG_RFC2253``.

    That is what nginx puts in ``$ssl_client_s_dn`` and ``$ssl_client_i_dn`` (and so in
    the ``SSL-Client-*-DN`` headers): attributes last to first, ``+`` inside a
    multi-valued RDN, OpenSSL's short names, ``,+"\\<>;`` escaped with a backslash, a
    leading ``#`` or space and a trailing space too, control characters and every
    byte of a non-ASCII character as ``\\XX``, and values of unknown types or
    attributes as ``#`` and their DER in hex. `x509.Name.rfc4514_string` differs on
    non-ASCII text and on attribute names.
    """
    entries: list[tuple[int, str, int, bytes, bytes]] = []  # rdn, oid, tag, content, tlv
    top = der.read(name.public_bytes()).expect(der.SEQUENCE)
    for rdn_index, rdn in enumerate(top.children()):
        rdn.expect(der.SET)
        for attribute in rdn.children():
            oid_node, value_start = _first_child(attribute.expect(der.SEQUENCE))
            value = der.read(attribute.data, value_start, attribute.end)
            tlv = attribute.data[value_start : value.next]
            entries.append((rdn_index, der.oid(oid_node), value.tag, value.content, tlv))
    out: list[str] = []
    previous: int | None = None
    for rdn_index, oid, tag, content, tlv in reversed(entries):
        if previous is not None:
            out.append("+" if previous == rdn_index else ",")
        previous = rdn_index
        short = OPENSSL_SHORT_NAMES.get(oid)
        width = _STRING_WIDTH.get(tag) if short is not None else None
        out.append(f"{short or oid}=")
        out.append("#" + tlv.hex().upper() if width is None else _openssl_text(content, width))
    return "".join(out)


def _first_child(node: der.Node) -> tuple[der.Node, int]:
    first = der.read(node.data, node.start, node.end)
    return first, first.next


def _openssl_text(content: bytes, width: int) -> str:
    """One attribute value, escaped as OpenSSL's RFC 2253 printer does."""
    if width == 0:
        data = content  # UTF-8 is taken byte by byte: every non-ASCII byte is escaped
    else:
        characters = [
            int.from_bytes(content[i : i + width], "big") for i in range(0, len(content), width)
        ]
        data = "".join(map(chr, characters)).encode("utf-8", "surrogatepass")
    out: list[str] = []
    last = len(data) - 1
    for position, byte in enumerate(data):
        character = chr(byte)
        if byte > 0x7F or byte < 0x20 or byte == 0x7F:
            out.append(f"\\{byte:02X}")
        elif (
            character in _ALWAYS_ESCAPED
            or (position == 0 and character in "# ")
            or (position == last and character == " ")
        ):
            out.append("\\" + character)
        else:
            out.append(character)
    return "".join(out)
