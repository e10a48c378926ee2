"""The data plane's view of the database: every live hostname as a `DataPlaneState`.

A load is a handful of queries whatever the number of hostnames: the hostnames and
their certificate rows (`certward.services.domains.live_hostnames`), the environments
with their apps, the certificate material of rows not seen before, and the applied
access rules. A certificate row never changes once written (a renewal or replacement
is another row), so decrypted material is cached by row id and a reload decrypts only
what is new. The state's ``version`` is a digest of everything served, so the gateway
and the nginx agent can tell cheaply whether anything changed.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from certward.dataplane.state import DataPlaneState, ServedCertificate, Site, state_version
from certward.model import App, Environment, ManagedCertificate, TlsCertificate
from certward.secrets import private_key_aad
from certward.services.access_profiles import applied_access
from certward.services.acme_issuing import challenge_response
from certward.services.context import Context
from certward.services.domains import LiveHostname, live_hostnames

_TABLES: dict[str, type[ManagedCertificate] | type[TlsCertificate]] = {
    ManagedCertificate.__tablename__: ManagedCertificate,
    TlsCertificate.__tablename__: TlsCertificate,
}


def pem_private_key(der: bytes) -> bytes:
    """PKCS#8 DER as PEM text, without parsing the key (it was validated when stored)."""
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN PRIVATE KEY-----\n" + b"\n".join(lines) + b"\n-----END PRIVATE KEY-----\n"


class DataPlaneFeed:
    """Builds the state the gateway and the nginx agent serve; safe to call from threads."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._material: dict[tuple[str, str], ServedCertificate] = {}
        self._lock = threading.Lock()

    def load(self) -> DataPlaneState:
        with self._lock, self.ctx.database.reading() as session:
            return self._load(session)

    def challenge(self, token: str) -> str | None:
        """The HTTP-01 key authorization published for ``token``, if any."""
        with self.ctx.database.reading() as session:
            return challenge_response(session, token, self.ctx.clock.now())

    def _load(self, session: Session) -> DataPlaneState:
        hosts = live_hostnames(session)
        environments = {
            environment_id: (app, name, upstream, hsts_max_age)
            for environment_id, app, name, upstream, hsts_max_age in session.execute(
                select(
                    Environment.id,
                    App.name,
                    Environment.name,
                    Environment.upstream,
                    App.hsts_max_age,
                ).join(App, App.id == Environment.app_id)
            )
        }
        self._fetch_material(session, hosts.values())
        access = applied_access(session)
        sites: dict[str, Site] = {}
        parts: list[str] = []
        for host in sorted(hosts):
            live = hosts[host]
            app, environment, upstream, hsts_max_age = environments[live.environment_id]
            certificate = (
                None
                if live.certificate_id is None
                else self._material.get((live.certificate_table, live.certificate_id))
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
            sites[host] = site
            parts += [
                host,
                live.kind,
                upstream,
                certificate.id if certificate else "-",
                _access_digest(site),
                str(hsts_max_age),
            ]
        self._forget_unused(hosts.values())
        return DataPlaneState(sites=sites, version=state_version(parts))

    def _fetch_material(self, session: Session, hosts: Iterable[LiveHostname]) -> None:
        wanted: dict[str, set[str]] = {}
        for live in hosts:
            if live.certificate_id is None:
                continue
            if (live.certificate_table, live.certificate_id) not in self._material:
                wanted.setdefault(live.certificate_table, set()).add(live.certificate_id)
        for table, ids in wanted.items():
            model = _TABLES[table]
            aad = private_key_aad(table)
            id_list = sorted(ids)
            for start in range(0, len(id_list), 500):
                rows = session.execute(
                    select(
                        model.id,
                        model.certificate_pem,
                        model.chain_pem,
                        model.private_key_ciphertext,
                    ).where(model.id.in_(id_list[start : start + 500]))
                )
                for row_id, certificate_pem, chain_pem, ciphertext in rows:
                    if not certificate_pem:
                        continue  # a CSR still waiting for its signed certificate
                    der = self.ctx.secrets.decrypt(ciphertext, aad=aad(row_id))
                    chain = certificate_pem.strip() + "\n" + (chain_pem or "").strip()
                    self._material[(table, row_id)] = ServedCertificate(
                        id=f"{table}:{row_id}:{hashlib.sha256(chain.encode()).hexdigest()[:16]}",
                        chain_pem=chain.strip().encode("ascii") + b"\n",
                        key_pem=pem_private_key(der),
                    )

    def _forget_unused(self, hosts: Iterable[LiveHostname]) -> None:
        used = {(h.certificate_table, h.certificate_id) for h in hosts if h.certificate_id}
        for key in [k for k in self._material if k not in used]:
            del self._material[key]


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
        )
        for name, profile in sorted(site.profiles.items())
    ]
    text = repr((site.path_rules, profiles, site.deny_ranges))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
