"""Routes for access restrictions: access profiles (IP ranges and client CAs), IP deny
profiles, and the staged path rules of each environment."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, get_type_hints

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from certward.api.deps import ContextDep, PrincipalDep, read_upload_form, url_without_nul
from certward.api.routes import _FILE, ENV, _multipart
from certward.api.schemas import (
    AccessProfileCreate,
    AccessProfileUpdate,
    ClientCaSelection,
    EnvironmentIpDenies,
    IpDenyProfileCreate,
    IpDenyProfileUpdate,
    PathRules,
    RangeProfileCreate,
    RangeProfileUpdate,
)
from certward.services import (
    access_profiles,
    client_ca_crls,
    ip_deny_profiles,
    path_rules,
    upload_limits,
)
from certward.services.access_profiles import (
    ACCESS_PROFILES,
    AccessProfileView,
    ClientCaTreeView,
)
from certward.services.client_ca_crls import CrlView
from certward.services.ip_deny_profiles import (
    IP_DENY_PROFILES,
    EnvironmentIpDenyView,
    IpDenyProfileView,
)
from certward.services.path_rules import PathRulesView
from certward.services.range_profiles import RangeProfileKind
from certward.snapshot import PathRuleState

router = APIRouter(prefix="/api/v1", dependencies=[Depends(url_without_nul)])
PROFILES = "/apps/{app}/access-profiles"
ONE_PROFILE = PROFILES + "/{profile}"
CLIENT_CAS = ONE_PROFILE + "/client-cas"
DENY_PROFILES = "/apps/{app}/ip-deny-profiles"
ONE_DENY_PROFILE = DENY_PROFILES + "/{deny_profile}"
TAG = "access restrictions"

# -- range profiles: access profiles, IP deny profiles -------------------------------------


def _range_profile_routes(
    kind: RangeProfileKind[Any, Any, Any],
    *,
    operation: str,
    collection: str,
    one: str,
    name: Callable[..., str],
    create_body: type[RangeProfileCreate],
    update_body: type[RangeProfileUpdate],
    view: type[Any],
    create_doc: str,
    update_doc: str | None = None,
) -> None:
    """The five routes of one kind of range profile, named ``create_{operation}``, ...

    ``name`` is the dependency reading the profile's name from the path parameter of
    ``one``; ``create_body`` and ``update_body`` name the kind's request schemas.
    """
    Name = Annotated[str, Depends(name)]

    def create(app: str, body: RangeProfileCreate, ctx: ContextDep, who: PrincipalDep) -> Any:
        return kind.create(ctx, who, app, name=body.name, ip_ranges=body.ip_ranges)

    def listing(app: str, ctx: ContextDep, who: PrincipalDep) -> Any:
        return kind.list(ctx, who, app)

    def get(app: str, profile: Name, ctx: ContextDep, who: PrincipalDep) -> Any:
        return kind.get(ctx, who, app, profile)

    def update(
        app: str, profile: Name, body: RangeProfileUpdate, ctx: ContextDep, who: PrincipalDep
    ) -> Any:
        return kind.update(ctx, who, app, profile, ip_ranges=body.ip_ranges)

    def delete(app: str, profile: Name, ctx: ContextDep, who: PrincipalDep) -> Response:
        kind.delete(ctx, who, app, profile)
        return Response(status_code=204)

    def add(
        method: str,
        path: str,
        endpoint: Callable[..., Any],
        route: str,
        *,
        status: int = 200,
        answer: Any = view,
        description: str | None = None,
        **bodies: type[Any],
    ) -> None:
        # FastAPI reads annotations in the module's globals: they are resolved here,
        # where ``Name`` is, with the kind's own request schemas (the names of the
        # OpenAPI document).
        hints = get_type_hints(endpoint, localns={"Name": Name}, include_extras=True)
        endpoint.__annotations__ = hints | bodies
        router.add_api_route(
            path,
            endpoint,
            methods=[method],
            status_code=status,
            tags=[TAG],
            name=route,
            response_model=answer,
            description=description,
        )

    add(
        "POST",
        collection,
        create,
        f"create_{operation}",
        status=201,
        description=create_doc,
        body=create_body,
    )
    add("GET", collection, listing, f"list_{operation}s", answer=list[view])  # type: ignore[valid-type]
    add("GET", one, get, f"get_{operation}")
    add("PATCH", one, update, f"update_{operation}", description=update_doc, body=update_body)
    add("DELETE", one, delete, f"delete_{operation}", status=204, answer=None)


def _access_profile(profile: str) -> str:
    """The access profile named by the path."""
    return profile


def _deny_profile(deny_profile: str) -> str:
    """The IP deny profile named by the path."""
    return deny_profile


_range_profile_routes(
    ACCESS_PROFILES,
    operation="access_profile",
    collection=PROFILES,
    one=ONE_PROFILE,
    name=_access_profile,
    create_body=AccessProfileCreate,
    update_body=AccessProfileUpdate,
    view=AccessProfileView,
    create_doc="A named set of IP ranges and client CAs that path rules restrict paths to (live).",
    update_doc="Replace the IP ranges (live).",
)


# -- client CAs of an access profile --------------------------------------------------------


@router.post(
    CLIENT_CAS,
    status_code=201,
    tags=[TAG],
    openapi_extra=_multipart({"certificates": _FILE}, ["certificates"]),
)
async def upload_client_cas(
    app: str, profile: str, request: Request, ctx: ContextDep, who: PrincipalDep
) -> ClientCaTreeView:
    """CA certificates in the file ``certificates`` (PEM: a root and intermediates; or one
    DER certificate), merged into the profile; answers with the profile's whole tree."""
    form = await read_upload_form(
        request,
        ctx,
        files=frozenset({"certificates"}),
        fields=frozenset(),
        required_files=frozenset({"certificates"}),
    )
    upload = partial(
        access_profiles.upload_client_cas, ctx, who, app, profile, file=form.files["certificates"]
    )
    return await run_in_threadpool(upload_limits.guarded, ctx, who, app, upload)


