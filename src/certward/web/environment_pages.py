"""An environment's frame and its Network and Versions tabs: outgoing client certificates
and authorities, with the pending changes, the restart and the rollback.

Every tab is drawn in the frame (`environment_page`); the Domains tab is in
`certward.web.domain_pages`, the Access restrictions tab in `certward.web.access_pages`.

Outgoing changes and path rules are staged: every tab shows the pending-changes banner,
current against new, so nobody restarts without seeing what the restart applies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from certward.authorization import Principal
from certward.dataplane.state import RuleKind
from certward.errors import Forbidden, InvalidRequest, Refusal, RefusalCode
from certward.pki.convert import Pkcs12Profile
from certward.pki.problems import ProblemCode
from certward.services import (
    apps,
    authorities,
    client_certificates,
    staging,
)
from certward.services.apps import AppView, EnvironmentView
from certward.services.context import Context
from certward.services.staging import ChangesView
from certward.services.standing import CertificateKind, judge
from certward.services.uploads import Upload
from certward.snapshot import Change, ChangeKind
from certward.web.forms import (
    CLIENT_CERTIFICATE_FIELDS,
    FieldErrors,
    UploadState,
    form_values,
    pkcs12_note,
)
from certward.web.pages import (
    Visit,
    begin,
    call,
    env_path,
    lines,
    plan_refusal,
    posted,
    redirect,
    render,
    segment,
    success,
    upload,
)

# -- an environment: the frame around its tabs ---------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeField:
    """One value a restart changes: what runs now, and what will run."""

    name: str
    current: str
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeRow:
    """One pending change as the banner lists it."""

    what: str
    name: str
    change: str
    fields: tuple[ChangeField, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvironmentFrame:
    """What every tab of an environment shows: the app, the environment, what is pending."""

    app: AppView
    environment: EnvironmentView
    changes: ChangesView
    pending: tuple[ChangeRow, ...]


def environment_frame(ctx: Context, who: Principal, app: str, env: str) -> EnvironmentFrame:
    environment = apps.get_environment(ctx, who, app, env)
    changes = staging.pending_changes(ctx, who, app, env)
    return EnvironmentFrame(
        app=apps.get_app(ctx, who, app),
        environment=environment,
        changes=changes,
        pending=tuple(describe_change(c) for c in changes.changes),
    )


_CHANGE_WORDS = {
    ChangeKind.ADDED: "added",
    ChangeKind.REMOVED: "removed",
    ChangeKind.MODIFIED: "changed",
}


def describe_change(change: Change) -> ChangeRow:
    """A pending change in words: current value against new value, field by field."""
    before, after = change.before or {}, change.after or {}
    if change.object_type == "client_certificate":
        subject = str(after.get("subject") or before.get("subject") or change.object_id)
        return _row("Client certificate", subject, change, before, after, _CLIENT_FIELDS)
    if change.object_type == "certificate_authority":
        subjects = after.get("subjects") or before.get("subjects") or [change.object_id]
        return _row(
            "Certificate authority",
            "; ".join(map(str, subjects)),
            change,
            before,
            after,
            _AUTHORITY_FIELDS,
        )
    if change.object_type == "path_rule":
        return _row("Path rule", change.object_id, change, before, after, _PATH_RULE_FIELDS)
    setting = _SETTINGS.get(change.object_id, change.object_id)
    return _row("Runtime setting", setting, change, before, after, ((change.object_id, setting),))


_CLIENT_FIELDS = (
    ("pins", "Pins"),
    ("call_name", "Call name"),
    ("description", "Description"),
    ("not_after", "Expires"),
)
_AUTHORITY_FIELDS = (("subjects", "Certificates"),)
_PATH_RULE_FIELDS = (("rule", "Rule"),)
_SETTINGS = {
    "pkcs12_profile": "PKCS12 profile",
    "no_client_certificate": "Never send a client certificate to",
}


def _row(
    what: str,
    name: str,
    change: Change,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    fields: Iterable[tuple[str, str]],
) -> ChangeRow:
    rows = []
    for key, label in fields:
        current = _value_text(key, before) if change.before is not None else "—"
        new = _value_text(key, after) if change.after is not None else "—"
        if current == new and (change.change is ChangeKind.MODIFIED or current == "—"):
            continue
        rows.append(ChangeField(name=label, current=current, new=new))
    return ChangeRow(what=what, name=name, change=_CHANGE_WORDS[change.change], fields=tuple(rows))


def _value_text(key: str, values: Mapping[str, Any]) -> str:
    if key == "rule":
        rule = values.get("rule")
        profile = values.get("profile")
        return f"profile {profile}" if rule == RuleKind.PROFILE.value and profile else str(rule)
    value = values.get(key)
    if value is None or value == "":
        return "—"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "—"
    if key == "not_after":
        return str(value)[:10]
    return str(value)


async def environment_page(
    visit: Visit,
    template: str,
    tab: str,
    values: Mapping[str, Any],
    *,
    status: int = 200,
) -> Response:
    """``template`` as the ``tab`` of the environment the request names, in its frame."""
    request = visit.request
    frame = await call(
        environment_frame,
        visit.context,
        visit.who,
        request.path_params["app"],
        request.path_params["env"],
    )
    return render(visit, template, {"frame": frame, "tab": tab, **values}, status=status)


# -- the Network tab: outgoing client certificates and authorities --------------------------------


async def network_page(request: Request) -> Response:
    visit = await begin(request)
    return await _network(visit)


async def _network(
    visit: Visit,
    *,
    client_upload: UploadState | None = None,
    authority_upload: UploadState | None = None,
    restart_refusal: Refusal | None = None,
    status: int = 200,
) -> Response:
    request = visit.request
    app, env = request.path_params["app"], request.path_params["env"]
    outgoing = await call(_outgoing, visit.context, visit.who, app, env)
    return await environment_page(
        visit,
        "env_network.html",
        "network",
        {
            **outgoing,
            "client_upload": client_upload or UploadState(errors=FieldErrors(), values={}),
            "authority_upload": authority_upload or UploadState(errors=FieldErrors(), values={}),
            "restart_refusal": restart_refusal,
            "profiles": list(Pkcs12Profile),
        },
        status=status,
    )


def _outgoing(ctx: Context, who: Principal, app: str, env: str) -> dict[str, Any]:
    try:
        certificates = client_certificates.list_certificates(ctx, who, app, env, limit=1000)
        authority_list = authorities.list_authorities(ctx, who, app, env)
    except Forbidden as refusal:
        return {"plan_refusal": plan_refusal(refusal), "certificates": [], "authorities": []}
    return {"plan_refusal": None, "certificates": certificates, "authorities": authority_list}


async def upload_client_certificate(request: Request) -> Response:
    visit, form = await posted(request)
    app, env = request.path_params["app"], request.path_params["env"]
    file = form.file("file")
    note = pkcs12_note(file, limits=visit.context.limits) if file else None
    try:
        if file is None:
            raise InvalidRequest(
                "Choose the PKCS12 file (.p12 or .pfx), or a PEM or DER certificate.",
                code=RefusalCode.MISSING_FIELD,
            )
        password = form.fields.get("password", [""])[0]
        created = await upload(
            visit,
            app,
            client_certificates.upload,
            visit.context,
            visit.who,
            app,
            env,
            file=file,
            password=password.encode() if password else None,
            key=form.file("key"),
            chain=form.file("chain"),
            description=form.text("description"),
            pins=lines(form.text("pins")),
            call_name=form.text("call_name") or None,
        )
    except Refusal as refusal:
        errors = FieldErrors.from_refusal(refusal, CLIENT_CERTIFICATE_FIELDS, default="file")
        state = UploadState(
            errors=errors,
            values=form_values(form, without=("password",)),
            note=note,
            offer_conversion=refusal.code in (ProblemCode.NOT_PKCS12, ProblemCode.NO_PRIVATE_KEY),
        )
        return await _network(visit, client_upload=state, status=refusal.status)
    warnings = " ".join(p.message for p in created.problems)
    text = f"Client certificate {created.subject} added; restart to apply it."
    if note:
        text = f"{text} {note}"
    if warnings:
        text = f"{text} Warnings: {warnings}"
    return redirect(
        visit, env_path(app, env, f"/client-certificates/{segment(created.id)}"), success(text)
    )


async def client_certificate_page(request: Request) -> Response:
    visit = await begin(request)
    return await _client_certificate(visit)


async def _client_certificate(
    visit: Visit,
    *,
    errors: FieldErrors | None = None,
    values: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response:
    p = visit.request.path_params
    certificate = await call(
        client_certificates.get_certificate,
        visit.context,
        visit.who,
        p["app"],
        p["env"],
        p["certificate_id"],
    )
    now = visit.context.clock.now()
    return await environment_page(
        visit,
        "client_certificate.html",
        "network",
        {
            "certificate": certificate,
            "status": judge(
                visit.context.settings,
                CertificateKind.CLIENT,
                certificate.not_before,
                certificate.not_after,
                at=now,
            ),
            "errors": errors or FieldErrors(),
            "values": values
            or {
                "pins": "\n".join(certificate.pins),
                "call_name": certificate.call_name or "",
                "description": certificate.description,
            },
        },
        status=status,
    )


async def edit_client_certificate(request: Request) -> Response:
    visit, form = await posted(request)
    p = request.path_params
    try:
        await call(
            client_certificates.update_certificate,
            visit.context,
            visit.who,
            p["app"],
            p["env"],
            p["certificate_id"],
            pins=lines(form.text("pins")),
            call_name=form.text("call_name") or None,
            description=form.text("description"),
        )
    except Refusal as refusal:
        if refusal.status == 404:
            raise
        errors = FieldErrors.from_refusal(refusal, CLIENT_CERTIFICATE_FIELDS)
        return await _client_certificate(
            visit, errors=errors, values=form_values(form), status=refusal.status
        )
    return redirect(
        visit,
        env_path(p["app"], p["env"], f"/client-certificates/{segment(p['certificate_id'])}"),
        success("Pins, call name and description saved; restart to apply them."),
    )


async def delete_client_certificate(request: Request) -> Response:
    return await _remove_staged(
        request,
        client_certificates.delete_certificate,
        "certificate_id",
        "Client certificate removed; restart to apply the removal.",
    )


async def upload_authority(request: Request) -> Response:
    visit, form = await posted(request)
    app, env = request.path_params["app"], request.path_params["env"]
    file = form.file("file")
    pasted = form.text("pem").strip()
    try:
        if file is None and not pasted:
            raise InvalidRequest(
                "Choose a PEM file with the CA certificates, or paste them.",
                code=RefusalCode.MISSING_FIELD,
            )
        material = file or Upload(filename="pasted.pem", data=pasted.encode() + b"\n")
        created = await upload(
            visit, app, authorities.upload, visit.context, visit.who, app, env, file=material
        )
    except Refusal as refusal:
        field = "pem" if file is None and pasted else "file"
        errors = FieldErrors.from_refusal(refusal, {}, default=field)
        state = UploadState(errors=errors, values=form_values(form))
        return await _network(visit, authority_upload=state, status=refusal.status)
    found = len(created.certificates)
    warnings = " ".join(p.message for p in created.problems)
    text = (
        f"Certificate authority added with {found} certificate{'s' if found != 1 else ''}; "
        "restart to apply it."
    )
    if warnings:
        text = f"{text} Warnings: {warnings}"
    return redirect(visit, env_path(app, env, f"/authorities/{segment(created.id)}"), success(text))


async def authority_page(request: Request) -> Response:
    visit = await begin(request)
    p = request.path_params
    authority = await call(
        authorities.get_authority, visit.context, visit.who, p["app"], p["env"], p["authority_id"]
    )
    return await environment_page(visit, "authority.html", "network", {"authority": authority})


async def delete_authority(request: Request) -> Response:
    return await _remove_staged(
        request,
        authorities.delete_authority,
        "authority_id",
        "Certificate authority removed; restart to apply the removal.",
    )


async def _remove_staged(
    request: Request,
    remove: Callable[[Context, Principal, str, str, str], None],
    id_parameter: str,
    text: str,
) -> Response:
    """Stage the removal of the row the path names (``id_parameter``), back to the Network tab."""
    visit, _ = await posted(request)
    p = request.path_params
    await call(remove, visit.context, visit.who, p["app"], p["env"], p[id_parameter])
    return redirect(visit, env_path(p["app"], p["env"]), success(text))


async def change_runtime_profile(request: Request) -> Response:
    visit, form = await posted(request)
    app, env = request.path_params["app"], request.path_params["env"]
    try:
        profile = Pkcs12Profile(form.text("pkcs12_profile"))
    except ValueError:
        raise InvalidRequest(
            "Choose the modern, modern2026 or legacy PKCS12 profile.",
            code=RefusalCode.INVALID_REQUEST,
        ) from None
    await call(apps.update_environment, visit.context, visit.who, app, env, pkcs12_profile=profile)
    return redirect(
        visit,
        env_path(app, env),
        success(f"Runtimes will read {profile.value} PKCS12 files after the next restart."),
    )


# -- restart and versions ------------------------------------------------------------------------


async def restart(request: Request) -> Response:
    visit, _ = await posted(request)
    app, env = request.path_params["app"], request.path_params["env"]
    try:
        result = await call(staging.restart, visit.context, visit.who, app, env)
    except InvalidRequest as refusal:
        return await _network(visit, restart_refusal=refusal, status=refusal.status)
    text = (
        f"Restarted: version {result.version} is applied (digest {result.digest[:12]})."
        if result.changed
        else f"Nothing was pending: version {result.version} stays applied."
    )
    return redirect(visit, env_path(app, env, "/versions"), success(text))


async def versions_page(request: Request) -> Response:
    visit = await begin(request)
    p = request.path_params
    listed = await call(staging.list_versions, visit.context, visit.who, p["app"], p["env"])
    return await environment_page(visit, "env_versions.html", "versions", {"versions": listed})


async def rollback(request: Request) -> Response:
    visit, form = await posted(request)
    app, env = request.path_params["app"], request.path_params["env"]
    try:
        version = int(form.text("version"))
    except ValueError:
        raise InvalidRequest(
            "Choose a version to roll back to.", code=RefusalCode.INVALID_REQUEST
        ) from None
    result = await call(staging.rollback, visit.context, visit.who, app, env, version=version)
    return redirect(
        visit,
        env_path(app, env, "/versions"),
        success(
            f"Rolled back: version {result.version} is applied with the content of version "
            f"{version}."
        ),
    )
