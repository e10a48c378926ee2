"""`certward.dataplane.nginx.render`: the files of a set, the per-host TLS directives,
the path-rule regexes against `matching_rule`, OpenSSL's DN format, and escaping that
nginx itself accepts."""

from __future__ import annotations

import base64
import re
import subprocess
from dataclasses import replace
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier
from hypothesis import given, settings
from hypothesis import strategies as st

from certward.dataplane.access import matching_rule
from certward.dataplane.nginx import (
    CONFIG_FILE,
    PRIVATE_MODE,
    PUBLIC_MODE,
    VERSION_FILE,
    certificate_file,
    client_ca_file,
    openssl_dn,
    render,
    render_set,
)
from certward.dataplane.nginx_access import doc_pattern, path_patterns
from certward.dataplane.state import (
    AccessProfile,
    DataPlaneState,
    PathRule,
    RuleKind,
    ServedCertificate,
    Site,
    state_version,
)
from tests.dataplane.local_policy import LOCAL_POLICY
from tests.dataplane.matrix import MatrixPki, profile, rules
from tests.material.factory import TestCA
from tests.material.tools import require_tool

LISTEN: dict[str, Any] = {
    "https_listen": "127.0.0.1:8443",
    "http_listen": "127.0.0.1:8080",
    "acme_upstream": "http://127.0.0.1:8700",
    "policy": LOCAL_POLICY,
}


def served(pki: MatrixPki, hostname: str) -> ServedCertificate:
    cert = pki.server(hostname)
    return ServedCertificate(id=hostname, chain_pem=cert.cert_pem(), key_pem=cert.key_pem())


def make_site(
    pki: MatrixPki,
    hostname: str,
    *,
    path_rules: tuple[PathRule, ...] = (),
    profiles: tuple[AccessProfile, ...] = (),
    certificate: bool = True,
    upstream: str = "http://127.0.0.1:9000",
    deny: tuple[str, ...] = (),
) -> Site:
    return Site(
        hostname=hostname,
        kind="custom",
        app="shop",
        environment="production",
        environment_id="env-1",
        upstream=upstream,
        certificate=served(pki, hostname) if certificate else None,
        path_rules=path_rules,
        profiles={p.name: p for p in profiles},
        deny_ranges=tuple(ip_network(r) for r in deny),
    )


def state_of(*sites: Site) -> DataPlaneState:
    return DataPlaneState(
        sites={s.hostname: s for s in sites}, version=state_version([repr(s) for s in sites])
    )


def server_blocks(config: str) -> dict[str, str]:
    """The text of each ``server`` block with a ``server_name``, by hostname."""
    blocks: dict[str, str] = {}
    for block in re.findall(r"\n    server \{\n(.*?)\n    \}\n", config, flags=re.S):
        name = re.search(r"server_name (\S+);", block)
        if name:
            blocks[name.group(1)] = block
    return blocks


def test_one_server_per_served_hostname_with_its_files(matrix_pki: MatrixPki) -> None:
    partners = profile("partners", cas=[matrix_pki.partner_root])
    state = state_of(
        make_site(matrix_pki, "a.render.test"),
        make_site(
            matrix_pki,
            "b.render.test",
            path_rules=rules(("/partner", "profile", "partners")),
            profiles=(partners,),
        ),
        make_site(matrix_pki, "pending.render.test", certificate=False),
    )
    files = render(state, prefix="/srv/nginx/sets/1", **LISTEN)
    assert {name: f.mode for name, f in files.items()} == {
        CONFIG_FILE: PUBLIC_MODE,
        VERSION_FILE: PUBLIC_MODE,
        "tls/a.render.test.crt": PUBLIC_MODE,
        "tls/a.render.test.key": PRIVATE_MODE,
        "tls/b.render.test.crt": PUBLIC_MODE,
        "tls/b.render.test.key": PRIVATE_MODE,
        "client-ca/b.render.test.pem": PUBLIC_MODE,
    }
    assert (
        files["tls/a.render.test.key"].content == state.sites["a.render.test"].certificate.key_pem
    )  # type: ignore[union-attr]
    assert files[VERSION_FILE].content.decode().strip() == state.version
    config = files[CONFIG_FILE].content.decode()
    blocks = server_blocks(config)
    assert set(blocks) == {"a.render.test", "b.render.test", "_"}
    assert 'ssl_certificate "/srv/nginx/sets/1/tls/b.render.test.crt";' in blocks["b.render.test"]
    # The hostname without a certificate is only redirected on the plain-HTTP port.
    assert "pending.render.test" not in "".join(blocks.values())
    assert re.search(r"server_name\n(\s+\S+\n)*\s+pending\.render\.test\n", config)
    assert config.count("ssl_reject_handshake on;") == 1


