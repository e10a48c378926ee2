"""Custom domains: an app's TLS certificates (uploaded or CSR-born) and the hostnames
its environments serve with them, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from certward.model import AuditEvent, Base, Environment, ManagedCertificate, TlsCertificate
from certward.pki.material import load_stored_private_key
from certward.services.domains import live_hostnames
from certward.services.tls_certificates import key_aad
from tests.api.conftest import API, Api, Token, expect
from tests.material.factory import (
    DEFAULT_NOT_AFTER,
    DEFAULT_NOT_BEFORE,
    NOW,
    IssuedCert,
    TestCA,
    pem_certificates,
)

SHOP = "shop.example.com"
API_HOST = "api.shop.example.com"


@pytest.fixture(scope="module")
def tls_ca() -> TestCA:
    """An issuing intermediate under a root: what public CAs look like (EC keys, cheap)."""
    return TestCA.root(name="certward custom-domain test root").intermediate(
        name="certward custom-domain test issuing CA"
    )


# -- helpers --------------------------------------------------------------------------------


def tls_leaf(ca: TestCA, *sans: str, **options: Any) -> IssuedCert:
    """A serverAuth certificate for ``sans`` (the first is the common name)."""
    return ca.issue_leaf(sans[0].replace("*", "wildcard"), sans=list(sans), **options)


def issuers_pem(ca: TestCA) -> bytes:
    """The issuing CA then its root, PEM: the chain a server sends."""
    return pem_certificates([ca.certificate, *ca.chain])


def upload_tls(
    api: Api,
    app: str,
    leaf: IssuedCert,
    *,
    chain: bytes | None = None,
    key: bytes | None = None,
    password: str | None = None,
    description: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST the certificate, chain and key as multipart. Status not checked."""
    files = [("certificate", ("cert.pem", leaf.cert_pem()))]
    if chain is not None:
        files.append(("chain", ("chain.pem", chain)))
    files.append(("private_key", ("key.pem", leaf.key_pem() if key is None else key)))
    data = {}
    if password is not None:
        data["password"] = password
    if description is not None:
        data["description"] = description
    return api.client.post(
        api.app_url(app, "/tls-certificates"),
        files=files,
        data=data,
        headers=headers or api.admin_headers,
    )


def uploaded(api: Api, app: str, ca: TestCA, *sans: str, **options: Any) -> dict[str, Any]:
    """A certificate for ``sans`` uploaded with its full chain (asserts 201)."""
    body: dict[str, Any] = expect(
        upload_tls(api, app, tls_leaf(ca, *sans, **options), chain=issuers_pem(ca)), 201
    )
    return body


def request_csr(
    api: Api, app: str, common_name: str, sans: Sequence[str] = (), key_type: str = "ec-p256"
) -> dict[str, Any]:
    body: dict[str, Any] = expect(
        api.client.post(
            api.app_url(app, "/tls-certificates/csr"),
            json={"common_name": common_name, "sans": list(sans), "key_type": key_type},
            headers=api.admin_headers,
        ),
        201,
    )
    return body


