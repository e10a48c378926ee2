"""The one exception tree of certward.

::

    CertwardError
    ├── MaterialError          certificate material could not be read at all
    │                          (carries the problems that say why)
    ├── ConfigurationError     settings or files on disk are wrong (start-up)
    ├── SecretError            a stored secret cannot be decrypted: unknown key id,
    │                          tampered ciphertext, or copied to another row
    ├── EgressRefused          a destination the egress policy does not let certward
    │                          reach (`certward.egress`)
    ├── AcmeError              the ACME CA did not issue; answered as IssuerUnavailable
    │                          (`certward.issuing.acme`)
    ├── BundleInstallError     a runtime bundle not downloaded, or not sound
    │                          (`certward.bundles.install`)
    ├── RuntimeBundleError     a runtime bundle that cannot be used: unreadable,
    │                          incomplete, or asked for a name it lacks (`certward.runtime`)
    ├── InternalSignal         raised and caught inside one part of certward, never
    │   │                      answered as it is
    │   ├── DerError           bytes that are not the ASN.1 expected (`certward.pki.der`)
    │   ├── HostnameError      not a DNS host name or IP address (`certward.pki.names`)
    │   ├── SafeNotOpened      an encrypted PKCS12 safe no candidate password opens
    │   ├── CannotOpen         a PBE scheme this process cannot decrypt
    │   ├── TargetRefused      a request target the gateway does not serve (400)
    │   ├── PrefixRefused      a path-rule prefix that cannot mean the same on both
    │   │                      data planes
    │   ├── RejectedRequest    a request llhttp accepted but the gateway does not (400)
    │   ├── UpstreamRefused    an upstream the egress policy keeps the gateway from
    │   ├── SignInRequired     a console page needs a signed-in visitor (a redirect)
    │   └── BodyTooLarge       a body over its cap, met while it streams in (413)
    ├── ApiClientError         a request to the certward API did not succeed
    │   │                      (`certward.api_client.failures`)
    │   ├── ServerUnreachable  nothing answered at the server
    │   ├── UnexpectedAnswer   a success answer that is not what the API sends
    │   └── ApiProblem         the API refused: an ``application/problem+json`` answer
    └── Refusal                a use case refused a request; carries the HTTP status
        │                      and a `RefusalCode`
        ├── Unauthorized       401: no token, or an unknown or revoked one
        ├── Forbidden          403: allowed to see, not to do (e.g. a free plan)
        │   └── CsrfRefused    403: a console form without its session's CSRF token
        │                      (`certward.web.session`)
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
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from certward.pki.problems import Problem


class RefusalCode(StrEnum):
    """Every stable ``code`` a refusal answers with, besides the material engine's.

    The API's problem responses, the console's error pages and the CLI's refusals
    carry these; scripts match on them, so a value is never renamed. Judged material
    is refused with its `certward.pki.problems.ProblemCode` instead.
    """

    # Generic codes: a refusal class's default, or an HTTP failure without a use case.
    REFUSED = "refused"  # a use case said no, without a more precise code
    UNAUTHORIZED = "unauthorized"  # no token, or an unknown or revoked one
    FORBIDDEN = "forbidden"  # the token may see this, not do it
    NOT_FOUND = "not-found"  # nothing there, or outside the caller's scope
    CONFLICT = "conflict"  # clashes with what exists
    INVALID = "invalid"  # well-formed but wrong, without a more precise code
    RATE_LIMITED = "rate-limited"  # over an upload rate limit
    ISSUER_UNAVAILABLE = "issuer-unavailable"  # the ACME CA cannot be reached or did not issue
    BUSY = "busy"  # no material worker free in time
    MALFORMED_REQUEST = "malformed-request"  # a body that cannot be read
    TOO_LARGE = "too-large"  # an upload or body over its size cap
    UNSUPPORTED_MEDIA_TYPE = "unsupported-media-type"  # a body in a format not taken here
    METHOD_NOT_ALLOWED = "method-not-allowed"  # the path exists, the HTTP method does not
    HTTP_ERROR = "http-error"  # any other HTTP failure (or an answer not from certward)
    INTERNAL_ERROR = "internal-error"  # certward failed unexpectedly
    CSRF_TOKEN_MISMATCH = "csrf-token-mismatch"  # noqa: S105 - a console form without its session's token
    # 403
    PLAN_REQUIRED = "plan-required"  # the feature needs the licensed plan
    # 404
    NO_APPLIED_VERSION = "no-applied-version"  # the environment has never been applied
    APP_NOT_FOUND = "app-not-found"  # no app of that name in scope
    ENVIRONMENT_NOT_FOUND = "environment-not-found"  # no environment of that name in the app
    CLIENT_CERTIFICATE_NOT_FOUND = "client-certificate-not-found"  # no such client certificate
    CERTIFICATE_AUTHORITY_NOT_FOUND = "certificate-authority-not-found"  # no such CA
    TLS_CERTIFICATE_NOT_FOUND = "tls-certificate-not-found"  # no such TLS certificate
    MANAGED_CERTIFICATE_NOT_FOUND = "managed-certificate-not-found"  # no such ACME certificate
    CUSTOM_DOMAIN_NOT_FOUND = "custom-domain-not-found"  # the app does not serve that host name
    VERSION_NOT_FOUND = "version-not-found"  # the environment has no such version
    TOKEN_NOT_FOUND = "token-not-found"  # noqa: S105 - no such token
    ACCESS_PROFILE_NOT_FOUND = "access-profile-not-found"  # no access profile of that name
    CLIENT_CA_NOT_FOUND = "client-ca-not-found"  # the access profile has no such client CA
    CRL_NOT_FOUND = "crl-not-found"  # the client CA has no certificate revocation list
    IP_DENY_PROFILE_NOT_FOUND = "ip-deny-profile-not-found"  # no IP deny profile of that name
    WEBHOOK_NOT_FOUND = "webhook-not-found"  # no such webhook
    NO_PLATFORM_CA = "no-platform-ca"  # the platform CA has no active intermediate
    # 409
    UPSTREAM_TAKEN = "upstream-taken"  # the backend host:port is another app's upstream
    APP_EXISTS = "app-exists"  # an app of that name exists
    ENVIRONMENT_EXISTS = "environment-exists"  # an environment of that name exists
    PIN_CONFLICT = "pin-conflict"  # a pin is held by another client certificate
    HOSTNAME_TAKEN = "hostname-taken"  # another app serves that host name
    CERTIFICATE_IN_USE = "certificate-in-use"  # a domain is served with this certificate
    NOT_PENDING = "not-pending"  # the TLS certificate already has its certificate
    ACME_NOT_CONFIGURED = "acme-not-configured"  # no ACME CA is configured on this platform
    ACCESS_PROFILE_EXISTS = "access-profile-exists"  # an access profile of that name exists
    ACCESS_PROFILE_IN_USE = "access-profile-in-use"  # a path rule names the access profile
    LAST_SELECTED_CLIENT_CA = "last-selected-client-ca"  # a profile would keep no client CA
    IP_DENY_PROFILE_EXISTS = "ip-deny-profile-exists"  # an IP deny profile of that name exists
    IP_DENY_PROFILE_IN_USE = "ip-deny-profile-in-use"  # an environment has the profile attached
    # 422
    APPLY_REFUSED = "apply-refused"  # the staged configuration fails validation
    INVALID_REQUEST = "invalid-request"  # JSON or a form that does not match the endpoint
    INVALID_FIELD = "invalid-field"  # one field of the request has a wrong type or value
    UNKNOWN_FIELD = "unknown-field"  # a field the endpoint does not take
    DUPLICATE_FIELD = "duplicate-field"  # a field given twice
    MISSING_FIELD = "missing-field"  # a required field is absent
    INVALID_NAME = "invalid-name"  # an app or environment name outside its syntax
    INVALID_UPSTREAM = "invalid-upstream"  # an upstream that is not an http(s) URL
    UPSTREAM_NOT_ALLOWED = "upstream-not-allowed"  # the egress policy refuses the upstream
    HOSTNAME_IS_UPSTREAM = "hostname-is-upstream"  # the upstream's host is served by the platform
    INVALID_HSTS_MAX_AGE = "invalid-hsts-max-age"  # an HSTS max-age out of range
    INVALID_URL = "invalid-url"  # a webhook URL that is not http(s)
    WEBHOOK_URL_NOT_ALLOWED = "webhook-url-not-allowed"  # the egress policy refuses the webhook
    INVALID_STATUS = "invalid-status"  # a status filter that does not apply to the listing
    INVALID_PLAN = "invalid-plan"  # neither the free nor the licensed plan
    INVALID_PIN = "invalid-pin"  # a pin outside its syntax
    TOO_MANY_PINS = "too-many-pins"  # over the pins a client certificate may have
    INVALID_CALL_NAME = "invalid-call-name"  # a call name outside its syntax
    INVALID_SCOPE = "invalid-scope"  # a token's app or environment does not fit its role
    INVALID_HOSTNAME = "invalid-hostname"  # a host name outside its syntax
    RESERVED_HOSTNAME = "reserved-hostname"  # a host name the platform keeps for itself
    CERTIFICATE_PENDING = "certificate-pending"  # the TLS certificate awaits its signature
    CERTIFICATE_EXPIRED = "certificate-expired"  # the TLS certificate has expired
    CERTIFICATE_NOT_YET_VALID = "certificate-not-yet-valid"  # the TLS certificate is not valid yet
    INVALID_REPLACEMENT = "invalid-replacement"  # a certificate named to replace itself
    UNEXPECTED_PRIVATE_KEY = "unexpected-private-key"  # a signed certificate sent with a key
    TOO_MANY_NAMES = "too-many-names"  # a CSR over its host names
    INVALID_DESCRIPTION = "invalid-description"  # a description over its length
    INVALID_IP_RANGE = "invalid-ip-range"  # an IP range that is not an address or CIDR
    TOO_MANY_IP_RANGES = "too-many-ip-ranges"  # over the IP ranges a profile may have
    UNKNOWN_CLIENT_CA = "unknown-client-ca"  # a client CA the app does not have
    TOO_MANY_CLIENT_CAS = "too-many-client-cas"  # over the client CAs a profile may select
    INVALID_CRL = "invalid-crl"  # not a certificate revocation list (PEM or DER)
    TOO_MANY_CRL_ENTRIES = "too-many-crl-entries"  # a CRL over the revoked entries allowed
    CRL_ISSUER_MISMATCH = "crl-issuer-mismatch"  # the CRL's issuer is not the client CA
    CRL_SIGNATURE_INVALID = "crl-signature-invalid"  # the client CA did not sign the CRL
    CRL_NOT_YET_VALID = "crl-not-yet-valid"  # the CRL's thisUpdate is in the future
    CRL_NO_NEXT_UPDATE = "crl-no-next-update"  # the CRL does not say when it is replaced
    CRL_EXPIRED = "crl-expired"  # the CRL's nextUpdate has passed
    UNKNOWN_IP_DENY_PROFILE = "unknown-ip-deny-profile"  # an IP deny profile the app lacks
    TOO_MANY_IP_DENY_PROFILES = "too-many-ip-deny-profiles"  # over an environment's profiles
    INVALID_PATH_PREFIX = "invalid-path-prefix"  # a path prefix outside its syntax
    INVALID_PATH_RULE = "invalid-path-rule"  # a path rule that cannot be read as one
    UNKNOWN_ACCESS_PROFILE = "unknown-access-profile"  # an access profile the app lacks
    TOO_MANY_PATH_RULES = "too-many-path-rules"  # over the path rules an environment may have
    VERSION_INCOMPLETE = "version-incomplete"  # the version names access profiles deleted since


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


class InternalSignal(CertwardError):
    """Raised and caught inside one part of certward; never answered as it is."""


class ConfigurationError(CertwardError):
    """A setting, key file or data directory is missing or wrong."""


class SecretError(CertwardError):
    """A ciphertext that cannot be decrypted; the message never contains secret bytes."""


class Refusal(CertwardError):
    """A use case said no. ``code`` is stable; ``problems`` lists judged material's problems."""

    status = 400
    default_code = RefusalCode.REFUSED

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
    default_code = RefusalCode.UNAUTHORIZED


