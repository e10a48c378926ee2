"""Looking up an app or environment on behalf of a principal, with the 404 rule applied."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from certward.authorization import Action, Principal, Verdict, verdict, visible
from certward.errors import Forbidden, NotFound, RefusalCode
from certward.model import App, Environment
from certward.vocabulary import Plan


def require(
    principal: Principal, action: Action, app_id: str | None = None, env_id: str | None = None
) -> None:
    """Raise unless ``principal`` may do ``action``; 404 when it may not even know."""
    answer = verdict(principal, action, app_id, env_id)
    if answer is Verdict.NOT_FOUND:
        raise NotFound("No such app or environment.")
    if answer is Verdict.FORBIDDEN:
        raise Forbidden(f"This token may not {action.value.replace('-', ' ')} here.")


def find_app(session: Session, principal: Principal, name: str, action: Action) -> App:
    """The app called ``name``, if ``principal`` may do ``action`` on it."""
    app = session.scalar(select(App).where(App.name == name))
    if app is None or not visible(principal, app.id):
        raise NotFound(f"No app called {name!r}.", code=RefusalCode.APP_NOT_FOUND)
    require(principal, action, app.id)
    return app


def find_environment(
    session: Session, principal: Principal, app_name: str, env_name: str, action: Action
) -> tuple[App, Environment]:
    """The app and its environment ``env_name``, if ``principal`` may do ``action``."""
    app = session.scalar(select(App).where(App.name == app_name))
    if app is None or not visible(principal, app.id):
        raise NotFound(f"No app called {app_name!r}.", code=RefusalCode.APP_NOT_FOUND)
    query = select(Environment).where(Environment.app_id == app.id, Environment.name == env_name)
    if action is Action.MANAGE:
        # Changes to one environment take turns, on PostgreSQL as on SQLite (which writes
        # one transaction at a time): each restart, upload or edit sees the others' result.
        query = query.with_for_update()
    environment = session.scalar(query)
    if environment is None or not visible(principal, app.id, environment.id):
        raise NotFound(
            f"App {app_name!r} has no environment called {env_name!r}.",
            code=RefusalCode.ENVIRONMENT_NOT_FOUND,
        )
    require(principal, action, app.id, environment.id)
    return app, environment


def require_licensed(app: App) -> None:
    """Custom certificates are a licensed-plan feature: say so, do not hide it."""
    if app.plan is not Plan.LICENSED:
        raise Forbidden(
            f"App {app.name!r} is on the free plan: custom certificates (client "
            "certificates, certificate authorities, custom domains) need a licensed plan.",
            code=RefusalCode.PLAN_REQUIRED,
        )
