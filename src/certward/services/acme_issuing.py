"""Certificates from an ACME CA, when ``CERTWARD_ACME_DIRECTORY`` is set: the account, the
process's issuer, and HTTP-01 challenges published in the database.

**Account.** The ACME account key is generated once and kept in
``<data dir>/acme-account.key`` (mode 0600, written atomically) as an envelope sealed by
the secret store, so the account survives restarts. A file that no longer decrypts
(another master key, an edited file) is an error that says so: certward never silently
registers a new account in its place. A file sealed with a retired master key is
resealed with the active one when read (after ``certward keys rotate``).

**Challenges.** The ACME CA validates a name by fetching
``http://<name>/.well-known/acme-challenge/<token>``, and whatever answers port 80 for
that name is the data plane (the embedded gateway, or nginx proxying that location to
certward's API), not the process that placed the order. So `DatabaseChallengeResponder`
publishes each key authorization as an ``acme_challenges`` row, and withdraws it, each
in its own short transaction: the order itself runs outside any transaction (it can
take a minute), and every data-plane process, whichever replica, answers with
`challenge_response`. A row expires after `CHALLENGE_LIFETIME`: what an order that
died left behind is never answered again, and the worker's pass deletes it
(`sweep_challenges`).

**Issuer.** One `AcmeIssuer` per database and directory serves the whole process (the
account is looked up once): every order, the API's and the renewal worker's, goes
through `order_certificate`. `close_acme` forgets them (for tests). With
``CERTWARD_ACME_PROFILE`` every order asks for that profile; `check_acme_profile`
refuses to start when the CA's directory does not list it.

**Renewal information.** `renewal_plan` says when to act on an ACME certificate: when
the CA offers renewal information (RFC 9773), a moment drawn from its suggested window
(`certward.issuing.renewal.renewal_moment`) and when to ask again, whichever comes
first is the row's ``renew_after``; otherwise, or when the CA cannot answer, the
2/3-of-lifetime rule. When a row comes due, `renewal_plan` is asked again: a window
still ahead only moves ``renew_after`` (no order), one that has come orders the
renewal, naming the certificate it replaces.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from certward.errors import ConfigurationError, SecretError
from certward.issuing.acme import (
    DEFAULT_TIMEOUT,
    AcmeError,
    AcmeIssuer,
    RenewalInfo,
    is_challenge_token,
)
from certward.issuing.ca import generate_key
from certward.issuing.renewal import renew_after
from certward.model import AcmeChallenge
from certward.pki.convert import private_key_der
from certward.secrets import SecretBox, associated_data
from certward.services.context import Context

ACCOUNT_KEY_FILE = "acme-account.key"
ACCOUNT_KEY_AAD = associated_data("acme", "account", "private_key")
MAX_ACCOUNT_KEY_FILE_BYTES = 16 * 1024
# Longer than an order may take (its polling timeout plus the requests around it).
CHALLENGE_LIFETIME = DEFAULT_TIMEOUT + timedelta(minutes=5)
MAX_KEY_AUTHORIZATION_LENGTH = 512  # the column; a real one is token + "." + 43 characters

_lock = threading.Lock()
_issuers: dict[tuple[int, str, str, str | None, str | None], AcmeIssuer] = {}
log = logging.getLogger("certward.acme")


@dataclass(frozen=True, slots=True, kw_only=True)
class AcmeOrder:
    """A certificate the ACME CA issued, the chain it sent above it, and the key."""

    certificate: x509.Certificate
    chain_pem: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewalPlan:
    """When to renew an ACME certificate, and when to ask its CA again (None without
    renewal information)."""

    renew_at: datetime
    ask_again_at: datetime | None

    @property
    def next_at(self) -> datetime:
        """The row's ``renew_after``: renewal, or the next question, whichever is first."""
        if self.ask_again_at is None:
            return self.renew_at
        return min(self.renew_at, self.ask_again_at)


def acme_enabled(ctx: Context) -> bool:
    """Whether certificates come from an ACME CA."""
    return ctx.settings.acme_directory is not None