class Forbidden(Refusal):
    status = 403
    default_code = RefusalCode.FORBIDDEN


class NotFound(Refusal):
    status = 404
    default_code = RefusalCode.NOT_FOUND


class Conflict(Refusal):
    status = 409
    default_code = RefusalCode.CONFLICT


class InvalidRequest(Refusal):
    status = 422
    default_code = RefusalCode.INVALID


class TooManyRequests(Refusal):
    """429: over a rate limit; answered with ``Retry-After: <retry_after>``."""

    status = 429
    default_code = RefusalCode.RATE_LIMITED

    def __init__(
        self, message: str, *, retry_after: int, limit: str, code: str | None = None
    ) -> None:
        super().__init__(message, code=code, detail={"retry_after": retry_after, "limit": limit})
        self.retry_after = retry_after
        self.limit = limit


class IssuerUnavailable(Refusal):
    status = 503
    default_code = RefusalCode.ISSUER_UNAVAILABLE


class ServiceBusy(Refusal):
    """503: no material worker free in time; answered with ``Retry-After``."""

    status = 503
    default_code = RefusalCode.BUSY

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, detail={"retry_after": retry_after})
        self.retry_after = retry_after


class MalformedRequest(Refusal):
    """400: a request body that cannot be read at all (e.g. broken multipart)."""

    status = 400
    default_code = RefusalCode.MALFORMED_REQUEST


class TooLarge(Refusal):
    """413: an upload over its size cap."""

    status = 413
    default_code = RefusalCode.TOO_LARGE


class UnsupportedMediaType(Refusal):
    """415: a body in a format the endpoint does not take."""

    status = 415
    default_code = RefusalCode.UNSUPPORTED_MEDIA_TYPE
