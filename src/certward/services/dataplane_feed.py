"""The data plane's view of the database: every live hostname as a `DataPlaneState`.

A load is a handful of queries whatever the number of hostnames: the hostnames and
their certificate rows (`certward.services.domains.live_hostnames`), the environments
with their apps, the certificate material of rows not seen before, and the applied
access rules. A certificate row never changes once written (a renewal or replacement
is another row), so decrypted material is cached by row id and a reload decrypts only
what is new. The state's ``version`` is a digest of everything served, so the gateway
and the nginx agent can tell cheaply whether anything changed.

A managed certificate of the platform CA is served with its stored chain and, during
a new root's overlap, the root's cross-certificate above it
(`certward.services.platform_ca.served_cross_certificates`, one small query per read);
cached material built with a cross-certificate that is no longer served (or without
one that now is) is read again.

Between full loads a node follows the change feed: the database's triggers (migration
0007) advance ``data_plane_sequence`` and list the changed hostnames in
``data_plane_changes`` in the transaction of every served change. `poll` reads the
sequence (one row); `changes_since` reads the hostnames changed after a sequence and
builds only their sites, with the same queries as a full load restricted to them.
The sequence is read before the rows, so what a node builds is at least as new as the
sequence it records; a change committed meanwhile is read again at the next poll.
The version is a sum of per-site digests (`certward.dataplane.state.SiteDigests`), so
a state with changes applied has the version a full load of the same rows has.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import delete, null, select, update
from sqlalchemy.orm import Session

from certward.dataplane.state import (
    DataPlaneState,
    ServedCertificate,
    Site,
    SiteDigests,
    site_digest,
)
from certward.model import (
    App,
    DataPlaneChange,
    DataPlaneSequence,
    Environment,
    ManagedCertificate,
    TlsCertificate,
)
from certward.secrets import private_key_aad
from certward.services.acme_issuing import challenge_response
from certward.services.context import Context
from certward.services.dataplane_access import applied_access
from certward.services.domains import LiveHostname, live_hostnames
from certward.services.platform_ca import served_cross_certificates

_TABLES: dict[str, type[ManagedCertificate] | type[TlsCertificate]] = {
    ManagedCertificate.__tablename__: ManagedCertificate,
    TlsCertificate.__tablename__: TlsCertificate,
}


def pem_private_key(der: bytes) -> bytes:
    """PKCS#8 DER as PEM text, without parsing the key (it was validated when stored)."""
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN PRIVATE KEY-----\n" + b"\n".join(lines) + b"\n-----END PRIVATE KEY-----\n"


_CURRENT = select(DataPlaneSequence.value).where(DataPlaneSequence.id == 1)
MAX_CHANGED_SITES = 10_000  # more changed hostnames than this: a full load is cheaper


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedChanges:
    """What changed after a sequence: fresh sites (with their digests) and the changed
    hostnames no longer served; current to ``sequence``."""

    sequence: int
    changed: Mapping[str, tuple[Site, int]]
    removed: frozenset[str]


