"""An environment's tabs: Network (outgoing client certificates and authorities, with the
pending changes and the restart), Domains, Access restrictions and Versions.

Outgoing changes and path rules are staged: every tab shows the pending-changes banner,
current against new, so nobody restarts without seeing what the restart applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from certward.authorization import Principal
from certward.dataplane.state import RuleKind
from certward.errors import Forbidden, InvalidRequest, NotFound, Refusal
from certward.expiry import CertificateStatus, certificate_status
from certward.pki.convert import Pkcs12Profile
from certward.services import (
    access_profiles,
    apps,
    authorities,
    client_certificates,
    domains,
    ip_deny_profiles,
    managed,
    path_rules,
    staging,
    tls_certificates,
)
from certward.services.apps import AppView, EnvironmentView
from certward.services.context import Context
from certward.services.staging import ChangesView
from certward.services.uploads import Upload
from certward.snapshot import Change, ChangeKind, PathRuleState
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

BLANK_PATH_RULE_ROWS = 3

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


async def _environment_page(
    visit: Visit,
    template: str,
    tab: str,
    values: Mapping[str, Any],
    *,
    status: int = 200,
) -> Response:
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
    return await _environment_page(
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
                code="missing-field",
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
            offer_conversion=refusal.code in ("not-pkcs12", "no-private-key"),
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
    return await _environment_page(
        visit,
        "client_certificate.html",
        "network",
        {
            "certificate": certificate,
            "status": _status(certificate.not_before, certificate.not_after, now),
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
    visit, _ = await posted(request)
    p = request.path_params
    await call(
        client_certificates.delete_certificate,
        visit.context,
        visit.who,
        p["app"],
        p["env"],
        p["certificate_id"],
    )
    return redirect(
        visit,
        env_path(p["app"], p["env"]),
        success("Client certificate removed; restart to apply the removal."),
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
                code="missing-field",
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
    return await _environment_page(visit, "authority.html", "network", {"authority": authority})


async def delete_authority(request: Request) -> Response:
    visit, _ = await posted(request)
    p = request.path_params
    await call(
        authorities.delete_authority,
        visit.context,
        visit.who,
        p["app"],
        p["env"],
        p["authority_id"],
    )
    return redirect(
        visit,
        env_path(p["app"], p["env"]),
        success("Certificate authority removed; restart to apply the removal."),
    )


async def change_runtime_profile(request: Request) -> Response:
    visit, form = await posted(request)
    app, env = request.path_params["app"], request.path_params["env"]
    try:
        profile = Pkcs12Profile(form.text("pkcs12_profile"))
    except ValueError:
        raise InvalidRequest(
            "Choose the modern, modern2026 or legacy PKCS12 profile.", code="invalid-request"
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
    return await _environment_page(visit, "env_versions.html", "versions", {"versions": listed})


async def rollback(request: Request) -> Response:
    visit, form = await posted(request)
    app, env = request.path_params["app"], request.path_params["env"]
    try:
        version = int(form.text("version"))
    except ValueError:
        raise InvalidRequest("Choose a version to roll back to.", code="invalid-request") from None
    result = await call(staging.rollback, visit.context, visit.who, app, env, version=version)
    return redirect(
        visit,
        env_path(app, env, "/versions"),
        success(
            f"Rolled back: version {result.version} is applied with the content of version "
            f"{version}."
        ),
    )


# -- the Domains tab ---------------------------------------------------------------------------


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
    return await _environment_page(
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


# -- the Access restrictions tab ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PathRuleLine:
    """One prefix: the rule that runs now, the rule a restart applies, and the form row."""

    prefix: str
    applied: str
    staged: str
    rule: str
    profile: str


async def access_page(request: Request) -> Response:
    visit = await begin(request)
    return await _access(visit)


async def _access(
    visit: Visit,
    *,
    rule_errors: FieldErrors | None = None,
    rows: list[PathRuleLine] | None = None,
    deny_errors: FieldErrors | None = None,
    status: int = 200,
) -> Response:
    p = visit.request.path_params
    found = await call(_access_values, visit.context, visit.who, p["app"], p["env"])
    return await _environment_page(
        visit,
        "env_access.html",
        "access",
        {
            **found,
            "rows": rows if rows is not None else found["rows"],
            "rule_errors": rule_errors or FieldErrors(),
            "deny_errors": deny_errors or FieldErrors(),
            "rule_kinds": list(RuleKind),
            "blank_rows": BLANK_PATH_RULE_ROWS,
        },
        status=status,
    )


def _access_values(ctx: Context, who: Principal, app: str, env: str) -> dict[str, Any]:
    rules = path_rules.list_path_rules(ctx, who, app, env)
    prefixes = sorted(rules.staged.keys() | rules.applied.keys())
    lines_ = [
        PathRuleLine(
            prefix=prefix,
            applied=_rule_text(rules.applied.get(prefix)),
            staged=_rule_text(rules.staged.get(prefix)),
            rule=(rules.staged.get(prefix) or {}).get("rule", ""),
            profile=(rules.staged.get(prefix) or {}).get("profile", ""),
        )
        for prefix in prefixes
    ]
    return {
        "path_rules": lines_,
        "rows": [line for line in lines_ if line.rule],
        "profile_names": [p.name for p in access_profiles.list_access_profiles(ctx, who, app)],
        "deny_profiles": ip_deny_profiles.list_ip_deny_profiles(ctx, who, app),
        "attached": set(ip_deny_profiles.environment_ip_denies(ctx, who, app, env).profiles),
    }


def _rule_text(rule: Mapping[str, str] | None) -> str:
    if rule is None:
        return "—"
    if rule.get("rule") == RuleKind.PROFILE.value:
        return f"profile {rule.get('profile', '')}"
    return rule.get("rule", "—")


async def save_path_rules(request: Request) -> Response:
    visit, form = await posted(request)
    app, env = request.path_params["app"], request.path_params["env"]
    prefixes, kinds, profiles = form.texts("prefix"), form.texts("rule"), form.texts("profile")
    removed = set(form.texts("remove"))
    rows: list[PathRuleLine] = []
    rules: list[PathRuleState] = []
    errors = FieldErrors()
    for index, (prefix, kind, profile) in enumerate(zip(prefixes, kinds, profiles, strict=False)):
        if not prefix.strip() or str(index) in removed:
            continue
        rows.append(PathRuleLine(prefix=prefix, applied="", staged="", rule=kind, profile=profile))
        try:
            rule = RuleKind(kind)
        except ValueError:
            errors.add(None, f"Choose a rule for {prefix!r}.")
            continue
        rules.append(
            PathRuleState(
                prefix=prefix.strip(),
                rule=rule,
                profile=(profile or None) if rule is RuleKind.PROFILE else None,
            )
        )
    try:
        if errors:
            raise InvalidRequest(" ".join(errors.general), code="invalid-path-rule")
        await call(path_rules.replace_path_rules, visit.context, visit.who, app, env, rules)
    except Refusal as refusal:
        if refusal.status in (403, 404):
            raise
        return await _access(
            visit,
            rule_errors=errors or FieldErrors.from_refusal(refusal, {}),
            rows=rows,
            status=refusal.status,
        )
    return redirect(
        visit,
        env_path(app, env, "/access"),
        success("Path rules staged; restart the environment to apply them."),
    )


async def attach_ip_deny_profiles(request: Request) -> Response:
    visit, form = await posted(request)
    app, env = request.path_params["app"], request.path_params["env"]
    try:
        await call(
            ip_deny_profiles.attach_ip_deny_profiles,
            visit.context,
            visit.who,
            app,
            env,
            profiles=form.texts("profile"),
        )
    except Refusal as refusal:
        if refusal.status in (403, 404):
            raise
        return await _access(
            visit, deny_errors=FieldErrors.from_refusal(refusal, {}), status=refusal.status
        )
    return redirect(
        visit, env_path(app, env, "/access"), success("IP deny profiles attached (live).")
    )


def _status(
    not_before: datetime | None, not_after: datetime | None, at: datetime
) -> CertificateStatus:
    return certificate_status(not_before, not_after, at=at)
