"""Tenant isolation: a token of app A learns nothing about app B, not even that it exists.

The routes come from the application itself (every ``APIRoute``), so a route added
later is probed without anyone remembering to add it here; a route with a path
parameter or request body this module cannot fill fails the test and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from sqlalchemy import select

from certward.api import deps, schemas
from certward.model import App, Environment
from tests.api.conftest import API, Api, ApiRoute, Token, api_routes, bearer, client_leaf, expect
from tests.material.crls import make_crl
from tests.material.factory import IssuedCert, TestCA

# A valid body for every JSON request model: a 404 must not hide behind a 422.
EXAMPLE_BODIES: dict[type[BaseModel], dict[str, Any]] = {
    schemas.AppCreate: {"name": "probe", "plan": "licensed"},
    schemas.AppUpdate: {"plan": "free"},
    schemas.EnvironmentCreate: {"name": "probe", "upstream": "http://10.9.9.9:8080"},
    schemas.EnvironmentUpdate: {"upstream": "http://10.9.9.9:8080", "pkcs12_profile": "legacy"},
    schemas.ClientCertificateUpdate: {
        "pins": ["probe.partner.example"],
        "call_name": "probe",
        "description": "probe",
    },
    schemas.Rollback: {"version": 1},
    schemas.TokenCreate: {"role": "viewer", "app": "bravo"},
    schemas.TlsCsrCreate: {"common_name": "probe.example.com", "key_type": "ec-p256"},
    schemas.TlsCertificateReplace: {"replacement_id": "00000000-0000-0000-0000-000000000000"},
    schemas.TlsAcmeCreate: {"sans": ["probe.example.com"]},
    schemas.CustomDomainCreate: {
        "hostname": "probe.bravo-shop.example",
        "certificate_id": "00000000-0000-0000-0000-000000000000",
    },
    schemas.AccessProfileCreate: {"name": "probe", "ip_ranges": ["10.9.0.0/16"]},
    schemas.AccessProfileUpdate: {"ip_ranges": ["10.9.0.0/16"]},
    schemas.ClientCaSelection: {"selected": []},
    schemas.IpDenyProfileCreate: {"name": "probe", "ip_ranges": ["10.9.0.0/16"]},
    schemas.IpDenyProfileUpdate: {"ip_ranges": ["10.9.0.0/16"]},
    schemas.EnvironmentIpDenies: {"profiles": []},
    schemas.PathRules: {"/probe": {"rule": "allow-all"}},
}
UNAUTHENTICATED_PATHS = {
    "/healthz",
    f"{API}/healthz",
    # The platform CA is public: its root is what developer machines trust, and the
    # caIssuers and CRL URLs of issued certificates point at the other two.
    f"{API}/platform/ca",
    f"{API}/platform/ca/certificates",
    f"{API}/platform/ca/{{ca_id}}/certificate",
    f"{API}/platform/ca/{{ca_id}}/crl",
    # HTTP-01 answers: the ACME CA fetches them, with no token, through the data plane.
    "/.well-known/acme-challenge/{token}",
}
GHOST_APP = "ghost"


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe:
    """One request to one route: method, filled path, and what to send."""

    method: str
    route: str
    path: str
    json_body: dict[str, Any] | None = None
    files: dict[str, tuple[str, bytes]] | None = None
    form: dict[str, Any] | None = None

    def send(self, api: Api, headers: dict[str, str]) -> httpx.Response:
        return api.client.request(
            self.method,
            self.path,
            json=self.json_body,
            files=self.files,
            data=self.form,
            headers=headers,
        )

    def __str__(self) -> str:
        return f"{self.method} {self.route}"


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    """App A (alpha) with tokens of each app role, and app B (bravo) with everything in it."""

    a_tokens: dict[str, Token]
    b_member: Token
    b_params: dict[str, str]
    b_secrets: tuple[str, ...]  # B's data that no probe from A may see
    a_upload: bytes  # a valid PKCS12 (password "pw") for upload probes
    a_tls: IssuedCert  # a valid TLS server certificate (issued by a root) for upload probes


def _build(api: Api, ca: TestCA) -> World:
    api.create_app_and_environment("alpha", "prod")
    api.create_app_and_environment("bravo", "bravo-live")
    a_leaf = client_leaf(ca, "alpha.client.example.test")
    expect(api.upload_client_certificate("alpha", "prod", a_leaf.pkcs12("pw"), password="pw"), 201)

    b_leaf = client_leaf(ca, "bravo-private-client.example.test")
    certificate = expect(
        api.upload_client_certificate(
            "bravo",
            "bravo-live",
            b_leaf.pkcs12("pw"),
            password="pw",
            pins=["api.bravo-partner.example", "Bravo.Payments"],
            call_name="bravo-payments",
            description="bravo's partner certificate",
        ),
        201,
    )
    b_ca = ca.intermediate(name="bravo private issuing CA")
    authority = expect(api.upload_authority("bravo", "bravo-live", b_ca.cert_pem()), 201)
    version = api.restart("bravo", "bravo-live")
    expect(
        api.client.patch(
            api.env_url("bravo", "bravo-live", f"/client-certificates/{certificate['id']}"),
            json={"description": "a staged edit"},
            headers=api.admin_headers,
        ),
        200,
    )
    b_tls_leaf = ca.issue_leaf("www.bravo-shop.example", sans=["www.bravo-shop.example"])
    b_tls = expect(
        api.client.post(
            api.app_url("bravo", "/tls-certificates"),
            files={
                "certificate": ("cert.pem", b_tls_leaf.full_chain_pem()),
                "private_key": ("key.pem", b_tls_leaf.key_pem()),
            },
            data={"description": "bravo's shop certificate"},
            headers=api.admin_headers,
        ),
        201,
    )
    expect(
        api.client.post(
            api.env_url("bravo", "bravo-live", "/custom-domains"),
            json={"hostname": "www.bravo-shop.example", "certificate_id": b_tls["id"]},
            headers=api.admin_headers,
        ),
        201,
    )
    b_access = _restrict_access(api, ca)
    b_member = api.create_token("member", app="bravo", description="bravo's member")
    with api.context.database.reading() as session:
        app_id = session.scalar(select(App.id).where(App.name == "bravo"))
        env_id = session.scalar(select(Environment.id).where(Environment.name == "bravo-live"))
    assert app_id is not None
    assert env_id is not None
    b_secrets = (
        app_id,
        env_id,
        certificate["id"],
        certificate["subject"],
        certificate["sha256_fingerprint"],
        certificate["serial"],
        authority["id"],
        authority["certificates"][0]["subject"],
        authority["certificates"][0]["sha256_fingerprint"],
        "bravo-live-bravo.apps.localhost",
        "api.bravo-partner.example",
        "Bravo.Payments",
        "bravo-payments",
        "bravo's partner certificate",
        "a staged edit",
        version["digest"],
        b_member.id,
        "bravo's member",
        b_tls["id"],
        b_tls["sha256_fingerprint"],
        "www.bravo-shop.example",
        "bravo's shop certificate",
        *b_access.values(),
    )
    return World(
        a_tokens={
            "member": api.create_token("member", app="alpha"),
            "viewer": api.create_token("viewer", app="alpha"),
            "runtime": api.create_token("runtime", app="alpha", environment="prod"),
        },
        b_member=b_member,
        b_params={
            "app": "bravo",
            "env": "bravo-live",
            "certificate_id": certificate["id"],
            "authority_id": authority["id"],
            "token_id": b_member.id,
            "tls_certificate_id": b_tls["id"],
            "hostname": "www.bravo-shop.example",
            "profile": b_access["profile"],
            "fingerprint": b_access["fingerprint"],
            "deny_profile": b_access["deny_profile"],
        },
        b_secrets=b_secrets,
        a_upload=a_leaf.pkcs12("pw"),
        a_tls=ca.issue_leaf("probe.example.com", sans=["probe.example.com"]),
    )


def _restrict_access(api: Api, ca: TestCA) -> dict[str, str]:
    """B's access profile with a client CA, an IP deny profile, and path rules (staged and
    applied); returns what identifies them."""
    partner_ca = ca.intermediate(name="bravo partner client CA")
    expect(
        api.client.post(
            api.app_url("bravo", "/access-profiles"),
            json={"name": "bravo-office", "ip_ranges": ["198.51.100.0/24"]},
            headers=api.admin_headers,
        ),
        201,
    )
    tree = expect(
        api.client.post(
            api.app_url("bravo", "/access-profiles/bravo-office/client-cas"),
            files={"certificates": ("cas.pem", partner_ca.cert_pem())},
            headers=api.admin_headers,
        ),
        201,
    )
    ca_fingerprint = tree["certificates"][0]["sha256_fingerprint"]
    crl_path = f"/access-profiles/bravo-office/client-cas/{ca_fingerprint}/crl"
    expect(
        api.client.put(
            api.app_url("bravo", crl_path),
            files={"crl": ("ca.crl", make_crl(partner_ca, [4711]))},
            headers=api.admin_headers,
        ),
        200,
    )
    expect(
        api.client.post(
            api.app_url("bravo", "/ip-deny-profiles"),
            json={"name": "bravo-blocklist", "ip_ranges": ["203.0.113.0/24"]},
            headers=api.admin_headers,
        ),
        201,
    )
    expect(
        api.client.put(
            api.env_url("bravo", "bravo-live", "/ip-deny-profiles"),
            json={"profiles": ["bravo-blocklist"]},
            headers=api.admin_headers,
        ),
        200,
    )
    expect(
        api.client.put(
            api.env_url("bravo", "bravo-live", "/path-rules"),
            json={"/bravo-internal/": {"rule": "profile", "profile": "bravo-office"}},
            headers=api.admin_headers,
        ),
        200,
    )
    return {
        "profile": "bravo-office",
        "fingerprint": tree["certificates"][0]["sha256_fingerprint"],
        "ca_subject": tree["certificates"][0]["subject"],
        "office_range": "198.51.100.0/24",
        "deny_profile": "bravo-blocklist",
        "deny_range": "203.0.113.0/24",
        "prefix": "/bravo-internal/",
    }


def _api_routes(api: Api) -> list[ApiRoute]:
    routes = api_routes(api.app)
    assert len(routes) > 20, f"the application's routes were not found: {routes}"
    return routes


def _authenticated(route: ApiRoute) -> bool:
    """Whether the route depends (directly or not) on the bearer-token principal."""
    pending = list(route.route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if dependency.call is deps.principal:
            return True
        pending += dependency.dependencies
    return False


def _probes(route: ApiRoute, params: dict[str, str], world: World) -> list[Probe]:
    try:
        path = route.fill(params)
    except KeyError as exc:
        pytest.fail(f"{route.path}: teach test_isolation a value for the path parameter {exc}")
    probes = []
    for method in route.methods:
        probe = Probe(method=method, route=route.path, path=path)
        body_field = route.route.body_field
        if body_field is not None:
            model = body_field.field_info.annotation
            if model not in EXAMPLE_BODIES:
                pytest.fail(f"{method} {route.path}: add an example body for {model}")
            body = EXAMPLE_BODIES[model]
            model.model_validate(body)  # type: ignore[union-attr]  # the example must be valid
            probe = Probe(method=method, route=route.path, path=path, json_body=body)
        elif "multipart/form-data" in json.dumps(route.route.openapi_extra or {}):
            probe = _multipart_probe(method, route.path, path, world)
        probes.append(probe)
    return probes


def _multipart_probe(method: str, route: str, path: str, world: World) -> Probe:
    if route.endswith("/client-certificates"):
        return Probe(
            method=method,
            route=route,
            path=path,
            files={"file": ("client.p12", world.a_upload)},
            form={"password": "pw", "pins": ["probe.partner.example"], "call_name": "probe"},
        )
    if route.endswith("/certificate-authorities"):
        ca_pem = TestCA.root(name="probe CA").cert_pem()
        return Probe(method=method, route=route, path=path, files={"file": ("ca.pem", ca_pem)})
    if route.endswith("/client-cas"):
        ca_pem = TestCA.root(name="probe client CA").cert_pem()
        return Probe(
            method=method, route=route, path=path, files={"certificates": ("cas.pem", ca_pem)}
        )
    if route.endswith("/crl"):
        crl = make_crl(TestCA.root(name="probe CRL CA"))
        return Probe(method=method, route=route, path=path, files={"crl": ("ca.crl", crl)})
    if route.endswith(("/tls-certificates", "/signed-certificate")):
        files = {"certificate": ("cert.pem", world.a_tls.full_chain_pem())}
        if route.endswith("/tls-certificates"):
            files["private_key"] = ("key.pem", world.a_tls.key_pem())
        return Probe(method=method, route=route, path=path, files=files)
    pytest.fail(f"{method} {route}: teach test_isolation a valid multipart upload for it")


def _b_state(api: Api) -> list[str]:
    """Everything the admin sees of B (to prove no probe changed it)."""
    paths = [
        api.app_url("bravo"),
        api.env_url("bravo", "bravo-live"),
        api.env_url("bravo", "bravo-live", "/client-certificates"),
        api.env_url("bravo", "bravo-live", "/certificate-authorities"),
        api.env_url("bravo", "bravo-live", "/changes"),
        api.env_url("bravo", "bravo-live", "/versions"),
        api.env_url("bravo", "bravo-live", "/domains"),
        api.app_url("bravo", "/tls-certificates"),
        api.app_url("bravo", "/access-profiles"),
        api.app_url("bravo", "/ip-deny-profiles"),
        api.env_url("bravo", "bravo-live", "/ip-deny-profiles"),
        api.env_url("bravo", "bravo-live", "/path-rules"),
        f"{API}/tokens?app=bravo",
    ]
    return [expect(api.client.get(p, headers=api.admin_headers), 200) for p in paths]


def _assert_silent(response: httpx.Response, probe: Probe, world: World) -> None:
    leaked = [s for s in world.b_secrets if s in response.text]
    assert not leaked, f"{probe}: the response mentions B's data {leaked}: {response.text}"


def test_every_app_route_answers_404_to_tokens_of_another_app(api: Api, client_ca: TestCA) -> None:
    """Member, viewer and runtime tokens of app A get 404 on every ``{app}`` route of app B,
    exactly as for an app that does not exist, and change nothing."""
    world = _build(api, client_ca)
    before = _b_state(api)
    routes = [r for r in _api_routes(api) if "{app}" in r.path]
    probes = [p for r in routes for p in _probes(r, world.b_params, world)]
    assert len(probes) >= 20  # every route of apps, environments, certificates, versions
    ghost_params = {**world.b_params, "app": GHOST_APP}
    ghost = {str(p): p for r in routes for p in _probes(r, ghost_params, world)}

    for role, token in world.a_tokens.items():
        for probe in probes:
            response = probe.send(api, token.headers)
            assert response.status_code == 404, (
                f"{role} token of A: {probe} on B -> {response.status_code}: {response.text}"
            )
            assert response.headers["content-type"] == "application/problem+json"
            _assert_silent(response, probe, world)
            unknown = ghost[str(probe)].send(api, token.headers)
            assert unknown.status_code == 404, f"{probe} on a missing app: {unknown.text}"
            assert response.json() == json.loads(unknown.text.replace(GHOST_APP, "bravo")), (
                f"{role} token of A: {probe} tells B apart from a missing app"
            )

    assert _b_state(api) == before
    for probe in probes:  # the probes were aimed right: B's own member reaches the GET routes
        if probe.method == "GET":
            expect(probe.send(api, world.b_member.headers), 200)


def test_app_named_in_tokens_and_audit_requests_answers_404_to_another_app(
    api: Api, client_ca: TestCA
) -> None:
    """Granting, listing or revoking B's tokens and reading B's audit log with A's tokens
    answers 404, and A's listings of apps, tokens and events never include B."""
    world = _build(api, client_ca)
    before = _b_state(api)
    probes = [
        Probe(method="GET", route="tokens?app", path=f"{API}/tokens?app=bravo"),
        Probe(method="GET", route="audit?app", path=f"{API}/audit?app=bravo"),
        Probe(method="DELETE", route="tokens/{id}", path=f"{API}/tokens/{world.b_member.id}"),
        *(
            Probe(
                method="POST",
                route=f"tokens {role}",
                path=f"{API}/tokens",
                json_body={"role": role, "app": "bravo", "environment": environment},
            )
            for role, environment in [
                ("viewer", None),
                ("runtime", "bravo-live"),
                ("member", None),
            ]
        ),
    ]
    for role, token in world.a_tokens.items():
        for probe in probes:
            response = probe.send(api, token.headers)
            assert response.status_code == 404, (
                f"{role} token of A: {probe} -> {response.status_code}: {response.text}"
            )
            _assert_silent(response, probe, world)
    for role, token in world.a_tokens.items():
        listing = api.client.get(f"{API}/apps", headers=token.headers)
        assert "bravo" not in [a["name"] for a in expect(listing, 200)], role
        _assert_silent(listing, Probe(method="GET", route="apps", path=f"{API}/apps"), world)
    tokens = api.client.get(f"{API}/tokens", headers=world.a_tokens["member"].headers)
    assert {t["app"] for t in expect(tokens, 200)} == {"alpha"}
    _assert_silent(tokens, Probe(method="GET", route="tokens", path=f"{API}/tokens"), world)
    own_events = expect(
        api.client.get(f"{API}/audit", headers=world.a_tokens["member"].headers), 200
    )
    assert own_events
    assert {e["app"] for e in own_events} == {"alpha"}
    for event in own_events:
        assert not [s for s in world.b_secrets if s in json.dumps(event)]
    assert _b_state(api) == before


def test_every_authenticated_route_answers_401_without_a_valid_token(
    api: Api, client_ca: TestCA
) -> None:
    """Every route except the health checks and the public platform CA answers 401 without
    a token, with an unknown
    token, or with a non-Bearer scheme, and reveals nothing."""
    world = _build(api, client_ca)
    routes = _api_routes(api)
    unauthenticated = {r.path for r in routes if not _authenticated(r)}
    assert unauthenticated == UNAUTHENTICATED_PATHS
    probes = [p for r in routes if _authenticated(r) for p in _probes(r, world.b_params, world)]
    assert len(probes) >= 27
    admin_token = api.admin_headers["Authorization"].removeprefix("Bearer ")
    for credentials in [
        {},
        bearer("cw_" + "A" * 43),
        bearer(""),
        {"Authorization": f"Basic {admin_token}"},
        {"Authorization": admin_token},
    ]:
        for probe in probes:
            response = probe.send(api, credentials)
            assert response.status_code == 401, (
                f"{probe} with {list(credentials.values())} -> {response.status_code}: "
                f"{response.text}"
            )
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["code"] == "unauthorized"
            _assert_silent(response, probe, world)
