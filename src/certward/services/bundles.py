"""Handing an environment's runtime bundle to its runtime (or a member, or an admin)."""

from __future__ import annotations

from dataclasses import dataclass, field

from certward.authorization import Action, Principal
from certward.bundles.files import build_bundle
from certward.errors import NotFound, RefusalCode
from certward.model import EnvironmentVersion
from certward.services import audit
from certward.services.context import Context
from certward.services.lookups import find_environment
from certward.services.staging import bundle_spec


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleDownload:
    app: str
    environment: str
    version: int
    tarball: bytes = field(repr=False)

    @property
    def filename(self) -> str:
        return f"{self.app}-{self.environment}-v{self.version}.tar.gz"


def download(
    ctx: Context,
    principal: Principal,
    app_name: str,
    env_name: str,
    *,
    version: int | None = None,
) -> BundleDownload:
    """The applied version's bundle (or ``version``'s) as a gzipped tar; audited."""
    with ctx.database.transaction() as session:
        app, environment = find_environment(
            session, principal, app_name, env_name, Action.DOWNLOAD_BUNDLE
        )
        wanted = version if version is not None else environment.applied_version
        if wanted is None:
            raise NotFound(
                f"Environment {env_name!r} has no applied version yet: restart it first.",
                code=RefusalCode.NO_APPLIED_VERSION,
            )
        row = session.get(EnvironmentVersion, (environment.id, wanted))
        if row is None:
            raise NotFound(
                f"Environment {env_name!r} has no version {wanted}.",
                code=RefusalCode.VERSION_NOT_FOUND,
            )
        store = ctx.bundles
        if not store.is_complete(app.name, environment.name, row.version):
            spec = bundle_spec(session, ctx, app, environment, row)
            store.write(
                app.name,
                environment.name,
                row.version,
                build_bundle(spec, randomness=ctx.randomness),
            )
        tarball = store.tarball(app.name, environment.name, row.version)
        audit.record(
            session,
            ctx,
            principal,
            action="runtime_bundle.download",
            object_type="environment",
            object_id=environment.id,
            app_id=app.id,
            detail={"version": row.version},
        )
    return BundleDownload(app=app_name, environment=env_name, version=row.version, tarball=tarball)
