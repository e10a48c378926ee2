"""The console's route table, sign-in and the apps pages; an environment's tabs are in
`environment_pages` (its frame, Network and Versions), `domain_pages` and
`access_pages`, the app-level pages in `app_pages`, the platform's in `platform_pages`.
Every handler is thin, like the API's routes.

Each handler opens the visit (session, principal), reads and checks the form (CSRF),
calls one use case of `certward.services` with the visitor's principal — exactly the
call the matching API route makes — and renders a page or redirects (POST, then 303,
then GET, so a reload never repeats a change). A refusal from a form's use case is
shown on the page the form was on, with each problem next to its field.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from certward.authorization import Principal
from certward.errors import InvalidRequest, Refusal, RefusalCode
from certward.services import (
    apps,
    tokens,
)
from certward.services.apps import AppView, EnvironmentView
from certward.services.context import Context
from certward.vocabulary import Plan, Role
from certward.web import access_pages, app_pages, domain_pages, environment_pages, platform_pages
from certward.web.forms import (
    FieldErrors,
    form_values,
)
from certward.web.pages import (
    Visit,
    app_path,
    begin,
    call,
    env_path,
    posted,
    redirect,
    render,
    safe_next,
    success,
)
from certward.web.session import Notice

# -- sign-in ---------------------------------------------------------------------------------


async def home(request: Request) -> Response:
    visit = await begin(request, signed_in=False)
    return redirect(visit, "/apps" if visit.principal else "/sign-in")


async def sign_in_page(request: Request) -> Response:
    visit = await begin(request, signed_in=False)
    next_path = safe_next(request.query_params.get("next"))
    if visit.principal is not None:
        return redirect(visit, next_path)
    return render(visit, "sign_in.html", {"next_path": next_path, "errors": FieldErrors()})


async def sign_in(request: Request) -> Response:
    visit, form = await posted(request, signed_in=False)
    next_path = safe_next(form.text("next"))
    token = form.text("token").strip()
    errors = FieldErrors()
    if not token:
        errors.add("token", "Enter a token: it starts with cw_.")
        return render(visit, "sign_in.html", {"next_path": next_path, "errors": errors}, status=422)
    try:
        principal = await call(_authenticate, visit.context, token)
    except Refusal as refusal:
        errors.add("token", refusal.message)
        return render(visit, "sign_in.html", {"next_path": next_path, "errors": errors}, status=401)
    if principal.role is Role.RUNTIME:
        errors.add(
            "token",
            "This is a runtime token: it only downloads its environment's runtime bundle. "
            "Sign in with an admin, member or viewer token.",
        )
        return render(visit, "sign_in.html", {"next_path": next_path, "errors": errors}, status=403)
    await visit.sign_in(token, principal)
    return redirect(visit, next_path)


def _authenticate(ctx: Context, token: str) -> Principal:
    return tokens.authenticate(ctx, token)


async def sign_out(request: Request) -> Response:
    visit, _ = await posted(request, signed_in=False)
    await visit.sign_out()
    return redirect(visit, "/sign-in", Notice(kind="success", text="Signed out."))


# -- apps and environments -----------------------------------------------------------------


async def apps_page(request: Request) -> Response:
    visit = await begin(request)
    return await _apps(visit)


async def _apps(
    visit: Visit,
    *,
    errors: FieldErrors | None = None,
    values: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response:
    listed = await call(apps.list_apps, visit.context, visit.who)
    return render(
        visit,
        "apps.html",
        {
            "apps": listed,
            "plans": list(Plan),
            "errors": errors or FieldErrors(),
            "values": values or {},
        },
        status=status,
    )


async def create_app(request: Request) -> Response:
    visit, form = await posted(request)
    name = form.text("name").strip()
    try:
        plan = Plan(form.text("plan") or Plan.LICENSED.value)
        created = await call(apps.create_app, visit.context, visit.who, name=name, plan=plan)
    except ValueError:
        errors = FieldErrors()
        errors.add("plan", "Choose the free or the licensed plan.")
        return await _apps(visit, errors=errors, values=form_values(form), status=422)
    except Refusal as refusal:
        errors = FieldErrors.from_refusal(
            refusal, {RefusalCode.INVALID_NAME: "name", RefusalCode.APP_EXISTS: "name"}
        )
        return await _apps(visit, errors=errors, values=form_values(form), status=refusal.status)
    return redirect(visit, app_path(created.name), success(f"App {created.name} created."))


async def app_page(request: Request) -> Response:
    visit = await begin(request)
    return await _app(visit, request.path_params["app"])


async def _app(
    visit: Visit,
    app: str,
    *,
    errors: FieldErrors | None = None,
    values: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response:
    view, environments = await call(_app_values, visit.context, visit.who, app)
    return render(
        visit,
        "app.html",
        {
            "app": view,
            "environments": environments,
            "app_tab": "environments",
            "plans": list(Plan),
            "errors": errors or FieldErrors(),
            "values": values or {},
        },
        status=status,
    )


def _app_values(ctx: Context, who: Principal, app: str) -> tuple[AppView, list[EnvironmentView]]:
    return apps.get_app(ctx, who, app), apps.list_environments(ctx, who, app)


async def create_environment(request: Request) -> Response:
    visit, form = await posted(request)
    app = request.path_params["app"]
    try:
        created = await call(
            apps.create_environment,
            visit.context,
            visit.who,
            app,
            name=form.text("name").strip(),
            upstream=form.text("upstream").strip(),
        )
    except Refusal as refusal:
        errors = FieldErrors.from_refusal(
            refusal,
            {
                RefusalCode.INVALID_NAME: "name",
                RefusalCode.ENVIRONMENT_EXISTS: "name",
                RefusalCode.INVALID_UPSTREAM: "upstream",
                RefusalCode.UPSTREAM_NOT_ALLOWED: "upstream",
                RefusalCode.HOSTNAME_IS_UPSTREAM: "upstream",
                RefusalCode.UPSTREAM_TAKEN: "upstream",
            },
        )
        return await _app(
            visit, app, errors=errors, values=form_values(form), status=refusal.status
        )
    return redirect(
        visit,
        env_path(app, created.name),
        success(f"Environment {created.name} created; it answers at {created.hostname}."),
    )


async def change_plan(request: Request) -> Response:
    visit, form = await posted(request)
    app = request.path_params["app"]
    try:
        plan = Plan(form.text("plan"))
    except ValueError:
        raise InvalidRequest(
            "Choose the free or the licensed plan.", code=RefusalCode.INVALID_PLAN
        ) from None
    await call(apps.update_app, visit.context, visit.who, app, plan=plan)
    return redirect(visit, app_path(app), success(f"App {app} is now on the {plan.value} plan."))


APP = "/apps/{app}"
ENV = "/apps/{app}/environments/{env}"
CLIENT = ENV + "/client-certificates/{certificate_id}"
AUTHORITY = ENV + "/authorities/{authority_id}"
TLS = APP + "/tls-certificates/{certificate_id}"
PROFILE = APP + "/access-profiles/{profile}"
DENY = APP + "/ip-deny-profiles/{profile}"


def console_routes() -> list[BaseRoute]:
    """Every page (GET) and form handler (POST) of the console."""
    get, post = ["GET"], ["POST"]
    return [
        Route("/", home, methods=get),
        Route("/sign-in", sign_in_page, methods=get),
        Route("/sign-in", sign_in, methods=post),
        Route("/sign-out", sign_out, methods=post),
        Route("/apps", apps_page, methods=get),
        Route("/apps", create_app, methods=post),
        Route(APP, app_page, methods=get),
        Route(APP + "/plan", change_plan, methods=post),
        Route(APP + "/environments", create_environment, methods=post),
        Route(ENV, environment_pages.network_page, methods=get),
        Route(
            ENV + "/client-certificates", environment_pages.upload_client_certificate, methods=post
        ),
        Route(CLIENT, environment_pages.client_certificate_page, methods=get),
        Route(CLIENT, environment_pages.edit_client_certificate, methods=post),
        Route(CLIENT + "/delete", environment_pages.delete_client_certificate, methods=post),
        Route(ENV + "/authorities", environment_pages.upload_authority, methods=post),
        Route(AUTHORITY, environment_pages.authority_page, methods=get),
        Route(AUTHORITY + "/delete", environment_pages.delete_authority, methods=post),
        Route(ENV + "/runtime-profile", environment_pages.change_runtime_profile, methods=post),
        Route(ENV + "/restart", environment_pages.restart, methods=post),
        Route(ENV + "/versions", environment_pages.versions_page, methods=get),
        Route(ENV + "/rollback", environment_pages.rollback, methods=post),
        Route(ENV + "/domains", domain_pages.domains_page, methods=get),
        Route(ENV + "/domains", domain_pages.add_custom_domain, methods=post),
        Route(ENV + "/domains/{hostname}/delete", domain_pages.remove_custom_domain, methods=post),
        Route(ENV + "/access", access_pages.access_page, methods=get),
        Route(ENV + "/access/path-rules", access_pages.save_path_rules, methods=post),
        Route(
            ENV + "/access/ip-deny-profiles",
            access_pages.attach_ip_deny_profiles,
            methods=post,
        ),
        Route(APP + "/tls-certificates", app_pages.tls_certificates_page, methods=get),
        Route(APP + "/tls-certificates", app_pages.upload_tls_certificate, methods=post),
        Route(APP + "/tls-certificates/csr", app_pages.create_csr, methods=post),
        Route(APP + "/tls-certificates/acme", app_pages.order_acme_certificate, methods=post),
        Route(TLS, app_pages.tls_certificate_page, methods=get),
        Route(TLS + "/signed-certificate", app_pages.add_signed_certificate, methods=post),
        Route(TLS + "/replace", app_pages.replace_tls_certificate, methods=post),
        Route(TLS + "/delete", app_pages.delete_tls_certificate, methods=post),
        Route(APP + "/access-profiles", app_pages.access_profiles_page, methods=get),
        Route(APP + "/access-profiles", app_pages.create_access_profile, methods=post),
        Route(PROFILE, app_pages.access_profile_page, methods=get),
        Route(PROFILE + "/ip-ranges", app_pages.update_profile_ranges, methods=post),
        Route(PROFILE + "/client-cas", app_pages.upload_client_cas, methods=post),
        Route(PROFILE + "/client-cas/selection", app_pages.select_client_cas, methods=post),
        Route(
            PROFILE + "/client-cas/{fingerprint}/delete", app_pages.remove_client_ca, methods=post
        ),
        Route(PROFILE + "/delete", app_pages.delete_access_profile, methods=post),
        Route(APP + "/ip-deny-profiles", app_pages.ip_deny_profiles_page, methods=get),
        Route(APP + "/ip-deny-profiles", app_pages.create_ip_deny_profile, methods=post),
        Route(DENY, app_pages.update_ip_deny_profile, methods=post),
        Route(DENY + "/delete", app_pages.delete_ip_deny_profile, methods=post),
        Route("/platform/certificates", platform_pages.inventory_page, methods=get),
        Route("/platform/audit", platform_pages.audit_page, methods=get),
        Route("/platform/ca", platform_pages.platform_ca_page, methods=get),
        Route("/platform/data-plane", platform_pages.data_plane_page, methods=get),
        Route("/platform/tokens", platform_pages.tokens_page, methods=get),
        Route("/platform/tokens", platform_pages.create_token, methods=post),
        Route("/platform/tokens/{token_id}/revoke", platform_pages.revoke_token, methods=post),
    ]
