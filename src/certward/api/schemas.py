"""Request bodies of the JSON endpoints: strict, unknown fields refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from certward.pki.convert import Pkcs12Profile
from certward.vocabulary import Plan, Role


class _Strict(BaseModel):
    # Strict scalars (no "5" for 5); enums still come from their JSON strings.
    model_config = ConfigDict(extra="forbid")


class AppCreate(_Strict):
    name: StrictStr = Field(min_length=1, max_length=63)
    plan: Plan


class AppUpdate(_Strict):
    plan: Plan | None = None


class EnvironmentCreate(_Strict):
    name: StrictStr = Field(min_length=1, max_length=63)
    upstream: StrictStr = Field(min_length=1, max_length=2048)


class EnvironmentUpdate(_Strict):
    upstream: StrictStr | None = Field(default=None, min_length=1, max_length=2048)
    pkcs12_profile: Pkcs12Profile | None = None


class ClientCertificateUpdate(_Strict):
    pins: list[StrictStr] | None = Field(default=None, max_length=100)
    call_name: StrictStr | None = Field(default=None, max_length=255)
    description: StrictStr | None = Field(default=None, max_length=1000)


class Rollback(_Strict):
    version: StrictInt = Field(ge=1)


class TokenCreate(_Strict):
    role: Role
    app: StrictStr | None = Field(default=None, max_length=63)
    environment: StrictStr | None = Field(default=None, max_length=63)
    description: StrictStr = Field(default="", max_length=1000)