def sign_csr(
    ca: TestCA,
    csr_pem: str,
    *,
    sans: Sequence[str] | None = None,
    not_after: datetime = DEFAULT_NOT_AFTER,
) -> x509.Certificate:
    """What a CA does with a CSR: a serverAuth certificate for its key (and its names)."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    requested = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = (
        requested if sans is None else x509.SubjectAlternativeName([x509.DNSName(n) for n in sans])
    )
    issuer_key = ca.private_key
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.certificate.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(DEFAULT_NOT_BEFORE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(names, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
    )
    return builder.sign(issuer_key, hashes.SHA256())


def send_signed(
    api: Api, app: str, certificate_id: str, certificate: x509.Certificate, chain: bytes | None
) -> httpx.Response:
    files = [("certificate", ("cert.pem", pem_certificates([certificate])))]
    if chain is not None:
        files.append(("chain", ("chain.pem", chain)))
    return api.client.post(
        api.app_url(app, f"/tls-certificates/{certificate_id}/signed-certificate"),
        files=files,
        headers=api.admin_headers,
    )


def add_domain(
    api: Api,
    app: str,
    env: str,
    hostname: str,
    certificate_id: str,
    *,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return api.client.post(
        api.env_url(app, env, "/custom-domains"),
        json={"hostname": hostname, "certificate_id": certificate_id},
        headers=headers or api.admin_headers,
    )


def domains_of(api: Api, app: str, env: str) -> list[dict[str, Any]]:
    body: list[dict[str, Any]] = expect(
        api.client.get(api.env_url(app, env, "/domains"), headers=api.admin_headers), 200
    )
    return body


def tls_certificate(api: Api, app: str, certificate_id: str) -> dict[str, Any]:
    body: dict[str, Any] = expect(
        api.client.get(
            api.app_url(app, f"/tls-certificates/{certificate_id}"), headers=api.admin_headers
        ),
        200,
    )
    return body


def key_patterns(key: PrivateKeyTypes) -> dict[str, bytes]:
    """Every form a private key could leak in: DER, its base64 and hex, PEM lines, the
    private number."""
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    patterns = {
        "PKCS#8 DER": der,
        "base64": base64.b64encode(der),
        "hex": der.hex().encode(),
        **{
            f"PEM line {i}": line
            for i, line in enumerate(pem.splitlines())
            if len(line) >= 40 and not line.startswith(b"-----")
        },
    }
    if isinstance(key, ec.EllipticCurvePrivateKey):
        value = key.private_numbers().private_value
        patterns["EC private value"] = value.to_bytes((key.curve.key_size + 7) // 8, "big")
    elif isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        patterns["RSA p"] = numbers.p.to_bytes((numbers.p.bit_length() + 7) // 8, "big")
    return patterns


def found(patterns: dict[str, bytes], data: bytes) -> list[str]:
    return [name for name, pattern in patterns.items() if pattern in data]


def codes(body: dict[str, Any]) -> list[str]:
    return [p["code"] for p in body["problems"]]


# -- upload ---------------------------------------------------------------------------------


def test_upload_with_its_chain_returns_the_certificate_and_keeps_the_key_encrypted(
    api: Api, tls_ca: TestCA
) -> None:
    """A certificate, its chain and its key are judged and stored: 201 describes the
    certificate and its chain, never the key, which is stored as an envelope of its row."""
    api.create_app("shop")
    leaf = tls_leaf(tls_ca, SHOP, "*.shop.example.com")
    body = expect(
        upload_tls(api, "shop", leaf, chain=issuers_pem(tls_ca), description="2026 cert"), 201
    )
    assert body["status"] == "valid"
    assert body["origin"] == "upload"
    assert body["subject"] == f"CN={SHOP}"
    assert body["issuer"] == tls_ca.certificate.subject.rfc4514_string()
    assert body["sans"] == [SHOP, "*.shop.example.com"]
    assert body["sha256_fingerprint"] == leaf.certificate.fingerprint(hashes.SHA256()).hex()
    # The root came with the chain: checked, named in a warning, never stored or served.
    assert [c["subject"] for c in body["chain"]] == [tls_ca.certificate.subject.rfc4514_string()]
    assert [p["certificate"] for p in body["problems"] if p["code"] == "root-not-served"] == [
        tls_ca.chain[0].subject.rfc4514_string()
    ]
    assert body["description"] == "2026 cert"
    assert body["key_type"] == "ec-p256"
    assert body["domains"] == []
    assert not [p for p in body["problems"] if p["severity"] == "error"]
    assert not {"private_key", "key"} & body.keys()
    assert tls_certificate(api, "shop", body["id"]) == {**body, "problems": []}
    with api.context.database.reading() as session:
        row = session.get(TlsCertificate, body["id"])
        assert row is not None
        assert row.private_key_ciphertext[1:9].hex() == row.key_id
        der = api.context.secrets.decrypt(row.private_key_ciphertext, aad=key_aad(row.id))
    assert der == leaf.key_der()


def test_upload_without_the_intermediate_is_refused_and_names_it(api: Api, tls_ca: TestCA) -> None:
    """A certificate uploaded without its issuing intermediate is refused with
    ``chain-incomplete``, naming the missing intermediate and why it matters; nothing is
    stored."""
    api.create_app("shop")
    response = upload_tls(api, "shop", tls_leaf(tls_ca, SHOP))
    body = expect(response, 422)
    assert body["code"] == "chain-incomplete"
    intermediate = tls_ca.certificate.subject.rfc4514_string()
    assert intermediate in body["detail"]
    assert "curl" in body["detail"]
    listing = api.client.get(api.app_url("shop", "/tls-certificates"), headers=api.admin_headers)
    assert expect(listing, 200) == []


def test_upload_with_the_chain_out_of_order_is_put_in_order_with_a_warning(
    api: Api, tls_ca: TestCA
) -> None:
    """A chain given root first is accepted, stored leaf-to-root, and the response says
    it was reordered (``chain-unordered`` warning)."""
    api.create_app("shop")
    reversed_chain = pem_certificates([*tls_ca.chain, tls_ca.certificate])
    body = expect(upload_tls(api, "shop", tls_leaf(tls_ca, SHOP), chain=reversed_chain), 201)
    unordered = [p for p in body["problems"] if p["code"] == "chain-unordered"]
    assert [p["severity"] for p in unordered] == ["warning"]
    assert [c["subject"] for c in body["chain"]] == [tls_ca.certificate.subject.rfc4514_string()]


def test_upload_with_the_key_of_another_certificate_is_refused(api: Api, tls_ca: TestCA) -> None:
    """A key that does not belong to the certificate is refused with ``key-mismatch``."""
    api.create_app("shop")
    other = tls_leaf(tls_ca, SHOP)
    response = upload_tls(
        api, "shop", tls_leaf(tls_ca, SHOP), chain=issuers_pem(tls_ca), key=other.key_pem()
    )
    assert expect(response, 422)["code"] == "key-mismatch"


def test_upload_of_an_expired_certificate_is_refused(api: Api, tls_ca: TestCA) -> None:
    """A certificate that expired is refused with ``expired`` and its end date."""
    api.create_app("shop")
    leaf = tls_leaf(
        tls_ca, SHOP, not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=2)
    )
    body = expect(upload_tls(api, "shop", leaf, chain=issuers_pem(tls_ca)), 422)
    assert body["code"] == "expired"
    assert (NOW - timedelta(days=2)).strftime("%Y-%m-%d") in body["detail"]


def test_upload_with_an_encrypted_key_needs_its_password(api: Api, tls_ca: TestCA) -> None:
    """An encrypted private key is read with ``password``; a wrong one is refused as
    ``wrong-password``."""
    api.create_app("shop")
    leaf = tls_leaf(tls_ca, SHOP)
    encrypted = leaf.key_pem("s3cret,pass")
    wrong = upload_tls(
        api, "shop", leaf, chain=issuers_pem(tls_ca), key=encrypted, password="guess"
    )
    assert expect(wrong, 422)["code"] == "wrong-password"
    right = upload_tls(
        api, "shop", leaf, chain=issuers_pem(tls_ca), key=encrypted, password="s3cret,pass"
    )
    assert expect(right, 201)["status"] == "valid"


def test_free_apps_are_told_custom_domains_need_a_licensed_plan(api: Api, tls_ca: TestCA) -> None:
    """Every TLS-certificate and custom-domain route answers a free app 403
    ``plan-required`` saying why, while its domain list still shows the default hostname."""
    environment = api.create_app_and_environment("hobby", "prod", plan="free")
    leaf = tls_leaf(tls_ca, SHOP)
    certificates = api.app_url("hobby", "/tls-certificates")
    missing = f"{certificates}/00000000-0000-0000-0000-000000000000"
    requests = [
        upload_tls(api, "hobby", leaf, chain=issuers_pem(tls_ca)),
        api.client.post(
            f"{certificates}/csr", json={"common_name": SHOP}, headers=api.admin_headers
        ),
        api.client.get(certificates, headers=api.admin_headers),
        api.client.get(missing, headers=api.admin_headers),
        api.client.post(
            f"{missing}/signed-certificate",
            files={"certificate": ("c.pem", leaf.cert_pem())},
            headers=api.admin_headers,
        ),
        api.client.post(
            f"{missing}/replace", json={"replacement_id": "x"}, headers=api.admin_headers
        ),
        api.client.delete(missing, headers=api.admin_headers),
        add_domain(api, "hobby", "prod", SHOP, "x"),
        api.client.delete(
            api.env_url("hobby", "prod", f"/custom-domains/{SHOP}"), headers=api.admin_headers
        ),
    ]
    for response in requests:
        body = expect(response, 403)
        assert body["code"] == "plan-required", response.request.url
        assert "licensed plan" in body["detail"]
        assert "custom domains" in body["detail"]
    assert domains_of(api, "hobby", "prod")[0]["hostname"] == environment["hostname"]


# -- CSR ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "expected"),
    [("ec-p256", ("ec", 256)), ("rsa-2048", ("rsa", 2048)), ("rsa-3072", ("rsa", 3072))],
)
@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_csr_is_signed_by_a_fresh_key_and_carries_the_names(
    api: Api, key_type: str, expected: tuple[str, int]
) -> None:
    """A CSR request answers 201 ``pending`` with a CSR whose signature verifies, of the
    asked key type, for the common name and every SAN (normalized, common name first)."""
    api.create_app("shop")
    body = request_csr(
        api, "shop", SHOP, ["API.Shop.Example.com.", "*.shop.example.com", SHOP], key_type
    )
    assert body["status"] == "pending"
    assert body["origin"] == "csr"
    assert body["key_type"] == key_type
    assert body["sans"] == [SHOP, API_HOST, "*.shop.example.com"]
    assert body["subject"] is None
    assert body["not_after"] is None
    csr = x509.load_pem_x509_csr(body["csr_pem"].encode())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SHOP
    names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [SHOP, API_HOST, "*.shop.example.com"]
    public = csr.public_key()
    family = "ec" if isinstance(public, ec.EllipticCurvePublicKey) else "rsa"
    assert isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    assert (family, public.key_size) == expected


@pytest.mark.parametrize(
    ("request_body", "code"),
    [
        ({"common_name": "not a host"}, "invalid-hostname"),
        ({"common_name": SHOP, "sans": ["*.com"]}, "invalid-hostname"),
        ({"common_name": SHOP, "sans": ["a.*.example.com"]}, "invalid-hostname"),
        ({"common_name": "a" * 60 + ".example.com"}, "invalid-hostname"),
        ({"common_name": SHOP, "key_type": "rsa-1024"}, "invalid-request"),
        ({"common_name": SHOP, "key_type": "ec-p256", "private_key": "x"}, "invalid-request"),
    ],
)
@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_csr_requests_with_bad_names_or_key_types_are_refused(
    api: Api, request_body: dict[str, Any], code: str
) -> None:
    """Invalid host names, a wildcard over a public suffix or inside a name, a common name
    over 64 characters, an unknown key type or an unknown field get 422 with a clear code."""
    api.create_app("shop")
    response = api.client.post(
        api.app_url("shop", "/tls-certificates/csr"), json=request_body, headers=api.admin_headers
    )
    assert expect(response, 422)["code"] == code
    with api.context.database.reading() as session:
        assert session.scalars(select(TlsCertificate)).all() == []


def test_signed_certificate_completes_a_pending_csr(api: Api, tls_ca: TestCA) -> None:
    """The certificate a CA signed for the CSR, with its chain, completes it: the
    certificate becomes valid with the signed certificate's names and dates, and cannot
    be completed twice (409)."""
    api.create_app("shop")
    pending = request_csr(api, "shop", SHOP, [API_HOST])
    signed = sign_csr(tls_ca, pending["csr_pem"])
    body = expect(send_signed(api, "shop", pending["id"], signed, issuers_pem(tls_ca)), 200)
    assert body["id"] == pending["id"]
    assert body["status"] == "valid"
    assert body["origin"] == "csr"
    assert body["sans"] == [SHOP, API_HOST]
    assert body["sha256_fingerprint"] == signed.fingerprint(hashes.SHA256()).hex()
    assert body["not_after"] == DEFAULT_NOT_AFTER.isoformat().replace("+00:00", "Z")
    assert body["csr_pem"] == pending["csr_pem"]
    assert not [p for p in body["problems"] if p["severity"] == "error"]
    assert tls_certificate(api, "shop", pending["id"])["status"] == "valid"
    again = send_signed(api, "shop", pending["id"], signed, issuers_pem(tls_ca))
    assert expect(again, 409)["code"] == "not-pending"


def test_signed_certificate_that_leaves_out_a_requested_name_is_taken_with_a_warning(
    api: Api, tls_ca: TestCA
) -> None:
    """A CA that signed fewer names than asked for: the certificate completes the CSR,
    and a ``name-not-covered`` warning names what is missing."""
    api.create_app("shop")
    pending = request_csr(api, "shop", SHOP, [API_HOST])
    signed = sign_csr(tls_ca, pending["csr_pem"], sans=[SHOP])
    body = expect(send_signed(api, "shop", pending["id"], signed, issuers_pem(tls_ca)), 200)
    assert body["sans"] == [SHOP]
    warnings = [p for p in body["problems"] if p["code"] == "name-not-covered"]
    assert [p["severity"] for p in warnings] == ["warning"]
    assert API_HOST in warnings[0]["message"]


def test_signed_certificate_for_another_key_is_refused_and_the_csr_stays_pending(
    api: Api, tls_ca: TestCA
) -> None:
    """A certificate issued for another key (another CSR, or an unrelated certificate) is
    refused with ``key-mismatch``; a missing intermediate with ``chain-incomplete``; the
    CSR stays pending."""
    api.create_app("shop")
    pending = request_csr(api, "shop", SHOP)
    other = request_csr(api, "shop", SHOP)
    for certificate in [sign_csr(tls_ca, other["csr_pem"]), tls_leaf(tls_ca, SHOP).certificate]:
        response = send_signed(api, "shop", pending["id"], certificate, issuers_pem(tls_ca))
        body = expect(response, 422)
        assert body["code"] == "key-mismatch"
        assert "this request's key" in body["detail"]
    lonely = send_signed(api, "shop", pending["id"], sign_csr(tls_ca, pending["csr_pem"]), None)
    assert expect(lonely, 422)["code"] == "chain-incomplete"
    assert tls_certificate(api, "shop", pending["id"])["status"] == "pending"


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_no_private_key_is_ever_answered_or_stored_in_clear(api: Api, tls_ca: TestCA) -> None:
    """Neither a CSR's generated key nor an uploaded key appears in any response, audit
    entry, database row, or the SQLite files; the stored envelopes decrypt to them."""
    api.create_app_and_environment("shop", "prod")
    leaf = tls_leaf(tls_ca, SHOP)
    up = expect(upload_tls(api, "shop", leaf, chain=issuers_pem(tls_ca)), 201)
    pending = request_csr(api, "shop", API_HOST, key_type="rsa-2048")
    other = request_csr(api, "shop", "other.shop.example.com")
    expect(
        send_signed(
            api, "shop", pending["id"], sign_csr(tls_ca, pending["csr_pem"]), issuers_pem(tls_ca)
        ),
        200,
    )
    expect(send_signed(api, "shop", other["id"], leaf.certificate, issuers_pem(tls_ca)), 422)
    expect(add_domain(api, "shop", "prod", API_HOST, pending["id"]), 201)
    for path in [
        "/tls-certificates",
        f"/tls-certificates/{pending['id']}",
        f"/tls-certificates/{other['id']}",
    ]:
        expect(api.client.get(api.app_url("shop", path), headers=api.admin_headers), 200)
    domains_of(api, "shop", "prod")
    expect(api.client.get(f"{API}/audit", headers=api.admin_headers), 200)
    expect(api.client.get(f"{API}/openapi.json"), 200)

    patterns: dict[str, bytes] = {}
    with api.context.database.reading() as session:
        for row in session.scalars(select(TlsCertificate)):
            der = api.context.secrets.decrypt(row.private_key_ciphertext, aad=key_aad(row.id))
            key = load_stored_private_key(der)
            patterns.update({f"{row.id} {k}": v for k, v in key_patterns(key).items()})
        dump = b"\n".join(
            json.dumps(list(map(str, values))).encode()
            + b"".join(v for v in values if isinstance(v, bytes))
            for table in Base.metadata.sorted_tables
            for values in session.execute(select(table))
        )
        audit_details = json.dumps(list(session.scalars(select(AuditEvent.detail)))).encode()
    assert len(patterns) >= 3 * 4
    assert found(patterns, leaf.key_der())  # the detector sees the uploaded key
    leaks = [
        f"{r.request.method} {r.request.url.path}: {found(patterns, r.content)}"
        for r in api.responses
        if found(patterns, r.content + str(r.headers).encode())
    ]
    assert not leaks
    assert not found(patterns, dump)
    assert not found(patterns, audit_details)
    database = api.settings.data_dir / "certward.db"
    files = sorted(api.settings.data_dir.glob("certward.db*"))
    assert database in files
    for path in files:
        assert not found(patterns, path.read_bytes()), path.name
    assert up["id"] != pending["id"]


# -- statuses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "status"),
    [
        (DEFAULT_NOT_BEFORE - timedelta(seconds=1), "upcoming"),
        (DEFAULT_NOT_BEFORE, "valid"),
        (DEFAULT_NOT_AFTER - timedelta(days=30), "valid"),
        (DEFAULT_NOT_AFTER - timedelta(days=30) + timedelta(seconds=1), "expires-soon"),
        (DEFAULT_NOT_AFTER, "expires-soon"),
        (DEFAULT_NOT_AFTER + timedelta(seconds=1), "expired"),
    ],
)
def test_status_follows_the_clock_in_views_and_filters(
    api: Api, tls_ca: TestCA, moment: datetime, status: str
) -> None:
    """At each edge of the validity window the certificate's status is computed at the
    request's time, and ``?status=`` finds it under exactly that status (a CSR: pending)."""
    api.create_app("shop")
    certificate = uploaded(api, "shop", tls_ca, SHOP)
    pending = request_csr(api, "shop", SHOP)
    api.clock.set(moment)
    assert tls_certificate(api, "shop", certificate["id"])["status"] == status
    url = api.app_url("shop", "/tls-certificates")
    for candidate in ["pending", "upcoming", "valid", "expires-soon", "expired"]:
        listed = expect(api.client.get(f"{url}?status={candidate}", headers=api.admin_headers), 200)
        expected = {certificate["id"]} if candidate == status else set()
        if candidate == "pending":
            expected = {pending["id"]}
        assert {c["id"] for c in listed} == expected, candidate
        assert {c["status"] for c in listed} <= {candidate}
    everything = expect(api.client.get(url, headers=api.admin_headers), 200)
    assert {c["id"] for c in everything} == {certificate["id"], pending["id"]}
    unknown = api.client.get(f"{url}?status=fine", headers=api.admin_headers)
    assert expect(unknown, 422)["code"] == "invalid-request"


