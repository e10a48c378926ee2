"""The outgoing configuration of an environment as one frozen, comparable value.

A snapshot is what a restart applies: the client certificates (by id and
fingerprint, with their pins, call names and descriptions), the certificate
authorities, the PKCS12 profile runtimes read, and the path rules the data plane
enforces for incoming requests. It holds no secret. Its canonical JSON has a SHA-256
digest that names an applied version; `diff` lists what a restart would change. Pure:
no database, no clock.

Path rules joined the snapshot after versions had been applied without them: their key
is left out of the canonical JSON while there are none, so every version applied
before keeps its digest (and a restart with nothing staged stays a no-op).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from certward.dataplane.state import RuleKind


class ChangeKind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    MODIFIED = "modified"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCertificateState:
    id: str
    subject: str
    sha256_fingerprint: str
    not_after: str
    pins: tuple[str, ...]
    call_name: str | None
    description: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject": self.subject,
            "sha256_fingerprint": self.sha256_fingerprint,
            "not_after": self.not_after,
            "pins": sorted(self.pins),
            "call_name": self.call_name,
            "description": self.description,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorityState:
    id: str
    certificates: tuple[str, ...]  # SHA-256 fingerprints, lowest CA first
    subjects: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "certificates": list(self.certificates),
            "subjects": list(self.subjects),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PathRuleState:
    """One path rule: ``profile`` names an access profile exactly when ``rule`` is PROFILE."""

    prefix: str
    rule: RuleKind
    profile: str | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"rule"}`` or ``{"rule", "profile"}``: the form the API takes and shows."""
        if self.profile is None:
            return {"rule": self.rule.value}
        return {"rule": self.rule.value, "profile": self.profile}

    @classmethod
    def from_json(cls, prefix: str, data: dict[str, Any]) -> PathRuleState:
        return cls(prefix=prefix, rule=RuleKind(data["rule"]), profile=data.get("profile"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One difference between the applied and the staged configuration."""

    object_type: str
    object_id: str
    change: ChangeKind
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "object_type": self.object_type,
            "object_id": self.object_id,
            "change": self.change.value,
            "before": self.before,
            "after": self.after,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvironmentSnapshot:
    """Everything a restart applies to one environment's outgoing connections."""

    pkcs12_profile: str
    client_certificates: tuple[ClientCertificateState, ...]
    authorities: tuple[AuthorityState, ...]
    no_client_certificate: tuple[str, ...] = ()
    path_rules: tuple[PathRuleState, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "client_certificates", tuple(sorted(self.client_certificates, key=_by_id))
        )
        object.__setattr__(self, "authorities", tuple(sorted(self.authorities, key=_by_id)))
        object.__setattr__(
            self, "no_client_certificate", tuple(sorted(set(self.no_client_certificate)))
        )
        prefixes = [r.prefix for r in self.path_rules]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError("a snapshot has one path rule per prefix")
        object.__setattr__(
            self, "path_rules", tuple(sorted(self.path_rules, key=lambda r: r.prefix))
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "pkcs12_profile": self.pkcs12_profile,
            "client_certificates": [c.to_json() for c in self.client_certificates],
            "authorities": [a.to_json() for a in self.authorities],
            "no_client_certificate": list(self.no_client_certificate),
        }
        if self.path_rules:  # absent while empty: older versions keep their digests
            data["path_rules"] = path_rules_json(self.path_rules)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EnvironmentSnapshot:
        return cls(
            pkcs12_profile=str(data["pkcs12_profile"]),
            client_certificates=tuple(
                ClientCertificateState(
                    id=c["id"],
                    subject=c["subject"],
                    sha256_fingerprint=c["sha256_fingerprint"],
                    not_after=c["not_after"],
                    pins=tuple(c["pins"]),
                    call_name=c["call_name"],
                    description=c["description"],
                )
                for c in data["client_certificates"]
            ),
            authorities=tuple(
                AuthorityState(
                    id=a["id"], certificates=tuple(a["certificates"]), subjects=tuple(a["subjects"])
                )
                for a in data["authorities"]
            ),
            no_client_certificate=tuple(data.get("no_client_certificate", ())),
            path_rules=path_rules_from_json(data.get("path_rules") or {}),
        )

    def canonical_json(self) -> bytes:
        return json.dumps(
            self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON: equal snapshots, equal digests."""
        return hashlib.sha256(self.canonical_json()).hexdigest()


def diff(applied: EnvironmentSnapshot | None, staged: EnvironmentSnapshot) -> list[Change]:
    """What applying ``staged`` over ``applied`` (None: nothing applied yet) changes."""
    before = applied or EnvironmentSnapshot(
        pkcs12_profile=staged.pkcs12_profile, client_certificates=(), authorities=()
    )
    changes: list[Change] = []
    if applied is not None and applied.no_client_certificate != staged.no_client_certificate:
        changes.append(
            Change(
                object_type="environment",
                object_id="no_client_certificate",
                change=ChangeKind.MODIFIED,
                before={"no_client_certificate": list(applied.no_client_certificate)},
                after={"no_client_certificate": list(staged.no_client_certificate)},
            )
        )
    if applied is not None and applied.pkcs12_profile != staged.pkcs12_profile:
        changes.append(
            Change(
                object_type="environment",
                object_id="pkcs12_profile",
                change=ChangeKind.MODIFIED,
                before={"pkcs12_profile": applied.pkcs12_profile},
                after={"pkcs12_profile": staged.pkcs12_profile},
            )
        )
    changes += _diff_items(
        "client_certificate",
        {c.id: c.to_json() for c in before.client_certificates},
        {c.id: c.to_json() for c in staged.client_certificates},
    )
    changes += _diff_items(
        "certificate_authority",
        {a.id: a.to_json() for a in before.authorities},
        {a.id: a.to_json() for a in staged.authorities},
    )
    changes += _diff_items(
        "path_rule",
        path_rules_json(before.path_rules),
        path_rules_json(staged.path_rules),
    )
    return changes


def path_rules_json(rules: tuple[PathRuleState, ...]) -> dict[str, dict[str, Any]]:
    """Path rules as the API writes them: ``{prefix: {"rule", "profile"?}}``."""
    return {r.prefix: r.to_json() for r in rules}


def path_rules_from_json(data: dict[str, Any]) -> tuple[PathRuleState, ...]:
    return tuple(PathRuleState.from_json(prefix, rule) for prefix, rule in data.items())


def _diff_items(
    object_type: str, before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> list[Change]:
    changes: list[Change] = []
    for object_id in sorted(before.keys() | after.keys()):
        old, new = before.get(object_id), after.get(object_id)
        if old == new:
            continue
        kind = (
            ChangeKind.ADDED
            if old is None
            else ChangeKind.REMOVED
            if new is None
            else ChangeKind.MODIFIED
        )
        changes.append(
            Change(object_type=object_type, object_id=object_id, change=kind, before=old, after=new)
        )
    return changes


def _by_id(item: ClientCertificateState | AuthorityState) -> str:
    return item.id