def check_acme_profile(ctx: Context) -> None:
    """At start: `ConfigurationError` when ``CERTWARD_ACME_PROFILE`` names a profile the
    CA's directory does not list. A CA that cannot be reached is only logged (every
    order checks again and fails with the same sentence)."""
    profile = ctx.settings.acme_profile
    if profile is None or not acme_enabled(ctx):
        return
    try:
        offered = acme_issuer(ctx).offered_profiles()
    except AcmeError as exc:
        log.warning("the ACME profile %r cannot be checked now: %s", profile, exc)
        return
    if profile not in offered:
        listed = ", ".join(sorted(offered)) or "none"
        raise ConfigurationError(
            f"CERTWARD_ACME_PROFILE is {profile!r}, but the ACME CA at "
            f"{ctx.settings.acme_directory} does not offer it; its directory lists: {listed}."
        )


def order_certificate(
    ctx: Context, hostnames: Sequence[str], *, replacing: x509.Certificate | None = None
) -> AcmeOrder:
    """A fresh ECDSA P-256 key and a certificate for ``hostnames`` from the ACME CA;
    ``replacing`` is the certificate it renews (named in the order, RFC 9773).

    Holds no transaction while it talks to the CA (challenges are published in their
    own). `AcmeError`, saying why, when ACME is not configured or the CA does not issue.
    """
    key = generate_key()
    certificate_pem, chain_pem = acme_issuer(ctx).issue(hostnames, key, replaces=replacing)
    return AcmeOrder(
        certificate=x509.load_pem_x509_certificate(certificate_pem.encode("ascii")),
        chain_pem=chain_pem,
        private_key=key,
    )


def renewal_plan(
    ctx: Context, certificate: x509.Certificate, *, earliest: datetime | None = None
) -> RenewalPlan:
    """When to renew ``certificate`` (never before ``earliest``), from the CA's renewal
    information when it offers some, and when to ask it again (see the module). Never
    raises for the CA: one that cannot answer leaves the 2/3-of-lifetime rule."""
    now = ctx.clock.now()
    try:
        info: RenewalInfo | None = acme_issuer(ctx).renewal_info(certificate, now)
    except AcmeError as exc:
        log.warning("renewal information unavailable, renewing by the lifetime rule: %s", exc)
        info = None
    renew_at = renew_after(
        certificate.not_valid_before_utc,
        certificate.not_valid_after_utc,
        rng=ctx.randomness,
        earliest=earliest,
        window=None if info is None else info.window,
        now=now,
    )
    ask_again_at = None if info is None else info.ask_again_at
    if ask_again_at is not None and earliest is not None:
        ask_again_at = max(ask_again_at, earliest)
    return RenewalPlan(renew_at=renew_at, ask_again_at=ask_again_at)


def acme_issuer(ctx: Context) -> AcmeIssuer:
    """The process-wide issuer for the configured ACME directory; `AcmeError` when ACME
    is not configured or the account key cannot be read."""
    settings = ctx.settings
    directory = settings.acme_directory
    if directory is None:
        raise AcmeError("No ACME CA is configured (CERTWARD_ACME_DIRECTORY is not set).")
    bundle = None if settings.acme_ca_bundle is None else str(settings.acme_ca_bundle)
    # The issuer keeps the context (through its responder) alive, so the id of its
    # database cannot be reused by another while it is cached.
    cache_key = (
        id(ctx.database),
        str(settings.data_dir.absolute()),
        directory,
        bundle,
        settings.acme_profile,
    )
    with _lock:
        issuer = _issuers.get(cache_key)
        if issuer is None:
            try:
                account_key = load_or_create_account_key(settings.data_dir, ctx.secrets)
            except (ConfigurationError, SecretError) as exc:
                raise AcmeError(str(exc)) from exc
            issuer = AcmeIssuer(
                directory_url=directory,
                account_key=account_key,
                responder=DatabaseChallengeResponder(ctx),
                ca_bundle=settings.acme_ca_bundle,
                profile=settings.acme_profile,
            )
            _issuers[cache_key] = issuer
        return issuer


def close_acme() -> None:
    """Forget every issuer of this process (the next order looks its account up again)."""
    with _lock:
        _issuers.clear()


# -- HTTP-01 challenges ---------------------------------------------------------------------