def test_certificates_read_per_handshake_are_no_file_of_the_set(matrix_pki: MatrixPki) -> None:
    partners = profile("partners", cas=[matrix_pki.partner_root])
    state = state_of(
        make_site(matrix_pki, "a.render.test"),
        make_site(
            matrix_pki,
            "b.render.test",
            path_rules=rules(("/partner", "profile", "partners")),
            profiles=(partners,),
        ),
        make_site(matrix_pki, "pending.render.test", certificate=False),
    )
    rendered = render_set(
        state, prefix="/srv/nginx/sets/1", certificates="/srv/nginx/certificates", **LISTEN
    )
    assert set(rendered.files) == {CONFIG_FILE, VERSION_FILE, "client-ca/b.render.test.pem"}
    assert set(rendered.certificates) == {"a.render.test", "b.render.test"}
    a = state.sites["a.render.test"].certificate
    assert a is not None
    assert rendered.certificates["a.render.test"] == certificate_file(state.sites["a.render.test"])
    assert rendered.certificates["a.render.test"].mode == PRIVATE_MODE
    assert rendered.certificates["a.render.test"].content == a.chain_pem + a.key_pem
    blocks = server_blocks(rendered.files[CONFIG_FILE].content.decode())
    # The server block's own name, not the client's SNI, names the file; a hostname
    # without a certificate yet has its block, so its first certificate needs no reload.
    assert set(blocks) == {"a.render.test", "b.render.test", "pending.render.test", "_"}
    for name in ("a.render.test", "pending.render.test"):
        assert 'ssl_certificate "/srv/nginx/certificates/$server_name.pem";' in blocks[name]
        assert 'ssl_certificate_key "/srv/nginx/certificates/$server_name.pem";' in blocks[name]
    # Another certificate changes no byte of the configuration; served_as sets its version.
    renewed = state_of(
        replace(state.sites["a.render.test"], certificate=served(matrix_pki, "a.render.test#2")),
        state.sites["b.render.test"],
        state.sites["pending.render.test"],
    )
    again = render_set(
        renewed,
        prefix="/srv/nginx/sets/1",
        certificates="/srv/nginx/certificates",
        served_as=state.version,
        **LISTEN,
    )
    assert again.files == rendered.files
    assert again.certificates["a.render.test"] != rendered.certificates["a.render.test"]


def test_client_certificate_directives_only_where_client_cas_apply(
    matrix_pki: MatrixPki,
) -> None:
    state = state_of(
        make_site(matrix_pki, "plain.render.test"),
        make_site(
            matrix_pki,
            "ranges.render.test",
            path_rules=rules(("/office", "profile", "office")),
            profiles=(profile("office", ranges=["10.0.0.0/8"]),),
        ),
        make_site(
            matrix_pki,
            "unused.render.test",  # a CA profile no rule names asks for nothing
            profiles=(profile("partners", cas=[matrix_pki.partner_root]),),
        ),
        make_site(
            matrix_pki,
            "partners.render.test",
            path_rules=rules(("/p", "profile", "partners")),
            profiles=(profile("partners", cas=[matrix_pki.partner_root]),),
        ),
    )
    files = render(state, prefix="/srv/set", **LISTEN)
    blocks = server_blocks(files[CONFIG_FILE].content.decode())
    for host in ("plain.render.test", "ranges.render.test", "unused.render.test"):
        for directive in ("ssl_verify_client", "ssl_client_certificate", "error_page 495"):
            assert directive not in blocks[host], (host, directive)
    partners = blocks["partners.render.test"]
    assert "ssl_verify_client optional;" in partners
    assert 'ssl_client_certificate "/srv/set/client-ca/partners.render.test.pem";' in partners
    assert "error_page 495 496 = @cw_" in partners
    assert [name for name in files if name.startswith("client-ca/")] == [
        "client-ca/partners.render.test.pem"
    ]