class DataPlaneFeed:
    """Builds the state the gateway and the nginx agent serve; safe to call from threads."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._material: dict[tuple[str, str], ServedCertificate] = {}
        # Cached rows served with a cross-certificate (by issuing CA), and those served
        # when they were read: a new root's intermediates issue nothing before its overlap
        # begins, so only an overlap's end makes cached material stale.
        self._bridged: dict[tuple[str, str], str] = {}
        self._bridges: dict[str, str] = {}
        self._lock = threading.Lock()

    def load(self) -> DataPlaneState:
        """A full snapshot: every served site, current to the sequence it carries."""
        with self._lock, self.ctx.database.reading() as session:
            sequence, _ = _sequence(session)
            sites = self._sites(session, live_hostnames(session), cache=True)
            digests = SiteDigests.of({host: digest for host, (_, digest) in sites.items()})
            return DataPlaneState(
                sites={host: site for host, (site, _) in sites.items()},
                version=digests.version,
                sequence=sequence,
                digests=digests,
            )

    def poll(self) -> int:
        """The current change sequence (one row read, in autocommit mode: no
        transaction to begin and roll back around it)."""
        engine = self.ctx.database.engine
        if engine.dialect.name != "postgresql":
            with self.ctx.database.reading() as session:
                return _sequence(session)[0]
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            return int(connection.execute(_CURRENT).scalar_one())

    def changes_since(self, sequence: int) -> FeedChanges | None:
        """The sites changed after ``sequence``; None when the log no longer reaches
        back that far (or too much changed): load a full snapshot instead."""
        with self._lock, self.ctx.database.reading() as session:
            current, trimmed = _sequence(session)
            if sequence < trimmed or sequence > current:
                return None
            if sequence == current:
                return FeedChanges(sequence=current, changed={}, removed=frozenset())
            hostnames = set(
                session.scalars(
                    select(DataPlaneChange.hostname)
                    .where(DataPlaneChange.sequence > sequence)
                    .where(DataPlaneChange.sequence <= current)
                    .distinct()
                    .limit(MAX_CHANGED_SITES + 1)
                )
            )
            if len(hostnames) > MAX_CHANGED_SITES:
                return None
            changed = self._sites(session, live_hostnames(session, hostnames), cache=False)
            return FeedChanges(
                sequence=current, changed=changed, removed=frozenset(hostnames - set(changed))
            )

    def challenge(self, token: str) -> str | None:
        """The HTTP-01 key authorization published for ``token``, if any."""
        with self.ctx.database.reading() as session:
            return challenge_response(session, token, self.ctx.clock.now())

    def _sites(
        self, session: Session, hosts: Mapping[str, LiveHostname], *, cache: bool
    ) -> dict[str, tuple[Site, int]]:
        """The sites of ``hosts`` with their digests. ``cache``: keep the material read
        for the next call and forget what no host uses (a full load); otherwise read
        material not cached without keeping it (a few changed sites)."""
        environment_ids = None if cache else {h.environment_id for h in hosts.values()}
        environments = _environments(session, environment_ids)
        material = self._fetch_material(session, hosts.values(), keep=cache)
        access = applied_access(session, environment_ids)
        sites: dict[str, tuple[Site, int]] = {}
        for host in sorted(hosts):
            live = hosts[host]
            app, environment, upstream, hsts_max_age = environments[live.environment_id]
            certificate = (
                None
                if live.certificate_id is None
                else material.get((live.certificate_table, live.certificate_id))
            )
            rules = access.get(live.environment_id)
            site = Site(
                hostname=host,
                kind=live.kind,
                app=app,
                environment=environment,
                environment_id=live.environment_id,
                upstream=upstream,
                certificate=certificate,
                path_rules=rules.path_rules if rules else (),
                profiles=rules.profiles if rules else {},
                deny_ranges=rules.deny_ranges if rules else (),
                hsts_max_age=hsts_max_age,
            )
            digest = site_digest(
                (
                    host,
                    live.kind,
                    app,
                    environment,
                    upstream,
                    certificate.id if certificate else "-",
                    _access_digest(site),
                    str(hsts_max_age),
                )
            )
            sites[host] = (site, digest)
        if cache:
            self._forget_unused(hosts.values())
        return sites

    def _fetch_material(
        self, session: Session, hosts: Iterable[LiveHostname], *, keep: bool
    ) -> Mapping[tuple[str, str], ServedCertificate]:
        """The material of ``hosts``' certificates: cached rows, and the others read and
        decrypted (kept in the cache when ``keep``)."""
        bridges = served_cross_certificates(session)
        if bridges != self._bridges:
            self._forget_bridged(bridges)
        found: dict[tuple[str, str], ServedCertificate] = self._material if keep else {}
        wanted: dict[str, set[str]] = {}
        for live in hosts:
            if live.certificate_id is None:
                continue
            key = (live.certificate_table, live.certificate_id)
            if key in self._material:
                found[key] = self._material[key]
            else:
                wanted.setdefault(live.certificate_table, set()).add(live.certificate_id)
        for table, ids in wanted.items():
            model = _TABLES[table]
            aad = private_key_aad(table)
            id_list = sorted(ids)
            issuing_ca = ManagedCertificate.issuing_ca_id if model is ManagedCertificate else null()
            for start in range(0, len(id_list), 500):
                rows = session.execute(
                    select(
                        model.id,
                        model.certificate_pem,
                        model.chain_pem,
                        model.private_key_ciphertext,
                        issuing_ca,
                    ).where(model.id.in_(id_list[start : start + 500]))
                )
                for row_id, certificate_pem, chain_pem, ciphertext, ca_id in rows:
                    if not certificate_pem:
                        continue  # a CSR still waiting for its signed certificate
                    der = self.ctx.secrets.decrypt(ciphertext, aad=aad(row_id))
                    chain = certificate_pem.strip() + "\n" + (chain_pem or "").strip()
                    if ca_id in bridges:
                        chain += "\n" + bridges[ca_id].strip()
                        if keep:
                            self._bridged[(table, row_id)] = ca_id
                    found[(table, row_id)] = ServedCertificate(
                        id=f"{table}:{row_id}:{hashlib.sha256(chain.encode()).hexdigest()[:16]}",
                        chain_pem=chain.strip().encode("ascii") + b"\n",
                        key_pem=pem_private_key(der),
                    )
        return found

    def _forget_unused(self, hosts: Iterable[LiveHostname]) -> None:
        used = {(h.certificate_table, h.certificate_id) for h in hosts if h.certificate_id}
        for key in [k for k in self._material if k not in used]:
            del self._material[key]
            self._bridged.pop(key, None)

    def _forget_bridged(self, bridges: Mapping[str, str]) -> None:
        """Forget the cached material whose cross-certificate changed (a root's overlap
        began or ended): it is read again with ``bridges``, the ones served now."""
        changed = {
            ca_id
            for ca_id in bridges.keys() | self._bridges.keys()
            if bridges.get(ca_id) != self._bridges.get(ca_id)
        }
        for key in [k for k, ca_id in self._bridged.items() if ca_id in changed]:
            self._material.pop(key, None)
            del self._bridged[key]
        self._bridges = dict(bridges)


def trim_changes(ctx: Context, kept: int) -> int:
    """Delete the changes of all but the newest ``kept`` sequences (the
    ``CERTWARD_DATA_PLANE_CHANGES_KEPT`` setting); how many rows went. A node behind
    what is left loads a full snapshot."""
    with ctx.database.transaction() as session:
        current, trimmed = _sequence(session)
        through = current - kept
        if through <= trimmed:
            return 0
        gone = session.execute(delete(DataPlaneChange).where(DataPlaneChange.sequence <= through))
        session.execute(
            update(DataPlaneSequence).where(DataPlaneSequence.id == 1).values(trimmed=through)
        )
        return int(getattr(gone, "rowcount", 0) or 0)


def _sequence(session: Session) -> tuple[int, int]:
    """The current change sequence and the newest one trimmed from the log."""
    row = session.execute(
        select(DataPlaneSequence.value, DataPlaneSequence.trimmed).where(DataPlaneSequence.id == 1)
    ).one()
    return int(row[0]), int(row[1])


def _environments(
    session: Session, ids: Collection[str] | None
) -> dict[str, tuple[str, str, str, int | None]]:
    """App name, environment name, upstream and the app's HSTS max-age by environment
    id (of ``ids``)."""
    query = select(
        Environment.id, App.name, Environment.name, Environment.upstream, App.hsts_max_age
    ).join(App, App.id == Environment.app_id)
    found: dict[str, tuple[str, str, str, int | None]] = {}
    if ids is None:
        chunks: list[list[str] | None] = [None]
    else:
        ordered = sorted(ids)
        chunks = [ordered[start : start + 500] for start in range(0, len(ordered), 500)]
    for chunk in chunks:
        chosen = query if chunk is None else query.where(Environment.id.in_(chunk))
        for environment_id, app, name, upstream, hsts_max_age in session.execute(chosen):
            found[environment_id] = (app, name, upstream, hsts_max_age)
    return found


def _access_digest(site: Site) -> str:
    """A digest of a site's access rules (frozen values with a stable repr)."""
    if not (site.path_rules or site.profiles or site.deny_ranges):
        return "-"
    profiles = [
        (
            name,
            profile.ip_ranges,
            [ca.sha256_fingerprint for ca in profile.client_cas],
            sorted(profile.accepted_issuers),  # a frozenset's order differs between processes
            hashlib.sha256(profile.trust_pem).hexdigest(),
            [crl.id for crl in profile.crls],
        )
        for name, profile in sorted(site.profiles.items())
    ]
    text = repr((site.path_rules, profiles, site.deny_ranges))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
