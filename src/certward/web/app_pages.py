"""App-level pages: TLS certificates for custom domains (upload, CSR, signed certificate,
replace), access profiles with their client-CA trees, and IP deny profiles.

All of them are live (nothing to restart); only the path rules that name a profile are
staged, on an environment's Access restrictions tab.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from certward.authorization import Principal
from certward.errors import Forbidden, InvalidRequest, Refusal, RefusalCode
from certward.expiry import CertificateStatus
from certward.pki.csr import CsrKeyType
from certward.services import (
    access_profiles,
    apps,
    tls_acme,
    tls_certificates,
)
from certward.services.access_profiles import ACCESS_PROFILES
from certward.services.acme_issuing import acme_enabled
from certward.services.apps import AppView
from certward.services.context import Context
from certward.services.ip_deny_profiles import IP_DENY_PROFILES
from certward.services.range_profiles import RangeProfileKind
from certward.web.forms import (
    ACME_FIELDS,
    CSR_FIELDS,
    TLS_CERTIFICATE_FIELDS,
    FieldErrors,
    UploadState,
    form_values,
)
from certward.web.pages import (
    Visit,
    app_path,
    begin,
    call,
    lines,
    plan_refusal,
    posted,
    redirect,
    render,
    segment,
    success,
    upload,
)

# -- app level: TLS certificates for custom domains ---------------------------------------------


async def tls_certificates_page(request: Request) -> Response:
    visit = await begin(request)
    return await _tls_certificates(visit)


async def _tls_certificates(
    visit: Visit,
    *,
    upload: UploadState | None = None,
    csr: UploadState | None = None,
    acme: UploadState | None = None,
    status: int = 200,
) -> Response:
    app = visit.request.path_params["app"]
    wanted = visit.request.query_params.get("status") or None
    try:
        status_filter = CertificateStatus(wanted) if wanted else None
    except ValueError:
        status_filter = None
    view, certificates, refusal = await call(
        _tls_values, visit.context, visit.who, app, status_filter
    )
    return render(
        visit,
        "tls_certificates.html",
        {
            "app": view,
            "app_tab": "tls",
            "certificates": certificates,
            "plan_refusal": refusal,
            "statuses": list(CertificateStatus),
            "status_filter": status_filter.value if status_filter else "",
            "key_types": list(CsrKeyType),
            "upload": upload or UploadState(errors=FieldErrors(), values={}),
            "csr": csr or UploadState(errors=FieldErrors(), values={}),
            "acme": acme or UploadState(errors=FieldErrors(), values={}),
            "acme_configured": acme_enabled(visit.context),
        },
        status=status,
    )


def _tls_values(
    ctx: Context, who: Principal, app: str, status: CertificateStatus | None
) -> tuple[AppView, list[tls_certificates.TlsCertificateView], str | None]:
    view = apps.get_app(ctx, who, app)
    try:
        return view, tls_certificates.list_certificates(ctx, who, app, status=status), None
    except Forbidden as refusal:
        return view, [], plan_refusal(refusal)


async def upload_tls_certificate(request: Request) -> Response:
    visit, form = await posted(request)
    app = request.path_params["app"]
    certificate, key = form.file("certificate"), form.file("private_key")
    try:
        if certificate is None or key is None:
            errors = FieldErrors()
            if certificate is None:
                errors.add("certificate", "Choose the certificate file (PEM or DER).")
            if key is None:
                errors.add("private_key", "Choose the private key file (PEM or DER).")
            state = UploadState(errors=errors, values=form_values(form, without=("password",)))
            return await _tls_certificates(visit, upload=state, status=422)
        password = form.text("password")
        created = await upload(
            visit,
            app,
            tls_certificates.upload,
            visit.context,
            visit.who,
            app,
            certificate=certificate,
            private_key=key,
            chain=form.file("chain"),
            password=password.encode() if password else None,
            description=form.text("description"),
        )
    except Refusal as refusal:
        errors = FieldErrors.from_refusal(refusal, TLS_CERTIFICATE_FIELDS, default="certificate")
        state = UploadState(errors=errors, values=form_values(form, without=("password",)))
        return await _tls_certificates(visit, upload=state, status=refusal.status)
    warnings = " ".join(p.message for p in created.problems)
    text = f"TLS certificate {created.subject} uploaded."
    if warnings:
        text = f"{text} Warnings: {warnings}"
    return redirect(visit, app_path(app, f"/tls-certificates/{segment(created.id)}"), success(text))


async def create_csr(request: Request) -> Response:
    visit, form = await posted(request)
    app = request.path_params["app"]
    try:
        key_type = CsrKeyType(form.text("key_type") or CsrKeyType.EC_P256.value)
        created = await call(
            tls_certificates.create_csr,
            visit.context,
            visit.who,
            app,
            common_name=form.text("common_name").strip(),
            sans=lines(form.text("sans")),
            key_type=key_type,
            description=form.text("description"),
        )
    except ValueError:
        errors = FieldErrors()
        errors.add("key_type", "Choose one of the key types offered.")
        state = UploadState(errors=errors, values=form_values(form))
        return await _tls_certificates(visit, csr=state, status=422)
    except Refusal as refusal:
        errors = FieldErrors.from_refusal(refusal, CSR_FIELDS, default="common_name")
        state = UploadState(errors=errors, values=form_values(form))
        return await _tls_certificates(visit, csr=state, status=refusal.status)
    return redirect(
        visit,
        app_path(app, f"/tls-certificates/{segment(created.id)}"),
        success("Key and CSR created: send the CSR to your CA, then upload what it signed."),
    )


async def order_acme_certificate(request: Request) -> Response:
    """Order from the ACME CA; the page waits while the CA validates the names."""
    visit, form = await posted(request)
    app = request.path_params["app"]
    try:
        created = await call(
            tls_acme.order_from_acme,
            visit.context,
            visit.who,
            app,
            sans=lines(form.text("sans")),
            description=form.text("description"),
        )
    except Refusal as refusal:
        if refusal.status in (403, 404) and refusal.code != RefusalCode.PLAN_REQUIRED:
            raise
        errors = FieldErrors.from_refusal(refusal, ACME_FIELDS)
        state = UploadState(errors=errors, values=form_values(form))
        return await _tls_certificates(visit, acme=state, status=refusal.status)
    names = ", ".join(created.sans)
    return redirect(
        visit,
        app_path(app, f"/tls-certificates/{segment(created.id)}"),
        success(f"The ACME CA issued a certificate for {names}; certward renews it by itself."),
    )


async def tls_certificate_page(request: Request) -> Response:
    visit = await begin(request)
    return await _tls_certificate(visit)


async def _tls_certificate(
    visit: Visit,
    *,
    signed: FieldErrors | None = None,
    replace: FieldErrors | None = None,
    delete: FieldErrors | None = None,
    status: int = 200,
) -> Response:
    p = visit.request.path_params
    view, certificate, others = await call(
        _tls_certificate_values, visit.context, visit.who, p["app"], p["certificate_id"]
    )
    return render(
        visit,
        "tls_certificate.html",
        {
            "app": view,
            "app_tab": "tls",
            "certificate": certificate,
            "replacements": others,
            "signed_errors": signed or FieldErrors(),
            "replace_errors": replace or FieldErrors(),
            "delete_errors": delete or FieldErrors(),
        },
        status=status,
    )


def _tls_certificate_values(
    ctx: Context, who: Principal, app: str, certificate_id: str
) -> tuple[AppView, tls_certificates.TlsCertificateView, list[tls_certificates.TlsCertificateView]]:
    certificate = tls_certificates.get_certificate(ctx, who, app, certificate_id)
    others = [
        c
        for c in tls_certificates.list_certificates(ctx, who, app)
        if c.id != certificate.id
        and c.status in (CertificateStatus.VALID, CertificateStatus.EXPIRES_SOON)
    ]
    return apps.get_app(ctx, who, app), certificate, others


async def add_signed_certificate(request: Request) -> Response:
    visit, form = await posted(request)
    p = request.path_params
    certificate = form.file("certificate")
    try:
        if certificate is None:
            raise InvalidRequest(
                "Choose the certificate your CA signed (PEM or DER).",
                code=RefusalCode.MISSING_FIELD,
            )
        await upload(
            visit,
            p["app"],
            tls_certificates.add_signed_certificate,
            visit.context,
            visit.who,
            p["app"],
            p["certificate_id"],
            certificate=certificate,
            chain=form.file("chain"),
        )
    except Refusal as refusal:
        if refusal.status in (403, 404):
            raise
        errors = FieldErrors.from_refusal(refusal, TLS_CERTIFICATE_FIELDS, default="certificate")
        return await _tls_certificate(visit, signed=errors, status=refusal.status)
    return redirect(
        visit,
        app_path(p["app"], f"/tls-certificates/{segment(p['certificate_id'])}"),
        success("Signed certificate added: the certificate is complete."),
    )


async def replace_tls_certificate(request: Request) -> Response:
    visit, form = await posted(request)
    p = request.path_params
    try:
        replacement = await call(
            tls_certificates.replace_certificate,
            visit.context,
            visit.who,
            p["app"],
            p["certificate_id"],
            replacement_id=form.text("replacement_id"),
        )
    except Refusal as refusal:
        if refusal.status == 403:
            raise
        errors = FieldErrors.from_refusal(refusal, {}, default="replacement_id")
        return await _tls_certificate(visit, replace=errors, status=refusal.status)
    return redirect(
        visit,
        app_path(p["app"], f"/tls-certificates/{segment(replacement.id)}"),
        success("Every custom domain that used the certificate now uses this one."),
    )


async def delete_tls_certificate(request: Request) -> Response:
    visit, _ = await posted(request)
    p = request.path_params
    try:
        await call(
            tls_certificates.delete_certificate,
            visit.context,
            visit.who,
            p["app"],
            p["certificate_id"],
        )
    except Refusal as refusal:
        if refusal.status in (403, 404):
            raise
        return await _tls_certificate(
            visit, delete=FieldErrors.from_refusal(refusal, {}), status=refusal.status
        )
    return redirect(
        visit, app_path(p["app"], "/tls-certificates"), success("TLS certificate deleted.")
    )


# -- app level: range profiles (access profiles, IP deny profiles) ----------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Refused:
    """A refused edit of a profile: of its ranges (with the form's values), or its deletion."""

    profile: str
    errors: FieldErrors
    status: int
    values: Mapping[str, str] | None = None  # None: the deletion was refused


@dataclass(frozen=True, slots=True, kw_only=True)
class _RangeProfilePages:
    """One kind of range profile in the console.

    The list page (``template``, under ``collection``) holds the create form. A profile
    is edited on ``profile_path`` (the access profile's own page, or the IP deny list),
    and a created profile leads there; ``refused`` draws that page again with the errors
    of a refused edit. ``title`` starts the notices; ``created`` ends the one of a new
    profile, ``saved`` is the one of saved ranges.
    """

    kind: RangeProfileKind[Any, Any, Any]
    template: str
    tab: str
    collection: str
    title: str
    created: str
    saved: Callable[[str], str]
    profile_path: Callable[[str, str], str]  # app, name -> path
    refused: Callable[[Visit, _Refused], Awaitable[Response]]


_PROFILE_FIELDS: dict[str, str] = {
    RefusalCode.INVALID_NAME: "name",
    RefusalCode.ACCESS_PROFILE_EXISTS: "name",
    RefusalCode.IP_DENY_PROFILE_EXISTS: "name",
    RefusalCode.INVALID_IP_RANGE: "ip_ranges",
    RefusalCode.TOO_MANY_IP_RANGES: "ip_ranges",
}


async def _range_profiles(
    visit: Visit,
    pages: _RangeProfilePages,
    *,
    errors: FieldErrors | None = None,
    values: Mapping[str, str] | None = None,
    edit_errors: Mapping[str, FieldErrors] | None = None,
    status: int = 200,
) -> Response:
    app = visit.request.path_params["app"]
    view, profiles = await call(_profiles_values, visit.context, visit.who, pages.kind, app)
    return render(
        visit,
        pages.template,
        {
            "app": view,
            "app_tab": pages.tab,
            "profiles": profiles,
            "errors": errors or FieldErrors(),
            "values": values or {},
            "edit_errors": edit_errors or {},
        },
        status=status,
    )


def _profiles_values(
    ctx: Context, who: Principal, kind: RangeProfileKind[Any, Any, Any], app: str
) -> tuple[AppView, list[Any]]:
    return apps.get_app(ctx, who, app), kind.list(ctx, who, app)


async def _create_range_profile(request: Request, pages: _RangeProfilePages) -> Response:
    visit, form = await posted(request)
    app = request.path_params["app"]
    try:
        created = await call(
            pages.kind.create,
            visit.context,
            visit.who,
            app,
            name=form.text("name").strip(),
            ip_ranges=lines(form.text("ip_ranges")),
        )
    except Refusal as refusal:
        if refusal.status in (403, 404):
            raise
        errors = FieldErrors.from_refusal(refusal, _PROFILE_FIELDS)
        return await _range_profiles(
            visit, pages, errors=errors, values=form_values(form), status=refusal.status
        )
    return redirect(
        visit,
        pages.profile_path(app, created.name),
        success(f"{pages.title} {created.name} created{pages.created}."),
    )


async def _update_ranges(request: Request, pages: _RangeProfilePages) -> Response:
    visit, form = await posted(request)
    p = request.path_params
    try:
        await call(
            pages.kind.update,
            visit.context,
            visit.who,
            p["app"],
            p["profile"],
            ip_ranges=lines(form.text("ip_ranges")),
        )
    except Refusal as refusal:
        if refusal.status in (403, 404):
            raise
        errors = FieldErrors.from_refusal(refusal, _PROFILE_FIELDS)
        refused = _Refused(
            profile=p["profile"], errors=errors, status=refusal.status, values=form_values(form)
        )
        return await pages.refused(visit, refused)
    path = pages.profile_path(p["app"], p["profile"])
    return redirect(visit, path, success(pages.saved(p["profile"])))


async def _delete_range_profile(request: Request, pages: _RangeProfilePages) -> Response:
    visit, _ = await posted(request)
    p = request.path_params
    try:
        await call(pages.kind.delete, visit.context, visit.who, p["app"], p["profile"])
    except Refusal as refusal:
        if refusal.status in (403, 404):
            raise
        errors = FieldErrors.from_refusal(refusal, {})
        return await pages.refused(
            visit, _Refused(profile=p["profile"], errors=errors, status=refusal.status)
        )
    return redirect(
        visit,
        app_path(p["app"], f"/{pages.collection}"),
        success(f"{pages.title} {p['profile']} deleted."),
    )


# -- app level: an access profile's page (IP ranges, client CAs) ------------------------------


async def access_profile_page(request: Request) -> Response:
    visit = await begin(request)
    return await _access_profile(visit)


async def _access_profile(
    visit: Visit,
    *,
    range_errors: FieldErrors | None = None,
    range_values: Mapping[str, str] | None = None,
    ca_errors: FieldErrors | None = None,
    selection_errors: FieldErrors | None = None,
    delete_errors: FieldErrors | None = None,
    status: int = 200,
) -> Response:
    p = visit.request.path_params
    view, profile = await call(_profile_values, visit.context, visit.who, p["app"], p["profile"])
    return render(
        visit,
        "access_profile.html",
        {
            "app": view,
            "app_tab": "access-profiles",
            "profile": profile,
            "any_selected": _any_selected(profile.certificates),
            "now": visit.context.clock.now(),
            "range_errors": range_errors or FieldErrors(),
            "range_values": range_values or {"ip_ranges": "\n".join(profile.ip_ranges)},
            "ca_errors": ca_errors or FieldErrors(),
            "selection_errors": selection_errors or FieldErrors(),
            "delete_errors": delete_errors or FieldErrors(),
        },
        status=status,
    )


def _any_selected(nodes: Iterable[access_profiles.ClientCaNode]) -> bool:
    return any(node.selected or _any_selected(node.children) for node in nodes)


def _profile_values(
    ctx: Context, who: Principal, app: str, name: str
) -> tuple[AppView, access_profiles.AccessProfileView]:
    return apps.get_app(ctx, who, app), ACCESS_PROFILES.get(ctx, who, app, name)


async def _access_refused(visit: Visit, refused: _Refused) -> Response:
    if refused.values is None:
        return await _access_profile(visit, delete_errors=refused.errors, status=refused.status)
    return await _access_profile(
        visit, range_errors=refused.errors, range_values=refused.values, status=refused.status
    )


async def upload_client_cas(request: Request) -> Response:
    visit, form = await posted(request)
    p = request.path_params
    file = form.file("certificates")
    try:
        if file is None:
            raise InvalidRequest(
                "Choose a PEM file with the CA certificates (a root and intermediates).",
                code=RefusalCode.MISSING_FIELD,
            )
        tree = await upload(
            visit,
            p["app"],
            access_profiles.upload_client_cas,
            visit.context,
            visit.who,
            p["app"],
            p["profile"],
            file=file,
        )
    except Refusal as refusal:
        if refusal.status in (403, 404) and refusal.code != RefusalCode.PLAN_REQUIRED:
            raise
        errors = FieldErrors.from_refusal(refusal, {}, default="certificates")
        return await _access_profile(visit, ca_errors=errors, status=refusal.status)
    warnings = " ".join(problem.message for problem in tree.problems)
    text = "Client CAs added; tick the ones whose client certificates are accepted."
    if warnings:
        text = f"{text} Warnings: {warnings}"
    return redirect(visit, _profile_path(p), success(text))


async def select_client_cas(request: Request) -> Response:
    visit, form = await posted(request)
    p = request.path_params
    try:
        await call(
            access_profiles.select_client_cas,
            visit.context,
            visit.who,
            p["app"],
            p["profile"],
            selected=form.texts("selected"),
        )
    except Refusal as refusal:
        if refusal.status in (403, 404):
            raise
        return await _access_profile(
            visit, selection_errors=FieldErrors.from_refusal(refusal, {}), status=refusal.status
        )
    return redirect(visit, _profile_path(p), success("Accepted client CAs saved (live)."))


async def remove_client_ca(request: Request) -> Response:
    visit, _ = await posted(request)
    p = request.path_params
    try:
        await call(
            access_profiles.remove_client_ca,
            visit.context,
            visit.who,
            p["app"],
            p["profile"],
            p["fingerprint"],
        )
    except Refusal as refusal:
        if refusal.status in (403, 404):
            raise
        return await _access_profile(
            visit, selection_errors=FieldErrors.from_refusal(refusal, {}), status=refusal.status
        )
    return redirect(visit, _profile_path(p), success("Client CA removed."))


def _profile_path(p: Mapping[str, str]) -> str:
    return app_path(p["app"], f"/access-profiles/{segment(p['profile'])}")


# -- app level: the two kinds -------------------------------------------------------------------


async def _deny_refused(visit: Visit, refused: _Refused) -> Response:
    errors = {refused.profile: refused.errors}
    return await _range_profiles(visit, _DENY_PAGES, edit_errors=errors, status=refused.status)


_ACCESS_PAGES = _RangeProfilePages(
    kind=ACCESS_PROFILES,
    template="access_profiles.html",
    tab="access-profiles",
    collection="access-profiles",
    title="Access profile",
    created="",
    saved=lambda _: "IP ranges saved; the gateway uses them now.",
    profile_path=lambda app, name: app_path(app, f"/access-profiles/{segment(name)}"),
    refused=_access_refused,
)
_DENY_PAGES = _RangeProfilePages(
    kind=IP_DENY_PROFILES,
    template="ip_deny_profiles.html",  # profiles are edited on their list page
    tab="ip-deny",
    collection="ip-deny-profiles",
    title="IP deny profile",
    created="; attach it to environments",
    saved=lambda name: f"IP deny profile {name} saved (live).",
    profile_path=lambda app, _: app_path(app, "/ip-deny-profiles"),
    refused=_deny_refused,
)


async def access_profiles_page(request: Request) -> Response:
    return await _range_profiles(await begin(request), _ACCESS_PAGES)


async def create_access_profile(request: Request) -> Response:
    return await _create_range_profile(request, _ACCESS_PAGES)


async def update_profile_ranges(request: Request) -> Response:
    return await _update_ranges(request, _ACCESS_PAGES)


async def delete_access_profile(request: Request) -> Response:
    return await _delete_range_profile(request, _ACCESS_PAGES)


async def ip_deny_profiles_page(request: Request) -> Response:
    return await _range_profiles(await begin(request), _DENY_PAGES)


async def create_ip_deny_profile(request: Request) -> Response:
    return await _create_range_profile(request, _DENY_PAGES)


async def update_ip_deny_profile(request: Request) -> Response:
    return await _update_ranges(request, _DENY_PAGES)


async def delete_ip_deny_profile(request: Request) -> Response:
    return await _delete_range_profile(request, _DENY_PAGES)