# -- custom domains -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hostname", "stored"),
    [
        ("a.example.com", "a.example.com"),
        ("A.Example.COM.", "a.example.com"),
        ("bücher.example.com", "xn--bcher-kva.example.com"),
        ("exact.example.net", "exact.example.net"),
        ("example.com", None),  # a wildcard needs one label in its place
        ("a.b.example.com", None),  # ...exactly one
        ("other.example.net", None),
        ("example.net", None),
    ],
)
@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_a_custom_domain_needs_a_certificate_covering_it(
    api: Api, tls_ca: TestCA, hostname: str, stored: str | None
) -> None:
    """A hostname is normalized (lower-case A-label) and accepted only when the
    certificate's SANs cover it per RFC 6125: a wildcard covers exactly one left-most
    label; otherwise 422 ``name-not-covered`` lists the SANs."""
    api.create_app_and_environment("shop", "prod")
    certificate = uploaded(api, "shop", tls_ca, "*.example.com", "exact.example.net")
    response = add_domain(api, "shop", "prod", hostname, certificate["id"])
    if stored is None:
        body = expect(response, 422)
        assert body["code"] == "name-not-covered"
        assert "*.example.com, exact.example.net" in body["detail"]
        assert [d["kind"] for d in domains_of(api, "shop", "prod")] == ["managed"]
    else:
        body = expect(response, 201)
        assert body["hostname"] == stored
        assert body["kind"] == "custom"
        assert body["certificate"]["id"] == certificate["id"]
        assert [d["hostname"] for d in domains_of(api, "shop", "prod")][1:] == [stored]


