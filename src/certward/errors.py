"""The one exception tree of certward.

::

    CertwardError
    ├── MaterialError          certificate material could not be read at all
    │                          (carries the problems that say why)
    ├── ConfigurationError     settings or files on disk are wrong (start-up)
    ├── SecretError            a stored secret cannot be decrypted: unknown key id,
    │                          tampered ciphertext, or copied to another row
    └── Refusal                a use case refused a request; carries the HTTP status
        ├── Unauthorized       401: no token, or an unknown or revoked one
        ├── Forbidden          403: allowed to see, not to do (e.g. a free plan)
        ├── NotFound           404: absent, or outside the caller's scope
        ├── Conflict           409: clashes with what exists (pins, names, in use)
        ├── MalformedRequest   400: a body that cannot be read (broken multipart)
        ├── TooLarge           413: an upload over its size cap
        ├── UnsupportedMediaType  415: a body in a format the endpoint does not take
        ├── InvalidRequest     422: well-formed but wrong (judged material, bad values)
        ├── TooManyRequests    429: over a rate limit; ``retry_after`` seconds to wait
        ├── IssuerUnavailable  503: the certificate issuer (an ACME CA) did not issue
        └── ServiceBusy        503: every worker that reads uploads is busy;
                               ``retry_after`` seconds to wait

Rule failures of material that *could* be read are not exceptions: they are
`Problem` values collected by `certward.pki.checks.judge`, all of them, not the
first only. An exception from a dependency is translated once, at the boundary
where it happens, and chained with ``from exc``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from certward.pki.problems import Problem


class CertwardError(Exception):
    """Base of every error certward raises on purpose."""


class MaterialError(CertwardError):
    """Certificate material that cannot be read; ``problems`` says why, with stable codes."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        if not self.problems:
            raise ValueError("MaterialError needs at least one problem")
        super().__init__("; ".join(p.message for p in self.problems))

    @property
    def code(self) -> str:
        """The code of the first (most important) problem."""
        return self.problems[0].code.value


class ConfigurationError(CertwardError):
    """A setting, key file or data directory is missing or wrong."""


class SecretError(CertwardError):
    """A ciphertext that cannot be decrypted; the message never contains secret bytes."""


class Refusal(CertwardError):
    """A use case said no. ``code`` is stable; ``problems`` lists judged material's problems."""

    status = 400
    default_code = "refused"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        problems: Iterable[Problem] = (),
        detail: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.detail: dict[str, object] = detail or {}


class Unauthorized(Refusal):
    status = 401
    default_code = "unauthorized"


class Forbidden(Refusal):
    status = 403
    default_code = "forbidden"


class NotFound(Refusal):
    status = 404
    default_code = "not-found"


class Conflict(Refusal):
    status = 409
    default_code = "conflict"


class InvalidRequest(Refusal):
    status = 422
    default_code = "invalid"


class TooManyRequests(Refusal):
    """429: over a rate limit; answered with ``Retry-After: <retry_after>``."""

    status = 429
    default_code = "rate-limited"

    def __init__(
        self, message: str, *, retry_after: int, limit: str, code: str | None = None
    ) -> None:
        super().__init__(message, code=code, detail={"retry_after": retry_after, "limit": limit})
        self.retry_after = retry_after
        self.limit = limit


class IssuerUnavailable(Refusal):
    status = 503
    default_code = "issuer-unavailable"


class ServiceBusy(Refusal):
    """503: no material worker free in time; answered with ``Retry-After``."""

    status = 503
    default_code = "busy"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, detail={"retry_after": retry_after})
        self.retry_after = retry_after


class MalformedRequest(Refusal):
    """400: a request body that cannot be read at all (e.g. broken multipart)."""

    status = 400
    default_code = "malformed-request"


class TooLarge(Refusal):
    """413: an upload over its size cap."""

    status = 413
    default_code = "too-large"


class UnsupportedMediaType(Refusal):
    """415: a body in a format the endpoint does not take."""

    status = 415
    default_code = "unsupported-media-type"
