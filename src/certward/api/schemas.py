"""Request bodies of the JSON endpoints: strict, unknown fields refused."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, StrictInt, StrictStr

from certward.dataplane.state import RuleKind
from certward.ip_ranges import MAX_IP_RANGES
from certward.path_rule_checks import MAX_PATH_RULES
from certward.pki.convert import Pkcs12Profile
from certward.pki.csr import CsrKeyType
from certward.services.access_profiles import MAX_CLIENT_CAS
from certward.services.ip_deny_profiles import MAX_DENY_PROFILES
from certward.vocabulary import Plan, Role

MAX_VERSION = 2**31 - 1  # versions are a 32-bit INTEGER column


def storable_text(value: str) -> str:
    """Text a database can hold: no NUL (PostgreSQL refuses it), no lone surrogate."""
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the text is not valid Unicode (a lone surrogate)") from None
    return value


Text = Annotated[StrictStr, AfterValidator(storable_text)]


class _Strict(BaseModel):
    # Strict scalars (no "5" for 5); enums still come from their JSON strings.
    model_config = ConfigDict(extra="forbid")


class AppCreate(_Strict):
    name: Text = Field(min_length=1, max_length=63)
    plan: Plan
    hsts_max_age: StrictInt | None = None


class AppUpdate(_Strict):
    """Absent fields stay as they are; ``hsts_max_age: null`` turns HSTS off."""

    plan: Plan | None = None
    hsts_max_age: StrictInt | None = None


class EnvironmentCreate(_Strict):
    name: Text = Field(min_length=1, max_length=63)
    upstream: Text = Field(min_length=1, max_length=2048)


class EnvironmentUpdate(_Strict):
    upstream: Text | None = Field(default=None, min_length=1, max_length=2048)
    pkcs12_profile: Pkcs12Profile | None = None
    no_client_certificate: list[Text] | None = Field(default=None, max_length=100)


class ClientCertificateUpdate(_Strict):
    pins: list[Text] | None = Field(default=None, max_length=100)
    call_name: Text | None = Field(default=None, max_length=255)
    description: Text | None = Field(default=None, max_length=1000)


class Rollback(_Strict):
    version: StrictInt = Field(ge=1, le=MAX_VERSION)


class TokenCreate(_Strict):
    role: Role
    app: Text | None = Field(default=None, max_length=63)
    environment: Text | None = Field(default=None, max_length=63)
    description: Text = Field(default="", max_length=1000)


# -- incoming: TLS certificates and custom domains ------------------------------------------


class TlsCsrCreate(_Strict):
    common_name: Text = Field(min_length=1, max_length=253)
    sans: list[Text] = Field(default_factory=list, max_length=100)
    key_type: CsrKeyType = CsrKeyType.EC_P256
    description: Text = Field(default="", max_length=1000)


class TlsAcmeCreate(_Strict):
    sans: list[Text] = Field(min_length=1, max_length=100)
    description: Text = Field(default="", max_length=1000)


class TlsCertificateReplace(_Strict):
    replacement_id: Text = Field(min_length=1, max_length=36)


class CustomDomainCreate(_Strict):
    hostname: Text = Field(min_length=1, max_length=253)
    certificate_id: Text = Field(min_length=1, max_length=36)


# -- access restrictions: access profiles, IP deny profiles, path rules ---------------------

IpRange = Annotated[Text, Field(max_length=100)]


class RangeProfileCreate(_Strict):
    # A range profile of any kind; each kind's subclass names its schema.
    name: Text = Field(min_length=1, max_length=63)
    ip_ranges: list[IpRange] = Field(default_factory=list, max_length=MAX_IP_RANGES)


class RangeProfileUpdate(_Strict):
    ip_ranges: list[IpRange] | None = Field(default=None, max_length=MAX_IP_RANGES)


class AccessProfileCreate(RangeProfileCreate):
    pass


class AccessProfileUpdate(RangeProfileUpdate):
    pass


class ClientCaSelection(_Strict):
    selected: list[Annotated[Text, Field(max_length=200)]] = Field(max_length=MAX_CLIENT_CAS)


class IpDenyProfileCreate(RangeProfileCreate):
    pass


class IpDenyProfileUpdate(RangeProfileUpdate):
    pass


class EnvironmentIpDenies(_Strict):
    profiles: list[Annotated[Text, Field(min_length=1, max_length=63)]] = Field(
        max_length=MAX_DENY_PROFILES
    )


class PathRuleSpec(_Strict):
    """``{"rule": "allow-all"|"deny-all"|"inherit"}`` or ``{"rule": "profile", "profile"}``."""

    rule: RuleKind
    profile: Text | None = Field(default=None, min_length=1, max_length=63)


class PathRules(RootModel[dict[Text, PathRuleSpec]]):
    """Every path rule of an environment, by prefix (the service says what is wrong with a
    prefix; the count is capped here only against absurd bodies)."""

    root: dict[Text, PathRuleSpec] = Field(max_length=10 * MAX_PATH_RULES)