@router.patch(CLIENT_CAS, tags=[TAG])
def select_client_cas(
    app: str, profile: str, body: ClientCaSelection, ctx: ContextDep, who: PrincipalDep
) -> ClientCaTreeView:
    """Accept client certificates below the selected CAs only; ``[]`` accepts every CA."""
    return access_profiles.select_client_cas(ctx, who, app, profile, selected=body.selected)


@router.delete(CLIENT_CAS + "/{fingerprint}", status_code=204, tags=[TAG])
def remove_client_ca(
    app: str, profile: str, fingerprint: str, ctx: ContextDep, who: PrincipalDep
) -> Response:
    access_profiles.remove_client_ca(ctx, who, app, profile, fingerprint)
    return Response(status_code=204)


# -- the CRL of a client CA -----------------------------------------------------------------

CRL = CLIENT_CAS + "/{fingerprint}/crl"


@router.put(CRL, tags=[TAG], openapi_extra=_multipart({"crl": _FILE}, ["crl"]))
async def upload_crl(
    app: str, profile: str, fingerprint: str, request: Request, ctx: ContextDep, who: PrincipalDep
) -> CrlView:
    """The client CA's certificate revocation list in the file ``crl`` (PEM or DER),
    signed by that CA and current; replaces any earlier one (live)."""
    form = await read_upload_form(
        request, ctx, files=frozenset({"crl"}), fields=frozenset(),
        required_files=frozenset({"crl"}),
    )  # fmt: skip
    upload = partial(
        client_ca_crls.upload_crl, ctx, who, app, profile, fingerprint, file=form.files["crl"]
    )
    return await run_in_threadpool(upload_limits.guarded, ctx, who, app, upload)


@router.get(CRL, tags=[TAG])
def show_crl(
    app: str, profile: str, fingerprint: str, ctx: ContextDep, who: PrincipalDep
) -> CrlView:
    return client_ca_crls.show_crl(ctx, who, app, profile, fingerprint)


@router.delete(CRL, status_code=204, tags=[TAG])
def remove_crl(
    app: str, profile: str, fingerprint: str, ctx: ContextDep, who: PrincipalDep
) -> Response:
    client_ca_crls.remove_crl(ctx, who, app, profile, fingerprint)
    return Response(status_code=204)


_range_profile_routes(
    IP_DENY_PROFILES,
    operation="ip_deny_profile",
    collection=DENY_PROFILES,
    one=ONE_DENY_PROFILE,
    name=_deny_profile,
    create_body=IpDenyProfileCreate,
    update_body=IpDenyProfileUpdate,
    view=IpDenyProfileView,
    create_doc="Address ranges refused on the environments the profile is attached to (live).",
)


# -- IP deny profiles attached to an environment --------------------------------------------


@router.get(ENV + "/ip-deny-profiles", tags=[TAG])
def environment_ip_denies(
    app: str, env: str, ctx: ContextDep, who: PrincipalDep
) -> EnvironmentIpDenyView:
    return ip_deny_profiles.environment_ip_denies(ctx, who, app, env)


@router.put(ENV + "/ip-deny-profiles", tags=[TAG])
def attach_ip_deny_profiles(
    app: str, env: str, body: EnvironmentIpDenies, ctx: ContextDep, who: PrincipalDep
) -> EnvironmentIpDenyView:
    """The IP deny profiles attached to the environment, as a whole set (live)."""
    return ip_deny_profiles.attach_ip_deny_profiles(ctx, who, app, env, profiles=body.profiles)


# -- path rules (staged) --------------------------------------------------------------------


@router.get(ENV + "/path-rules", tags=[TAG])
def list_path_rules(app: str, env: str, ctx: ContextDep, who: PrincipalDep) -> PathRulesView:
    return path_rules.list_path_rules(ctx, who, app, env)


@router.put(ENV + "/path-rules", tags=[TAG])
def replace_path_rules(
    app: str, env: str, body: PathRules, ctx: ContextDep, who: PrincipalDep
) -> PathRulesView:
    """Stage the environment's whole set of path rules; ``POST …/restart`` applies them."""
    rules = [
        PathRuleState(prefix=prefix, rule=spec.rule, profile=spec.profile)
        for prefix, spec in body.root.items()
    ]
    return path_rules.replace_path_rules(ctx, who, app, env, rules)
