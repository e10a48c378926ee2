"""Routes for access restrictions: access profiles (IP ranges and client CAs), IP deny
profiles, and the staged path rules of each environment."""

from __future__ import annotations

from functools import partial

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
)
from certward.services import access_profiles, ip_deny_profiles, path_rules, upload_limits
from certward.services.access_profiles import AccessProfileView, ClientCaTreeView
from certward.services.ip_deny_profiles import EnvironmentIpDenyView, IpDenyProfileView
from certward.services.path_rules import PathRulesView
from certward.snapshot import PathRuleState

router = APIRouter(prefix="/api/v1", dependencies=[Depends(url_without_nul)])
PROFILES = "/apps/{app}/access-profiles"
ONE_PROFILE = PROFILES + "/{profile}"
CLIENT_CAS = ONE_PROFILE + "/client-cas"
DENY_PROFILES = "/apps/{app}/ip-deny-profiles"
ONE_DENY_PROFILE = DENY_PROFILES + "/{deny_profile}"
TAG = "access restrictions"

# -- access profiles ------------------------------------------------------------------------


@router.post(PROFILES, status_code=201, tags=[TAG])
def create_access_profile(
    app: str, body: AccessProfileCreate, ctx: ContextDep, who: PrincipalDep
) -> AccessProfileView:
    """A named set of IP ranges and client CAs that path rules restrict paths to (live)."""
    return access_profiles.ACCESS_PROFILES.create(
        ctx, who, app, name=body.name, ip_ranges=body.ip_ranges
    )


@router.get(PROFILES, tags=[TAG])
def list_access_profiles(app: str, ctx: ContextDep, who: PrincipalDep) -> list[AccessProfileView]:
    return access_profiles.ACCESS_PROFILES.list(ctx, who, app)


@router.get(ONE_PROFILE, tags=[TAG])
def get_access_profile(
    app: str, profile: str, ctx: ContextDep, who: PrincipalDep
) -> AccessProfileView:
    return access_profiles.ACCESS_PROFILES.get(ctx, who, app, profile)


@router.patch(ONE_PROFILE, tags=[TAG])
def update_access_profile(
    app: str, profile: str, body: AccessProfileUpdate, ctx: ContextDep, who: PrincipalDep
) -> AccessProfileView:
    """Replace the IP ranges (live)."""
    return access_profiles.ACCESS_PROFILES.update(ctx, who, app, profile, ip_ranges=body.ip_ranges)


@router.delete(ONE_PROFILE, status_code=204, tags=[TAG])
def delete_access_profile(app: str, profile: str, ctx: ContextDep, who: PrincipalDep) -> Response:
    access_profiles.ACCESS_PROFILES.delete(ctx, who, app, profile)
    return Response(status_code=204)


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


# -- IP deny profiles -----------------------------------------------------------------------


@router.post(DENY_PROFILES, status_code=201, tags=[TAG])
def create_ip_deny_profile(
    app: str, body: IpDenyProfileCreate, ctx: ContextDep, who: PrincipalDep
) -> IpDenyProfileView:
    """Address ranges refused on the environments the profile is attached to (live)."""
    return ip_deny_profiles.IP_DENY_PROFILES.create(
        ctx, who, app, name=body.name, ip_ranges=body.ip_ranges
    )


@router.get(DENY_PROFILES, tags=[TAG])
def list_ip_deny_profiles(app: str, ctx: ContextDep, who: PrincipalDep) -> list[IpDenyProfileView]:
    return ip_deny_profiles.IP_DENY_PROFILES.list(ctx, who, app)


@router.get(ONE_DENY_PROFILE, tags=[TAG])
def get_ip_deny_profile(
    app: str, deny_profile: str, ctx: ContextDep, who: PrincipalDep
) -> IpDenyProfileView:
    return ip_deny_profiles.IP_DENY_PROFILES.get(ctx, who, app, deny_profile)


@router.patch(ONE_DENY_PROFILE, tags=[TAG])
def update_ip_deny_profile(
    app: str, deny_profile: str, body: IpDenyProfileUpdate, ctx: ContextDep, who: PrincipalDep
) -> IpDenyProfileView:
    return ip_deny_profiles.IP_DENY_PROFILES.update(
        ctx, who, app, deny_profile, ip_ranges=body.ip_ranges
    )


@router.delete(ONE_DENY_PROFILE, status_code=204, tags=[TAG])
def delete_ip_deny_profile(
    app: str, deny_profile: str, ctx: ContextDep, who: PrincipalDep
) -> Response:
    ip_deny_profiles.IP_DENY_PROFILES.delete(ctx, who, app, deny_profile)
    return Response(status_code=204)


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