class DatabaseChallengeResponder:
    """Publishes HTTP-01 key authorizations as ``acme_challenges`` rows for the data plane.

    Each `publish` and `withdraw` is one short transaction of its own, committed before
    the ACME CA is told to validate, so any process reading the database answers it.
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __repr__(self) -> str:
        return "DatabaseChallengeResponder()"

    def publish(self, token: str, key_authorization: str) -> None:
        """Answer ``token`` with ``key_authorization`` for `CHALLENGE_LIFETIME` from now."""
        if not is_challenge_token(token):
            raise ValueError("an ACME challenge token is 1-255 base64url characters")
        if (
            not key_authorization.isascii()
            or not key_authorization.isprintable()
            or not 0 < len(key_authorization) <= MAX_KEY_AUTHORIZATION_LENGTH
        ):
            raise ValueError("a key authorization is short printable ASCII")
        now = self._ctx.clock.now()
        with self._ctx.database.transaction() as session:
            session.merge(
                AcmeChallenge(
                    token=token,
                    key_authorization=key_authorization,
                    created_at=now,
                    expires_at=now + CHALLENGE_LIFETIME,
                )
            )

    def withdraw(self, token: str) -> None:
        """Stop answering ``token`` (nothing happens when it is not published)."""
        with self._ctx.database.transaction() as session:
            session.execute(delete(AcmeChallenge).where(AcmeChallenge.token == token))


def challenge_response(session: Session, token: str, at: datetime) -> str | None:
    """The key authorization to answer ``GET /.well-known/acme-challenge/<token>`` with at
    ``at``, or None (answer 404): unknown, expired, or not a token at all.

    What the data plane calls, in a reading session of its own.
    """
    if not is_challenge_token(token):
        return None
    return session.scalar(
        select(AcmeChallenge.key_authorization).where(
            AcmeChallenge.token == token, AcmeChallenge.expires_at > at
        )
    )


def answer_challenge(ctx: Context, token: str) -> str | None:
    """`challenge_response` now, in a reading session (the API's route)."""
    if not is_challenge_token(token):
        return None  # not worth a database round trip
    with ctx.database.reading() as session:
        return challenge_response(session, token, ctx.clock.now())


def sweep_challenges(ctx: Context) -> int:
    """Delete expired challenge rows (left by orders that died); how many were deleted."""
    with ctx.database.transaction() as session:
        result = session.execute(
            delete(AcmeChallenge).where(AcmeChallenge.expires_at <= ctx.clock.now())
        )
        return int(getattr(result, "rowcount", 0) or 0)


# -- the account key ------------------------------------------------------------------------


def load_or_create_account_key(data_dir: Path, box: SecretBox) -> ec.EllipticCurvePrivateKey:
    """The ACME account key sealed in ``<data dir>/acme-account.key``, made on first use.

    `ConfigurationError` when the file exists but cannot be read or opened.
    """
    path = data_dir / ACCOUNT_KEY_FILE
    if not path.exists():
        key = generate_key()
        envelope = box.encrypt(private_key_der(key), aad=ACCOUNT_KEY_AAD)
        try:
            _create_private_file(path, envelope)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            return key
    return _read_account_key(path, box)


def _read_account_key(path: Path, box: SecretBox) -> ec.EllipticCurvePrivateKey:
    try:
        with path.open("rb") as handle:
            envelope = handle.read(MAX_ACCOUNT_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(
            f"The ACME account key file {path} cannot be read: {exc.strerror}."
        ) from exc
    try:
        if len(envelope) > MAX_ACCOUNT_KEY_FILE_BYTES:
            raise SecretError("The file is too large to be a sealed key.")
        der = box.decrypt(envelope, aad=ACCOUNT_KEY_AAD)
        key = serialization.load_der_private_key(der, password=None)
    except (SecretError, ValueError) as exc:
        raise ConfigurationError(
            f"The ACME account key file {path} does not decrypt with the master key ({exc}). "
            "Restore the master key that sealed it, or move the file away to register a new "
            "ACME account; certward will not replace it by itself."
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"The ACME account key file {path} holds no ECDSA key.")
    if box.needs_rotation(envelope):  # after `certward keys rotate`: reseal with the new key
        _write_private_file(path, box.encrypt(der, aad=ACCOUNT_KEY_AAD), replace=True)
    return key


def _create_private_file(path: Path, data: bytes) -> None:
    """Write ``path`` (0600) atomically; `FileExistsError` if it exists meanwhile."""
    _write_private_file(path, data, replace=False)


def _write_private_file(path: Path, data: bytes, *, replace: bool) -> None:
    """Write ``path`` (0600) atomically: a temporary file, fsync, then link or rename."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # atomic, and never replaces a key another process wrote
    finally:
        temporary.unlink(missing_ok=True)