def test_client_ca_file_makes_each_ca_an_anchor_and_lists_it(matrix_pki: MatrixPki) -> None:
    partners = profile(
        "partners",
        cas=[matrix_pki.partner_root, matrix_pki.issuing],
        intermediates=[matrix_pki.partner_intermediate],
    )
    site = make_site(
        matrix_pki,
        "p.render.test",
        path_rules=rules(("/", "profile", "partners")),
        profiles=(partners,),
    )
    text = client_ca_file(site).decode()
    blocks = re.findall(r"-----BEGIN ([A-Z ]+)-----\n(.*?)-----END \1-----", text, flags=re.S)
    kinds = [kind for kind, _ in blocks]
    assert kinds == ["TRUSTED CERTIFICATE"] * 3 + ["CERTIFICATE"] * 3
    expected = [
        matrix_pki.partner_root.certificate,
        matrix_pki.issuing.certificate,
        matrix_pki.partner_intermediate.certificate,
    ]
    for (_, body), certificate in zip(blocks[:3], expected, strict=True):
        der = base64.b64decode(body)
        plain = certificate.public_bytes(Encoding.DER)
        assert der.startswith(plain)
        assert der[len(plain) :] == bytes.fromhex("300c300a06082b06010505070302")  # clientAuth
    assert [
        x509.load_pem_x509_certificate(
            f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n".encode()
        )
        for _, body in blocks[3:]
    ] == expected


def _python_regex(pcre: str) -> re.Pattern[bytes]:
    """The PCRE of a map entry in Python's dialect (named groups, absolute end)."""
    translated = re.sub(r"\(\?<(?=[a-z])", "(?P<", pcre).replace("\\z", "\\Z")
    return re.compile(translated.encode("ascii"), re.S)


def _emulated_rule(site: Site, path: str) -> PathRule | None:
    """What nginx's ``map $uri`` picks for ``path``, with Python's ``re``."""
    data = path.encode("utf-8")
    for entry in path_patterns(site):
        if _python_regex(entry.regex).match(data):
            return entry.rule
    match = _python_regex(doc_pattern("seg")).match(data)
    if match:
        return PathRule(prefix="/" + match.group("seg").decode("utf-8"), rule=RuleKind.DENY_ALL)
    return None


_PIECES = st.sampled_from(
    ["/", "a", "b", "-doc", "doc", "-do", "-", ".", "$", "(", "[", '"', "\\", "ü", "x-doc"]
)
_PREFIXES = st.lists(_PIECES, min_size=0, max_size=5).map("".join)
_PATHS = st.lists(_PIECES, min_size=0, max_size=7).map(lambda parts: "/" + "".join(parts))
_RULES = st.lists(
    st.tuples(_PREFIXES, st.sampled_from(list(RuleKind))).map(
        lambda pair: PathRule(
            prefix=pair[0] if pair[0].startswith("/") else "/" + pair[0],
            rule=pair[1],
            profile="office" if pair[1] is RuleKind.PROFILE else None,
        )
    ),
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(path_rules=_RULES, paths=st.lists(_PATHS, min_size=1, max_size=10))
def test_path_regexes_pick_the_rule_matching_rule_picks(
    path_rules: list[PathRule], paths: list[str]
) -> None:
    site = Site(
        hostname="r.render.test",
        kind="custom",
        app="a",
        environment="e",
        environment_id="e",
        upstream="http://127.0.0.1:9",
        certificate=None,
        path_rules=tuple(path_rules),
    )
    for path in paths:
        assert _emulated_rule(site, path) == matching_rule(site.path_rules, path), path


def _name(*rdns: list[tuple[ObjectIdentifier, str, _ASN1Type | None]]) -> x509.Name:
    return x509.Name(
        [
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(oid, value)
                    if kind is None
                    else x509.NameAttribute(oid, value, _type=kind)
                    for oid, value, kind in rdn
                ]
            )
            for rdn in rdns
        ]
    )


