"""An environment's Domains tab: its default hostname with the managed certificate, and
custom domains served with the app's TLS certificates (live: no restart)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from certward.authorization import Principal
from certward.errors import Forbidden, NotFound, Refusal
from certward.expiry import CertificateStatus
from certward.services import domains, managed, tls_certificates
from certward.services.context import Context
from certward.web.environment_pages import environment_page
from certward.web.forms import FieldErrors, form_values
from certward.web.pages import Visit, begin, call, env_path, plan_refusal, posted, redirect, success


async def domains_page(request: Request) -> Response:
    visit = await begin(request)
    return await _domains(visit)


async def _domains(
    visit: Visit,
    *,
    errors: FieldErrors | None = None,
    values: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response:
    p = visit.request.path_params
    found = await call(_domain_values, visit.context, visit.who, p["app"], p["env"])
    return await environment_page(
        visit,
        "env_domains.html",
        "domains",
        {**found, "errors": errors or FieldErrors(), "values": values or {}},
        status=status,
    )


def _domain_values(ctx: Context, who: Principal, app: str, env: str) -> dict[str, Any]:
    listed = domains.list_domains(ctx, who, app, env)
    default = next(d for d in listed if d.kind == domains.MANAGED)
    try:
        managed_certificate = managed.get_managed_certificate(ctx, who, app, env)
    except NotFound:
        managed_certificate = None
    try:
        certificates = tls_certificates.list_certificates(ctx, who, app)
    except Forbidden as refusal:
        return {
            "default_domain": default,
            "managed_certificate": managed_certificate,
            "custom_domains": [d for d in listed if d.kind != domains.MANAGED],
            "plan_refusal": plan_refusal(refusal),
            "usable_certificates": [],
        }
    usable = [
        c
        for c in certificates
        if c.status in (CertificateStatus.VALID, CertificateStatus.EXPIRES_SOON)
    ]
    return {
        "default_domain": default,
        "managed_certificate": managed_certificate,
        "custom_domains": [d for d in listed if d.kind != domains.MANAGED],
        "plan_refusal": None,
        "usable_certificates": usable,
    }


async def add_custom_domain(request: Request) -> Response:
    visit, form = await posted(request)
    app, env = request.path_params["app"], request.path_params["env"]
    try:
        added = await call(
            domains.add_custom_domain,
            visit.context,
            visit.who,
            app,
            env,
            hostname=form.text("hostname").strip(),
            certificate_id=form.text("certificate_id"),
        )
    except Refusal as refusal:
        if refusal.code == "tls-certificate-not-found":
            field: str | None = "certificate_id"
        elif refusal.code == "plan-required":
            field = None
        else:
            field = "hostname"
        errors = FieldErrors.from_refusal(
            refusal,
            {"certificate-pending": "certificate_id", "certificate-expired": "certificate_id"},
            default=field,
        )
        return await _domains(visit, errors=errors, values=form_values(form), status=refusal.status)
    return redirect(
        visit,
        env_path(app, env, "/domains"),
        success(f"{added.hostname} is served by this environment now (no restart needed)."),
    )


async def remove_custom_domain(request: Request) -> Response:
    visit, _ = await posted(request)
    p = request.path_params
    await call(
        domains.remove_custom_domain, visit.context, visit.who, p["app"], p["env"], p["hostname"]
    )
    return redirect(
        visit,
        env_path(p["app"], p["env"], "/domains"),
        success(f"{p['hostname']} is no longer served by this environment."),
    )