@pytest.mark.parametrize(
    ("hostname", "code"),
    [
        ("not a host", "invalid-hostname"),
        ("192.0.2.1", "invalid-hostname"),
        ("", "invalid-request"),
    ],
)
@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_a_custom_domain_must_be_a_dns_name(
    api: Api, tls_ca: TestCA, hostname: str, code: str
) -> None:
    """Text that is no host name, an IP address, or nothing is refused with 422."""
    api.create_app_and_environment("shop", "prod")
    certificate = uploaded(api, "shop", tls_ca, SHOP)
    assert expect(add_domain(api, "shop", "prod", hostname, certificate["id"]), 422)["code"] == code


def test_a_custom_domain_needs_a_usable_certificate_of_its_own_app(
    api: Api, tls_ca: TestCA
) -> None:
    """A pending certificate, an expired one, and another app's (404, as if missing) are
    refused; an expired certificate keeps the domains it already serves, shown expired."""
    api.create_app_and_environment("shop", "prod")
    api.create_app("other")
    pending = request_csr(api, "shop", SHOP)
    foreign = uploaded(api, "other", tls_ca, SHOP)
    short = uploaded(api, "shop", tls_ca, SHOP, API_HOST, not_after=NOW + timedelta(days=40))
    refused = add_domain(api, "shop", "prod", SHOP, pending["id"])
    assert expect(refused, 422)["code"] == "certificate-pending"
    missing = add_domain(api, "shop", "prod", SHOP, foreign["id"])
    assert expect(missing, 404)["code"] == "tls-certificate-not-found"
    expect(add_domain(api, "shop", "prod", SHOP, short["id"]), 201)
    api.clock.advance(timedelta(days=41))
    expired = add_domain(api, "shop", "prod", API_HOST, short["id"])
    assert expect(expired, 422)["code"] == "certificate-expired"
    served = domains_of(api, "shop", "prod")[1]
    assert (served["hostname"], served["certificate"]["status"]) == (SHOP, "expired")


