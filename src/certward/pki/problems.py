"""Problems: what is wrong with certificate material, with a stable code each."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    """An ``error`` refuses the material; a ``warning`` only informs."""

    ERROR = "error"
    WARNING = "warning"


class ProblemCode(StrEnum):
    """Stable codes other tools script against. Never rename one."""

    WRONG_PASSWORD = "wrong-password"  # noqa: S105 - a problem code, not a password
    NOT_PKCS12 = "not-pkcs12"
    NOT_CERTIFICATE_MATERIAL = "not-certificate-material"
    CORRUPTED = "corrupted"
    NO_PRIVATE_KEY = "no-private-key"
    NO_CERTIFICATE = "no-certificate"
    UNSUPPORTED_ALGORITHM = "unsupported-algorithm"
    TOO_LARGE = "too-large"
    TOO_MANY_CERTIFICATES = "too-many-certificates"
    TOO_EXPENSIVE = "too-expensive"
    WEAK_KEY = "weak-key"
    WEAK_SIGNATURE = "weak-signature"
    KEY_MISMATCH = "key-mismatch"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    EXPIRES_SOON = "expires-soon"
    NOT_A_CA = "not-a-ca"
    CA_AS_LEAF = "ca-as-leaf"
    CHAIN_INCOMPLETE = "chain-incomplete"
    CHAIN_UNORDERED = "chain-unordered"
    CHAIN_INVALID = "chain-invalid"
    UNRELATED_CERTIFICATE = "unrelated-certificate"
    MULTIPLE_ROOTS = "multiple-roots"
    NAME_NOT_COVERED = "name-not-covered"
    MISSING_CLIENT_AUTH = "missing-client-auth"
    MISSING_SERVER_AUTH = "missing-server-auth"
    MULTIPLE_PRIVATE_KEYS = "multiple-private-keys"
    ROOT_NOT_SERVED = "root-not-served"
    PATH_PASSED_OVER = "path-passed-over"
    PUBLIC_CA_CLIENT_AUTH = "public-ca-client-auth"


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One thing wrong with the material, in one human sentence.

    ``certificate`` names the certificate concerned (its subject), when there is one.
    """

    code: ProblemCode
    severity: Severity
    message: str
    certificate: str | None = None

    @classmethod
    def error(cls, code: ProblemCode, message: str, *, certificate: str | None = None) -> Problem:
        return cls(code=code, severity=Severity.ERROR, message=message, certificate=certificate)

    @classmethod
    def warning(cls, code: ProblemCode, message: str, *, certificate: str | None = None) -> Problem:
        return cls(code=code, severity=Severity.WARNING, message=message, certificate=certificate)

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_dict(self) -> dict[str, str]:
        out = {"code": self.code.value, "severity": self.severity.value, "message": self.message}
        if self.certificate is not None:
            out["certificate"] = self.certificate
        return out


def has_errors(problems: tuple[Problem, ...] | list[Problem]) -> bool:
    """True when any problem refuses the material."""
    return any(p.is_error for p in problems)