NAMES = [
    _name([(NameOID.COMMON_NAME, "plain", None)]),
    _name(
        [(NameOID.COUNTRY_NAME, "DE", None)],
        [(NameOID.ORGANIZATION_NAME, 'Müller, "Partner" + Co; <x>', None)],
        [(NameOID.COMMON_NAME, "#lead and trail ", None)],
    ),
    _name([(NameOID.COMMON_NAME, " spaced\\back=slash", None)]),
    _name([(NameOID.COMMON_NAME, "ctrl\x01\x7fend", None)]),
    _name(
        [(NameOID.COMMON_NAME, "multi", None), (NameOID.ORGANIZATIONAL_UNIT_NAME, "valued", None)],
        [(NameOID.EMAIL_ADDRESS, "ops@example.test", None)],
        [(NameOID.SERIAL_NUMBER, "12345", None)],
        [(NameOID.DOMAIN_COMPONENT, "example", None)],
        [(NameOID.USER_ID, "uid-1", None)],
    ),
    _name(
        [(NameOID.COMMON_NAME, "bmp ÿ€", _ASN1Type.BMPString)],
        [(NameOID.ORGANIZATION_NAME, "universal ж", _ASN1Type.UniversalString)],
        [(NameOID.LOCALITY_NAME, "printable", _ASN1Type.PrintableString)],
        [(NameOID.STATE_OR_PROVINCE_NAME, "ia5", _ASN1Type.IA5String)],
    ),
    _name(
        [(ObjectIdentifier("1.3.6.1.4.1.99999.1"), "private attribute", None)],
        [(NameOID.BUSINESS_CATEGORY, "Private Organization", None)],
        [(NameOID.JURISDICTION_COUNTRY_NAME, "CH", None)],
        [(NameOID.ORGANIZATION_IDENTIFIER, "VATCH-1", None)],
        [(NameOID.GIVEN_NAME, "Ada", None), (NameOID.SURNAME, "Lovelace", None)],
        [(NameOID.TITLE, "Dr", None)],
        [(NameOID.POSTAL_CODE, "8000", None)],
        [(NameOID.STREET_ADDRESS, "Main St 1", None)],
        [(NameOID.PSEUDONYM, "ada", None)],
        [(NameOID.DN_QUALIFIER, "q", None)],
        [(NameOID.GENERATION_QUALIFIER, "III", None)],
        [(NameOID.INITIALS, "AL", None)],
        [(NameOID.X500_UNIQUE_IDENTIFIER, "u", None)],
    ),
]


