"""Managed certificates from an ACME CA, when ``CERTWARD_ACME_DIRECTORY`` is set.

The ACME account key is generated once and kept in ``<data dir>/acme-account.key``
(mode 0600, written atomically) as an envelope sealed by the secret store, so the
account survives restarts. A file that no longer decrypts (another master key, an
edited file) is an error that says so: certward never silently registers a new
account in its place. A file sealed with a retired master key is resealed with the
active one when read (after ``certward keys rotate``).

One `Http01Responder` per listen address (``CERTWARD_ACME_HTTP_LISTEN``) and one
`AcmeIssuer` per directory serve the whole process: both are made on first use and
reused by every issuance, the API's and the renewal worker's. `close_acme` stops them
(for tests and orderly shutdown).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certward.errors import ConfigurationError, SecretError
from certward.issuing.acme import AcmeError, AcmeIssuer, Http01Responder
from certward.issuing.ca import generate_key
from certward.pki.convert import private_key_der
from certward.secrets import SecretBox, associated_data
from certward.services.context import Context

ACCOUNT_KEY_FILE = "acme-account.key"
ACCOUNT_KEY_AAD = associated_data("acme", "account", "private_key")
MAX_ACCOUNT_KEY_FILE_BYTES = 16 * 1024

_lock = threading.Lock()
_responders: dict[tuple[str, int], Http01Responder] = {}
_issuers: dict[tuple[str, str, str | None, str, int], AcmeIssuer] = {}


def acme_enabled(ctx: Context) -> bool:
    """Whether managed certificates come from an ACME CA."""
    return ctx.settings.acme_directory is not None


def acme_issuer(ctx: Context) -> AcmeIssuer:
    """The process-wide issuer for the configured ACME directory; `AcmeError` if it cannot
    be prepared (account key unreadable, responder address taken)."""
    settings = ctx.settings
    directory = settings.acme_directory
    if directory is None:
        raise ValueError("CERTWARD_ACME_DIRECTORY is not set")
    bundle = None if settings.acme_ca_bundle is None else str(settings.acme_ca_bundle)
    address = (settings.acme_http_host, settings.acme_http_port)
    cache_key = (str(settings.data_dir.absolute()), directory, bundle, *address)
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
                responder=_responder(*address),
                ca_bundle=settings.acme_ca_bundle,
            )
            _issuers[cache_key] = issuer
        return issuer


def close_acme() -> None:
    """Stop every responder and forget every issuer of this process."""
    with _lock:
        for responder in _responders.values():
            responder.stop()
        _responders.clear()
        _issuers.clear()


def _responder(host: str, port: int) -> Http01Responder:
    """The running responder on ``host:port`` (caller holds ``_lock``)."""
    responder = _responders.get((host, port))
    if responder is None:
        try:
            responder = Http01Responder(host, port)
        except OSError as exc:
            raise AcmeError(
                f"The HTTP-01 challenge responder cannot listen on {host}:{port} "
                f"(CERTWARD_ACME_HTTP_LISTEN): {exc.strerror or exc}."
            ) from exc
        responder.start()
        _responders[(host, port)] = responder
    return responder


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