def test_a_hostname_belongs_to_one_environment_of_the_platform(api: Api, tls_ca: TestCA) -> None:
    """A custom domain taken by any environment is refused with 409 ``hostname-taken``:
    naming the holder to a caller who may see it, and nothing but "taken" to another app."""
    api.create_app_and_environment("alpha", "prod")
    api.create_environment("alpha", "staging")
    api.create_app_and_environment("bravo", "live")
    alpha = uploaded(api, "alpha", tls_ca, SHOP)
    bravo = uploaded(api, "bravo", tls_ca, SHOP)
    bravo_member = api.create_token("member", app="bravo")
    expect(add_domain(api, "alpha", "prod", SHOP, alpha["id"]), 201)

    same_app = expect(add_domain(api, "alpha", "staging", SHOP.upper(), alpha["id"]), 409)
    assert same_app["code"] == "hostname-taken"
    assert "'prod'" in same_app["detail"]
    assert "'alpha'" in same_app["detail"]
    as_admin = expect(add_domain(api, "bravo", "live", SHOP, bravo["id"]), 409)
    assert as_admin["app"] == "alpha"
    other_app = add_domain(api, "bravo", "live", SHOP, bravo["id"], headers=bravo_member.headers)
    body = expect(other_app, 409)
    assert body["code"] == "hostname-taken"
    assert SHOP in body["detail"]
    for secret in ["alpha", "prod", alpha["id"]]:
        assert secret not in other_app.text
    assert [d["hostname"] for d in domains_of(api, "bravo", "live")][1:] == []


