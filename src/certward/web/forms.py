"""Reading the console's forms, and putting a refusal's problems next to the right fields.

A person fixing an upload needs to see *which* input is wrong: a wrong password belongs
under the password, a missing intermediate under the chain, a taken pin under the pins.
The services say what is wrong with stable codes (`Refusal.code`, each `Problem.code`);
`FieldErrors.from_refusal` sends each to its field through a per-form table, and
anything the table does not name to the top of the form.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from certward.errors import (
    InvalidRequest,
    MalformedRequest,
    MaterialError,
    Refusal,
    RefusalCode,
    TooLarge,
)
from certward.pki.limits import Limits
from certward.pki.pkcs12_structure import Pkcs12Encryption, looks_like_pfx, read_pkcs12_structure
from certward.pki.problems import ProblemCode
from certward.services.uploads import Upload
from certward.web.session import CSRF_FIELD

MAX_FORM_FIELDS = 600  # path-rule tables and client-CA trees post one field per row
MAX_FORM_FILES = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleForm:
    """A submitted form: text fields (every value, in order) and the files chosen."""

    fields: Mapping[str, list[str]]
    files: Mapping[str, Upload]

    def text(self, name: str) -> str:
        values = self.fields.get(name)
        return values[0] if values else ""

    def texts(self, name: str) -> list[str]:
        return list(self.fields.get(name, []))

    def file(self, name: str) -> Upload | None:
        return self.files.get(name)


async def read_form(request: Request, *, max_file_bytes: int) -> ConsoleForm:
    """Parse a urlencoded or multipart form with caps; an empty file input counts as none.

    A NUL character is refused in every text field: nothing certward stores may hold one.
    """
    try:
        form = await request.form(
            max_files=MAX_FORM_FILES,
            max_fields=MAX_FORM_FIELDS,
            max_part_size=max_file_bytes + 64 * 1024,
        )
    except MultiPartException as exc:
        raise MalformedRequest(f"The form cannot be read: {exc.message}") from exc
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise MalformedRequest("The form cannot be read.") from exc
    fields: dict[str, list[str]] = {}
    files: dict[str, Upload] = {}
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read(max_file_bytes + 1)
                if len(data) > max_file_bytes:
                    raise TooLarge(
                        f"The file chosen for {name!r} is larger than the allowed "
                        f"{max_file_bytes:,} bytes; certificate material is never that large."
                    )
                if data or value.filename:
                    files[name] = Upload(filename=value.filename or name, data=data)
            else:
                if "\x00" in value:
                    raise InvalidRequest(
                        f"The field {name!r} contains a NUL character.",
                        code=RefusalCode.INVALID_FIELD,
                    )
                fields.setdefault(name, []).append(value)
    finally:
        await form.close()
    return ConsoleForm(fields=fields, files=files)


@dataclass(slots=True, kw_only=True)
class FieldErrors:
    """Messages per form field, and those that belong to the form as a whole."""

    by_field: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.by_field or self.general)

    def add(self, name: str | None, message: str) -> None:
        target = self.general if name is None else self.by_field.setdefault(name, [])
        if message not in target:
            target.append(message)

    def of(self, name: str) -> list[str]:
        return self.by_field.get(name, [])

    @classmethod
    def from_refusal(
        cls, refusal: Refusal, fields: Mapping[str, str], *, default: str | None = None
    ) -> FieldErrors:
        """Each error problem (or the refusal itself) under the field its code names.

        ``fields`` maps codes to field names; unnamed codes go to ``default`` (None: the
        top of the form). Pin conflicts name their field ("pin" or "call name") in the
        refusal's detail.
        """
        errors = cls()
        conflicts = refusal.detail.get("conflicts")
        if refusal.code == RefusalCode.PIN_CONFLICT and isinstance(conflicts, list) and conflicts:
            for conflict in conflicts:
                kind = conflict.get("field") if isinstance(conflict, dict) else None
                errors.add("call_name" if kind == "call name" else "pins", refusal.message)
            return errors
        problems = [p for p in refusal.problems if p.is_error] or list(refusal.problems)
        if not problems:
            errors.add(fields.get(refusal.code, default), refusal.message)
            return errors
        for problem in problems:
            errors.add(fields.get(problem.code.value, default), problem.message)
        return errors


CLIENT_CERTIFICATE_FIELDS: Mapping[str, str] = {
    ProblemCode.WRONG_PASSWORD: "password",
    ProblemCode.KEY_MISMATCH: "key",
    ProblemCode.MULTIPLE_PRIVATE_KEYS: "key",
    ProblemCode.NO_PRIVATE_KEY: "key",
    ProblemCode.CHAIN_INCOMPLETE: "chain",
    ProblemCode.CHAIN_UNORDERED: "chain",
    ProblemCode.CHAIN_INVALID: "chain",
    ProblemCode.UNRELATED_CERTIFICATE: "chain",
    ProblemCode.MULTIPLE_ROOTS: "chain",
    RefusalCode.INVALID_PIN: "pins",
    RefusalCode.TOO_MANY_PINS: "pins",
    RefusalCode.INVALID_CALL_NAME: "call_name",
    RefusalCode.INVALID_DESCRIPTION: "description",
}
"""Client-certificate upload and edit: everything else is about the file itself."""

TLS_CERTIFICATE_FIELDS: Mapping[str, str] = {
    ProblemCode.WRONG_PASSWORD: "password",
    ProblemCode.KEY_MISMATCH: "private_key",
    ProblemCode.MULTIPLE_PRIVATE_KEYS: "private_key",
    ProblemCode.NO_PRIVATE_KEY: "private_key",
    RefusalCode.UNEXPECTED_PRIVATE_KEY: "certificate",
    ProblemCode.CHAIN_INCOMPLETE: "chain",
    ProblemCode.CHAIN_UNORDERED: "chain",
    ProblemCode.CHAIN_INVALID: "chain",
    ProblemCode.UNRELATED_CERTIFICATE: "chain",
    ProblemCode.MULTIPLE_ROOTS: "chain",
    RefusalCode.INVALID_DESCRIPTION: "description",
}

CSR_FIELDS: Mapping[str, str] = {
    RefusalCode.INVALID_HOSTNAME: "common_name",
    RefusalCode.TOO_MANY_NAMES: "sans",
    RefusalCode.INVALID_DESCRIPTION: "description",
}


ACME_FIELDS: Mapping[str, str] = {
    RefusalCode.INVALID_HOSTNAME: "sans",
    RefusalCode.RESERVED_HOSTNAME: "sans",
    RefusalCode.TOO_MANY_NAMES: "sans",
    RefusalCode.HOSTNAME_TAKEN: "sans",
    RefusalCode.ISSUER_UNAVAILABLE: "sans",
    RefusalCode.INVALID_DESCRIPTION: "description",
}
"""An ACME order: the CA's refusal is about the names; no ACME CA at all, about the form."""


