"""Range profiles: named sets of IP ranges owned by an app, whatever their kind.

Access profiles (`certward.services.access_profiles`: who may call, with client CAs)
and IP deny profiles (`certward.services.ip_deny_profiles`: who may not, attached to
environments) are both one. What they share is written once here: a name unique within
the app, the ranges (judged by `certward.ip_ranges`), create, list, show, replace the
ranges, delete, each audited. A `RangeProfileKind` describes one kind: its table, its
words and codes, and hooks for what the kind keeps besides the ranges (its client CAs,
its attachments). Every edit is live.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from certward.authorization import Action, Principal
from certward.db import flush_or_conflict
from certward.errors import Conflict, NotFound
from certward.ip_ranges import check_ip_ranges
from certward.model import App, RangeProfileTable
from certward.services import audit
from certward.services.apps import check_label
from certward.services.context import Context
from certward.services.lookups import find_app

RowT = TypeVar("RowT", bound=RangeProfileTable)
RelatedT = TypeVar("RelatedT")
ViewT = TypeVar("ViewT")


@dataclass(frozen=True, slots=True, kw_only=True)
class RangeProfileKind(Generic[RowT, RelatedT, ViewT]):
    """One kind of range profile, and the use cases every kind has.

    ``related`` reads what the kind keeps besides the ranges, for the profiles of the
    given ids (a fixed number of queries; every id has an entry). ``state`` is that part
    of the audited state, ``view`` the answer, and ``refuse_in_use`` raises `Conflict`
    when deleting the profile would change what the data plane enforces unannounced.
    """

    table: type[RowT]
    noun: str  # "access profile": in messages and the name check
    audit_name: str  # "access_profile": the object type, and the actions' prefix
    exists_code: str
    not_found_code: str
    related: Callable[[Session, Sequence[str]], Mapping[str, RelatedT]]
    state: Callable[[RelatedT], Mapping[str, Any]]
    view: Callable[[RowT, RelatedT], ViewT]
    refuse_in_use: Callable[[Session, App, RowT, RelatedT], None]

    def create(
        self,
        ctx: Context,
        principal: Principal,
        app_name: str,
        *,
        name: str,
        ip_ranges: Sequence[str],
    ) -> ViewT:
        check_label(name, f"{self.noun} name")
        ranges = check_ip_ranges(ip_ranges)
        table = self.table
        with ctx.database.transaction() as session:
            app = find_app(session, principal, app_name, Action.MANAGE)
            exists = f"App {app_name!r} already has an {self.noun} called {name!r}."
            if session.scalar(select(table.id).where(table.app_id == app.id, table.name == name)):
                raise Conflict(exists, code=self.exists_code)
            now = ctx.clock.now()
            profile = table(
                app_id=app.id, name=name, ip_ranges=ranges, created_at=now, updated_at=now
            )
            session.add(profile)
            flush_or_conflict(session, exists, code=self.exists_code)
            related = self.related(session, [profile.id])[profile.id]
            self.record(
                session,
                ctx,
                principal,
                app,
                profile,
                "create",
                after=self.state_of(profile, related),
            )
            return self.view(profile, related)

    def list(self, ctx: Context, principal: Principal, app_name: str) -> list[ViewT]:
        """The app's profiles of this kind by name, with what each holds (two queries)."""
        table = self.table
        with ctx.database.reading() as session:
            app = find_app(session, principal, app_name, Action.READ)
            profiles = list(
                session.scalars(select(table).where(table.app_id == app.id).order_by(table.name))
            )
            related = self.related(session, [p.id for p in profiles])
            return [self.view(p, related[p.id]) for p in profiles]

    def get(self, ctx: Context, principal: Principal, app_name: str, name: str) -> ViewT:
        with ctx.database.reading() as session:
            app = find_app(session, principal, app_name, Action.READ)
            profile = self.find(session, app, name)
            return self.view(profile, self.related(session, [profile.id])[profile.id])

    def update(
        self,
        ctx: Context,
        principal: Principal,
        app_name: str,
        name: str,
        *,
        ip_ranges: Sequence[str] | None = None,
    ) -> ViewT:
        """Replace the profile's IP ranges (live, wherever it is used). The name never
        changes: path rules and attachments refer to it."""
        ranges = check_ip_ranges(ip_ranges) if ip_ranges is not None else None
        with ctx.database.transaction() as session:
            app = find_app(session, principal, app_name, Action.MANAGE)
            profile = self.find(session, app, name, for_update=True)
            related = self.related(session, [profile.id])[profile.id]
            before = self.state_of(profile, related)
            if ranges is not None:
                profile.ip_ranges = ranges
                profile.updated_at = ctx.clock.now()
            self.record(
                session,
                ctx,
                principal,
                app,
                profile,
                "update",
                before=before,
                after=self.state_of(profile, related),
            )
            return self.view(profile, related)

    def delete(self, ctx: Context, principal: Principal, app_name: str, name: str) -> None:
        """Delete the profile and what it holds; refused (409) while it is in use."""
        with ctx.database.transaction() as session:
            app = find_app(session, principal, app_name, Action.MANAGE)
            profile = self.find(session, app, name, for_update=True)
            related = self.related(session, [profile.id])[profile.id]
            self.refuse_in_use(session, app, profile, related)
            self.record(
                session,
                ctx,
                principal,
                app,
                profile,
                "delete",
                before=self.state_of(profile, related),
            )
            session.delete(profile)

    def find(self, session: Session, app: App, name: str, *, for_update: bool = False) -> RowT:
        """The app's profile called ``name``; `NotFound` when there is none."""
        table = self.table
        query = select(table).where(table.app_id == app.id, table.name == name)
        profile = session.scalar(query.with_for_update() if for_update else query)
        if profile is None:
            raise NotFound(
                f"App {app.name!r} has no {self.noun} called {name!r}.", code=self.not_found_code
            )
        return profile

    def state_of(self, profile: RowT, related: RelatedT) -> dict[str, Any]:
        """The profile as the audit log records it."""
        return {
            "name": profile.name,
            "ip_ranges": list(profile.ip_ranges or ()),
            **self.state(related),
        }

    def record(
        self,
        session: Session,
        ctx: Context,
        principal: Principal,
        app: App,
        profile: RowT,
        action: str,
        *,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Audit ``action`` (under the kind's prefix) on the profile."""
        audit.record(
            session,
            ctx,
            principal,
            action=f"{self.audit_name}.{action}",
            object_type=self.audit_name,
            object_id=profile.id,
            app_id=app.id,
            before=before,
            after=after,
            detail=None if detail is None else dict(detail),
        )