def test_default_hostnames_and_the_platform_domain_are_not_custom_domains(
    api: Api, tls_ca: TestCA
) -> None:
    """Another environment's default hostname is taken (409, its owner unnamed to
    another app); any other name under the platform domain is reserved (422)."""
    alpha_env = api.create_app_and_environment("alpha", "prod")
    api.create_app_and_environment("bravo", "live")
    domain = api.settings.platform_domain
    squatted = f"dev-alpha.{domain}"
    certificate = uploaded(api, "bravo", tls_ca, alpha_env["hostname"], squatted)
    member = api.create_token("member", app="bravo")
    taken = add_domain(
        api, "bravo", "live", alpha_env["hostname"], certificate["id"], headers=member.headers
    )
    assert expect(taken, 409)["code"] == "hostname-taken"
    assert "'alpha'" not in taken.text
    reserved = add_domain(api, "bravo", "live", squatted, certificate["id"])
    assert expect(reserved, 422)["code"] == "reserved-hostname"


def test_domains_list_the_managed_hostname_with_its_newest_active_certificate_first(
    api: Api, tls_ca: TestCA
) -> None:
    """``GET …/domains`` shows the default hostname first (certificate null until one is
    active, then the newest active one), then the custom domains by name, live."""
    environment = api.create_app_and_environment("shop", "prod")
    certificate = uploaded(api, "shop", tls_ca, SHOP, API_HOST)
    with api.context.database.transaction() as session:  # whatever issuance did already
        session.execute(delete(ManagedCertificate))
    expect(add_domain(api, "shop", "prod", SHOP, certificate["id"]), 201)
    expect(add_domain(api, "shop", "prod", API_HOST, certificate["id"]), 201)
    listed = domains_of(api, "shop", "prod")
    assert listed[0] == {
        "hostname": environment["hostname"],
        "kind": "managed",
        "certificate": None,
    }
    assert [(d["hostname"], d["kind"]) for d in listed[1:]] == [
        (API_HOST, "custom"),
        (SHOP, "custom"),
    ]
    assert listed[1]["certificate"] == {
        "id": certificate["id"],
        "subject": certificate["subject"],
        "issuer": certificate["issuer"],
        "not_before": certificate["not_before"],
        "not_after": certificate["not_after"],
        "status": "valid",
        "status_reason": None,
    }

    newest = _add_managed(api, tls_ca, environment["hostname"], "active", NOW)
    _add_managed(api, tls_ca, environment["hostname"], "active", NOW - timedelta(days=5))
    _add_managed(api, tls_ca, environment["hostname"], "superseded", NOW + timedelta(hours=1))
    managed = domains_of(api, "shop", "prod")[0]["certificate"]
    assert managed["id"] == newest
    assert managed["subject"] == f"CN={environment['hostname']}"
    assert managed["issuer"] == tls_ca.certificate.subject.rfc4514_string()
    assert managed["status"] == "valid"

    expect(
        api.client.delete(
            api.env_url("shop", "prod", f"/custom-domains/{SHOP.upper()}"),
            headers=api.admin_headers,
        ),
        204,
    )
    assert [d["hostname"] for d in domains_of(api, "shop", "prod")][1:] == [API_HOST]
    again = api.client.delete(
        api.env_url("shop", "prod", f"/custom-domains/{SHOP}"), headers=api.admin_headers
    )
    assert expect(again, 404)["code"] == "custom-domain-not-found"


def _add_managed(api: Api, ca: TestCA, hostname: str, state: str, created_at: datetime) -> str:
    """A managed-certificate row as issuance would store it (the key is a placeholder)."""
    leaf = ca.issue_leaf(hostname)
    with api.context.database.transaction() as session:
        environment_id = session.scalar(
            select(Environment.id).where(Environment.hostname == hostname)
        )
        assert environment_id is not None
        row = ManagedCertificate(
            environment_id=environment_id,
            hostname=hostname,
            issuer="builtin",
            certificate_pem=leaf.cert_pem().decode(),
            chain_pem=issuers_pem(ca).decode(),
            serial=format(leaf.certificate.serial_number, "x"),
            sha256_fingerprint=leaf.certificate.fingerprint(hashes.SHA256()).hex(),
            not_before=leaf.certificate.not_valid_before_utc,
            not_after=leaf.certificate.not_valid_after_utc,
            renew_after=NOW + timedelta(days=200),
            private_key_ciphertext=b"\x00" * 40,
            key_id=api.context.secrets.keyring.active.key_id,
            state=state,
            created_at=created_at,
        )
        session.add(row)
        session.flush()
        return row.id