def pkcs12_note(upload: Upload, *, limits: Limits) -> str | None:
    """What a PKCS12 upload's encryption is, said so a person can tell it from the password.

    The reference product fails on one of the two encryptions; certward reads both, so
    when an upload is refused the console says that the format is not the reason.
    Read without the password (`read_pkcs12_structure` walks only the outer structure).
    """
    if not looks_like_pfx(upload.data):
        return None
    try:
        structure = read_pkcs12_structure(upload.data, limits=limits)
    except MaterialError:  # the upload's own refusal says what is wrong
        return None
    algorithms = ", ".join(structure.algorithms) or "none"
    mac = f", {structure.mac.algorithm.upper()} MAC" if structure.mac else ""
    if structure.encryption is Pkcs12Encryption.LEGACY:
        return (
            f"This is a legacy PKCS12 container ({algorithms}{mac}), as OpenSSL 1.x and old "
            "Java write it. certward reads it, and gives each runtime the profile it reads."
        )
    if structure.encryption is Pkcs12Encryption.MIXED:
        return f"This PKCS12 container mixes legacy and modern encryption ({algorithms}{mac})."
    if structure.encryption is Pkcs12Encryption.MODERN:
        return f"This is a modern PKCS12 container ({algorithms}{mac})."
    return None


@dataclass(slots=True, kw_only=True)
class UploadState:
    """A form shown again after a refusal: its errors, what was typed, notes, open or not."""

    errors: FieldErrors
    values: Mapping[str, str]
    note: str | None = None
    offer_conversion: bool = False


def form_values(form: ConsoleForm, *, without: Iterable[str] = ()) -> dict[str, str]:
    """What was typed, to show again with the errors (never a password, never the CSRF token)."""
    skipped = {CSRF_FIELD, *without}
    return {name: values[0] for name, values in form.fields.items() if name not in skipped}
