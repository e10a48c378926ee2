"""An environment's Access restrictions tab: its path rules (staged, applied at restart)
and the IP deny profiles attached to it (live)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from certward.authorization import Principal
from certward.dataplane.state import RuleKind
from certward.errors import InvalidRequest, Refusal, RefusalCode
from certward.services import access_profiles, ip_deny_profiles, path_rules
from certward.services.context import Context
from certward.snapshot import PathRuleState
from certward.web.environment_pages import environment_page
from certward.web.forms import FieldErrors
from certward.web.pages import Visit, begin, call, env_path, posted, redirect, success

BLANK_PATH_RULE_ROWS = 3


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
    return await environment_page(
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
        "profile_names": [p.name for p in access_profiles.ACCESS_PROFILES.list(ctx, who, app)],
        "deny_profiles": ip_deny_profiles.IP_DENY_PROFILES.list(ctx, who, app),
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
            raise InvalidRequest(" ".join(errors.general), code=RefusalCode.INVALID_PATH_RULE)
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