# -- replace and delete ---------------------------------------------------------------------


def test_replace_moves_every_domain_to_a_certificate_covering_them(
    api: Api, tls_ca: TestCA
) -> None:
    """Replacing moves the custom domains of every environment to the replacement at once;
    the old certificate, no longer in use, can then be deleted."""
    api.create_app_and_environment("shop", "prod")
    api.create_environment("shop", "staging")
    old = uploaded(api, "shop", tls_ca, SHOP, API_HOST, "beta.shop.example.com")
    expect(add_domain(api, "shop", "prod", SHOP, old["id"]), 201)
    expect(add_domain(api, "shop", "staging", API_HOST, old["id"]), 201)
    new = uploaded(api, "shop", tls_ca, SHOP, "*.shop.example.com")
    response = api.client.post(
        api.app_url("shop", f"/tls-certificates/{old['id']}/replace"),
        json={"replacement_id": new["id"]},
        headers=api.admin_headers,
    )
    body = expect(response, 200)
    assert body["id"] == new["id"]
    assert body["domains"] == [
        {"hostname": API_HOST, "environment": "staging"},
        {"hostname": SHOP, "environment": "prod"},
    ]
    for env in ["prod", "staging"]:
        assert {d["certificate"]["id"] for d in domains_of(api, "shop", env)[1:]} == {new["id"]}
    assert tls_certificate(api, "shop", old["id"])["domains"] == []
    expect(
        api.client.delete(
            api.app_url("shop", f"/tls-certificates/{old['id']}"), headers=api.admin_headers
        ),
        204,
    )
    events = expect(api.client.get(f"{API}/audit?app=shop", headers=api.admin_headers), 200)
    replaced = [e for e in events if e["action"] == "tls_certificate.replace"]
    assert replaced[0]["detail"] == {"replacement_id": new["id"], "hostnames": [API_HOST, SHOP]}


def test_replace_is_refused_unless_the_replacement_covers_every_hostname_in_use(
    api: Api, tls_ca: TestCA
) -> None:
    """A replacement missing a hostname in use is refused (422 ``name-not-covered`` naming
    exactly those hostnames) and nothing moves; so is a pending, expired or same one."""
    api.create_app_and_environment("shop", "prod")
    old = uploaded(api, "shop", tls_ca, SHOP, API_HOST, not_after=NOW + timedelta(days=300))
    expect(add_domain(api, "shop", "prod", SHOP, old["id"]), 201)
    expect(add_domain(api, "shop", "prod", API_HOST, old["id"]), 201)
    narrow = uploaded(api, "shop", tls_ca, SHOP, "www.shop.example.com")
    short = uploaded(api, "shop", tls_ca, SHOP, API_HOST, not_after=NOW + timedelta(days=10))
    pending = request_csr(api, "shop", SHOP, [API_HOST])

    def replace(replacement_id: str) -> dict[str, Any]:
        response = api.client.post(
            api.app_url("shop", f"/tls-certificates/{old['id']}/replace"),
            json={"replacement_id": replacement_id},
            headers=api.admin_headers,
        )
        body: dict[str, Any] = expect(response, 422)
        return body

    refused = replace(narrow["id"])
    assert refused["code"] == "name-not-covered"
    assert refused["hostnames"] == [API_HOST]
    assert refused["detail"].startswith(
        f"The replacement does not cover {API_HOST}, which is served with this certificate"
    )
    assert replace(pending["id"])["code"] == "certificate-pending"
    assert replace(old["id"])["code"] == "invalid-replacement"
    api.clock.advance(timedelta(days=11))
    assert replace(short["id"])["code"] == "certificate-expired"
    assert {d["certificate"]["id"] for d in domains_of(api, "shop", "prod")[1:]} == {old["id"]}


def test_deleting_a_certificate_in_use_is_refused_naming_its_domains(
    api: Api, tls_ca: TestCA
) -> None:
    """``DELETE`` of a certificate serving custom domains answers 409
    ``certificate-in-use`` naming each domain and its environment; once they are gone, 204."""
    api.create_app_and_environment("shop", "prod")
    certificate = uploaded(api, "shop", tls_ca, SHOP, API_HOST)
    expect(add_domain(api, "shop", "prod", SHOP, certificate["id"]), 201)
    expect(add_domain(api, "shop", "prod", API_HOST, certificate["id"]), 201)
    url = api.app_url("shop", f"/tls-certificates/{certificate['id']}")
    body = expect(api.client.delete(url, headers=api.admin_headers), 409)
    assert body["code"] == "certificate-in-use"
    assert f"{API_HOST} (prod), {SHOP} (prod)" in body["detail"]
    assert body["domains"] == [
        {"hostname": API_HOST, "environment": "prod"},
        {"hostname": SHOP, "environment": "prod"},
    ]
    for host in [SHOP, API_HOST]:
        expect(
            api.client.delete(
                api.env_url("shop", "prod", f"/custom-domains/{host}"), headers=api.admin_headers
            ),
            204,
        )
    expect(api.client.delete(url, headers=api.admin_headers), 204)
    assert expect(api.client.get(url, headers=api.admin_headers), 404)["code"] == (
        "tls-certificate-not-found"
    )