@pytest.mark.external("openssl")
@pytest.mark.parametrize("name", NAMES, ids=lambda n: n.rfc4514_string()[:40])
def test_openssl_dn_prints_names_as_openssl_does(
    name: x509.Name, openssl: str, tmp_path: Path
) -> None:
    """nginx's ``$ssl_client_i_dn`` is OpenSSL's ``XN_FLAG_RFC2253`` output."""
    ca = TestCA.root()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.certificate.subject)
        .public_key(ca.private_key.public_key())
        .serial_number(1)
        .not_valid_before(ca.certificate.not_valid_before_utc)
        .not_valid_after(ca.certificate.not_valid_after_utc)
    )
    certificate = builder.sign(ca.private_key, ca.certificate.signature_hash_algorithm)  # type: ignore[arg-type]
    path = tmp_path / "named.pem"
    path.write_bytes(certificate.public_bytes(Encoding.PEM))
    printed = subprocess.run(
        [openssl, "x509", "-in", str(path), "-noout", "-subject", "-nameopt", "RFC2253"],
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8")
    assert printed.removeprefix("subject=").rstrip("\n") == openssl_dn(name)


NASTY_PREFIXES = [
    '/q"uote',
    "/sin'gle",
    "/dol$lar",
    "/${var}",
    "/back\\slash",
    "/br{ace}s;semi",
    "/new\nline",
    "/tab\there",
    "/ümlaut",
    "/#hash",
    "/re.gex*+?^|()[]",
]


@pytest.mark.external("nginx")
def test_rules_profiles_and_paths_with_metacharacters_pass_nginx(
    matrix_pki: MatrixPki, tmp_path: Path
) -> None:
    nginx = require_tool("nginx")
    odd = profile('o"dd $name {x};\\', ranges=["10.0.0.0/8"], cas=[matrix_pki.unicode_root])
    site = make_site(
        matrix_pki,
        "nasty.render.test",
        path_rules=tuple(
            PathRule(
                prefix=prefix,
                rule=RuleKind.PROFILE if number % 2 else RuleKind.DENY_ALL,
                profile=odd.name if number % 2 else None,
            )
            for number, prefix in enumerate(NASTY_PREFIXES)
        ),
        profiles=(odd,),
        deny=("192.0.2.0/24", "2001:db8::/32"),
    )
    prefix = tmp_path / "dir with space & 'quote'"
    files = render(state_of(site), prefix=str(prefix), **LISTEN)
    for name, rendered in files.items():
        (prefix / name).parent.mkdir(parents=True, exist_ok=True)
        (prefix / name).write_bytes(rendered.content)
    for directory in ("logs", "run", "tmp"):
        (tmp_path / directory).mkdir()
    config = files[CONFIG_FILE].content.decode()
    assert "/dol${cw_dollar}lar" in config
    assert "/${cw_dollar}{var}" in config
    checked = subprocess.run(
        [nginx, "-t", "-c", str(prefix / CONFIG_FILE), "-p", f"{tmp_path}/"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_options_that_cannot_be_rendered_safely_are_refused(matrix_pki: MatrixPki) -> None:
    state = state_of(make_site(matrix_pki, "a.render.test"))
    with pytest.raises(ValueError, match="absolute"):
        render(state, prefix="relative/dir", **LISTEN)
    with pytest.raises(ValueError, match="variable"):
        render(state, prefix="/srv/$x", **LISTEN)
    with pytest.raises(ValueError, match="https_listen"):
        render(state, prefix="/srv", **{**LISTEN, "https_listen": "127.0.0.1:8443; evil"})
    with pytest.raises(ValueError, match="http_listen"):
        render(state, prefix="/srv", **{**LISTEN, "http_listen": "nope"})
    with pytest.raises(ValueError, match="acme_upstream"):
        render(state, prefix="/srv", **{**LISTEN, "acme_upstream": "https://127.0.0.1:8700"})


def test_a_site_that_cannot_be_rendered_is_left_out_not_the_rest(matrix_pki: MatrixPki) -> None:
    state = state_of(
        make_site(matrix_pki, "good.render.test"),
        make_site(matrix_pki, "bad.render.test", upstream="http://up stream;/"),
        make_site(matrix_pki, "chosen.render.test"),
    )
    rendered = render_set(state, prefix="/srv", exclude={"chosen.render.test"}, **LISTEN)
    assert set(rendered.skipped) == {"bad.render.test", "chosen.render.test"}
    blocks = server_blocks(rendered.files[CONFIG_FILE].content.decode())
    assert set(blocks) == {"good.render.test", "_"}
    assert not [name for name in rendered.files if "bad." in name or "chosen." in name]


@pytest.mark.external("nginx")
@pytest.mark.slow
def test_thousands_of_hostnames_fit_nginx_hash_tables(
    matrix_pki: MatrixPki, tmp_path: Path
) -> None:
    nginx = require_tool("nginx")
    certificate = served(matrix_pki, "many.render.test")
    partners = profile("partners", cas=[matrix_pki.partner_root], ranges=["10.0.0.0/8"])
    sites = [
        Site(
            hostname=f"{'x' * 40}-{number}.environments.render.test",
            kind="managed",
            app="shop",
            environment=f"e{number}",
            environment_id=f"e{number}",
            upstream=f"http://127.0.0.{1 + number % 200}:{9000 + number % 50}",
            certificate=certificate,
            path_rules=rules(("/api", "profile", "partners"), ("/admin", "deny-all"))
            if number % 10 == 0
            else (),
            profiles={"partners": partners},
        )
        for number in range(1500)
    ]
    files = render(state_of(*sites), prefix=str(tmp_path / "set"), **LISTEN)
    for name, rendered in files.items():
        (tmp_path / "set" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "set" / name).write_bytes(rendered.content)
    for directory in ("logs", "run", "tmp"):
        (tmp_path / directory).mkdir()
    checked = subprocess.run(
        [nginx, "-t", "-c", str(tmp_path / "set" / CONFIG_FILE), "-p", f"{tmp_path}/"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert "could not build" not in checked.stderr, checked.stderr[-2000:]