def test_deleting_an_environment_or_app_takes_its_domains_and_certificates_along(
    api: Api, tls_ca: TestCA
) -> None:
    """Deleting an environment frees its custom domains for others; deleting the app
    removes its certificates (and their keys) with the domains that used them."""
    api.create_app_and_environment("shop", "prod")
    api.create_environment("shop", "staging")
    certificate = uploaded(api, "shop", tls_ca, SHOP, API_HOST)
    expect(add_domain(api, "shop", "prod", SHOP, certificate["id"]), 201)
    expect(add_domain(api, "shop", "staging", API_HOST, certificate["id"]), 201)
    expect(api.client.delete(api.env_url("shop", "prod"), headers=api.admin_headers), 204)
    expect(add_domain(api, "shop", "staging", SHOP, certificate["id"]), 201)
    expect(api.client.delete(api.app_url("shop"), headers=api.admin_headers), 204)
    with api.context.database.reading() as session:
        assert live_hostnames(session) == {}
        assert session.scalars(select(TlsCertificate)).all() == []


def test_viewers_read_certificates_and_domains_but_change_nothing(api: Api, tls_ca: TestCA) -> None:
    """An app viewer lists and reads certificates and domains, and gets 403 on every change."""
    api.create_app_and_environment("shop", "prod")
    certificate = uploaded(api, "shop", tls_ca, SHOP)
    viewer: Token = api.create_token("viewer", app="shop")
    url = api.app_url("shop", f"/tls-certificates/{certificate['id']}")
    for path in [
        api.app_url("shop", "/tls-certificates"),
        url,
        api.env_url("shop", "prod", "/domains"),
    ]:
        expect(api.client.get(path, headers=viewer.headers), 200)
    changes = [
        upload_tls(
            api, "shop", tls_leaf(tls_ca, SHOP), chain=issuers_pem(tls_ca), headers=viewer.headers
        ),
        api.client.post(
            api.app_url("shop", "/tls-certificates/csr"),
            json={"common_name": SHOP},
            headers=viewer.headers,
        ),
        api.client.post(
            f"{url}/replace", json={"replacement_id": certificate["id"]}, headers=viewer.headers
        ),
        api.client.delete(url, headers=viewer.headers),
        add_domain(api, "shop", "prod", SHOP, certificate["id"], headers=viewer.headers),
    ]
    for response in changes:
        assert expect(response, 403)["code"] == "forbidden", response.request.url


# -- what the data plane reads ---------------------------------------------------------------


def test_live_hostnames_map_every_hostname_to_its_environment_and_certificate(
    api: Api, tls_ca: TestCA
) -> None:
    """``live_hostnames`` returns every default hostname (with its newest active managed
    certificate, or none) and every custom domain with its TLS certificate, and follows a
    replacement and a removal at once."""
    prod = api.create_app_and_environment("shop", "prod")
    other = api.create_app_and_environment("other", "live")
    with api.context.database.transaction() as session:
        session.execute(delete(ManagedCertificate))
    managed = _add_managed(api, tls_ca, prod["hostname"], "active", NOW)
    old = uploaded(api, "shop", tls_ca, SHOP, API_HOST)
    new = uploaded(api, "shop", tls_ca, SHOP, API_HOST)
    expect(add_domain(api, "shop", "prod", SHOP, old["id"]), 201)
    expect(add_domain(api, "shop", "prod", API_HOST, old["id"]), 201)

    def live() -> dict[str, tuple[str, str, str, str | None]]:
        with api.context.database.reading() as session:
            ids = dict(session.execute(select(Environment.id, Environment.name)).all())
            return {
                host: (h.kind, ids[h.environment_id], h.certificate_table, h.certificate_id)
                for host, h in live_hostnames(session).items()
            }

    assert live() == {
        prod["hostname"]: ("managed", "prod", "managed_certificates", managed),
        other["hostname"]: ("managed", "live", "managed_certificates", None),
        SHOP: ("custom", "prod", "tls_certificates", old["id"]),
        API_HOST: ("custom", "prod", "tls_certificates", old["id"]),
    }
    expect(
        api.client.post(
            api.app_url("shop", f"/tls-certificates/{old['id']}/replace"),
            json={"replacement_id": new["id"]},
            headers=api.admin_headers,
        ),
        200,
    )
    expect(
        api.client.delete(
            api.env_url("shop", "prod", f"/custom-domains/{API_HOST}"), headers=api.admin_headers
        ),
        204,
    )
    after = live()
    assert after[SHOP] == ("custom", "prod", "tls_certificates", new["id"])
    assert API_HOST not in after


def test_the_database_itself_refuses_to_delete_a_certificate_in_use(
    api: Api, tls_ca: TestCA
) -> None:
    """Even bypassing the API, a TLS certificate serving a custom domain cannot be deleted
    (the foreign key guards it), and the domain keeps its certificate."""
    api.create_app_and_environment("shop", "prod")
    certificate = uploaded(api, "shop", tls_ca, SHOP)
    expect(add_domain(api, "shop", "prod", SHOP, certificate["id"]), 201)
    with pytest.raises(IntegrityError), api.context.database.transaction() as session:
        session.execute(delete(TlsCertificate).where(TlsCertificate.id == certificate["id"]))
    assert domains_of(api, "shop", "prod")[1]["certificate"]["id"] == certificate["id"]
