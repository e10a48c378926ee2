"""The TLS side of the gateway's client connections: one `SSL.Context` per hostname.

Every connection starts on `base_context`, which has no certificate, so an unknown SNI
(or none) cannot complete a handshake; the gateway's servername callback switches it
to the site's context from `ContextCache`. Where the site's rules involve client CAs
the context carries their names and trust store, and `accept_and_record` keeps a
failed client certificate from failing the handshake: the failure is recorded in the
connection's `Handshake` and the request is decided like any other.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL, crypto
from OpenSSL._util import lib as _lib

from certward.dataplane.nginx import openssl_dn
from certward.dataplane.state import DataPlaneState, Site
from certward.dataplane.tls_policy import INTERMEDIATE, TlsPolicy, configure_context

DEFAULT_CONTEXT_CAPACITY = 4096  # TLS contexts kept (most recently used certificates)
SITE_KEYS = 1 << 18  # sites whose context key is remembered
BASE_SESSION_ID_CONTEXT = b"certward"


def base_context(policy: TlsPolicy = INTERMEDIATE) -> SSL.Context:
    """The context every connection starts on: no certificate, so an unknown SNI (or none)
    cannot complete a handshake. It is also the connection's *session* context: OpenSSL
    encrypts and decrypts session tickets with its keys and keeps its session cache,
    whichever site context the servername callback switches to."""
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    configure_context(context, policy)
    context.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    context.set_session_id(BASE_SESSION_ID_CONTEXT)
    return context


def site_context(site: Site, policy: TlsPolicy = INTERMEDIATE) -> SSL.Context:
    """The TLS context of one hostname: its certificate chain and, where its rules involve
    client CAs, the names and trust store used to verify client certificates."""
    if site.certificate is None:
        raise ValueError(f"{site.hostname} has no certificate yet")
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    configure_context(context, policy)
    # Resumption is decided on the base context (`check_resumed`); OpenSSL still wants
    # an id context on a context that may verify peers.
    context.set_session_id(BASE_SESSION_ID_CONTEXT)
    chain = x509.load_pem_x509_certificates(site.certificate.chain_pem)
    context.use_certificate(chain[0])
    for extra in chain[1:]:
        context.add_extra_chain_cert(extra)
    # The key was validated when it entered certward; pyca's RSA check costs ~40 ms.
    key = serialization.load_pem_private_key(
        site.certificate.key_pem, password=None, unsafe_skip_rsa_key_validation=True
    )
    context.use_privatekey(key)  # type: ignore[arg-type]
    context.check_privatekey()
    trust = site.client_trust_pem()
    if trust:
        store = context.get_cert_store()
        if store is None:  # pragma: no cover - OpenSSL always gives a context a store
            raise RuntimeError("the TLS context has no certificate store")
        seen: set[bytes] = set()
        for certificate in x509.load_pem_x509_certificates(trust):
            der = certificate.public_bytes(Encoding.DER)
            if der in seen:
                continue
            seen.add(der)
            store.add_cert(crypto.X509.from_cryptography(certificate))
            context.add_client_ca(certificate)
        # A selected intermediate is a trust anchor by itself, its root uploaded or not.
        flags = crypto.X509StoreFlags.PARTIAL_CHAIN
        crls = site.client_crls()
        for crl in crls:
            store.add_crl(x509.load_der_x509_crl(crl.der))
        if crls:
            # The issuer of the client certificate is checked; one without a CRL is
            # passed over by `accept_and_record` (`_UNCHECKED`).
            flags |= crypto.X509StoreFlags.CRL_CHECK
        store.set_flags(flags)
        context.set_verify_depth(8)
    return context


@dataclass(slots=True)
class Handshake:
    """What one connection's handshake learnt."""

    site: Site | None = None
    verify_error: str | None = None
    wants_client_certificate: bool = False


class ContextCache:
    """TLS contexts by (certificate id, client-CA digest), built on the first handshake
    that needs one and kept for the ``capacity`` most recently used.

    Hostnames served by the same certificate with the same client CAs (the names of
    one multi-name or wildcard certificate) share one context. An OpenSSL context with
    its certificate costs about 27 KB, so one for each of 10,000 hostnames would take
    most of 300 MB; the state itself costs about 2 KB a hostname. A hostname whose
    context was dropped gets a new one at its next handshake (about a millisecond).
    ``_by_site`` remembers each `Site`'s key (at most `SITE_KEYS` of them), so a
    handshake on a known site costs two dictionary lookups; `retain` clears it when the
    state changes.
    """

    def __init__(
        self, capacity: int = DEFAULT_CONTEXT_CAPACITY, policy: TlsPolicy = INTERMEDIATE
    ) -> None:
        self.capacity = capacity
        self.policy = policy
        self._contexts: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._by_site: dict[int, tuple[Site, tuple[str, str], bool]] = {}

    def get(self, site: Site) -> tuple[SSL.Context, bool]:
        """The site's context, and whether it asks for a client certificate."""
        known = self._by_site.get(id(site))
        if known is not None and known[0] is site:
            key, wants = known[1], known[2]
        else:
            if site.certificate is None:
                raise ValueError(f"{site.hostname} has no certificate yet")
            trust = site.client_trust_pem() + "".join(c.id for c in site.client_crls()).encode()
            key = (site.certificate.id, hashlib.sha256(trust).hexdigest() if trust else "")
            wants = site.wants_client_certificate
            if len(self._by_site) >= SITE_KEYS:
                self._by_site.clear()
            self._by_site[id(site)] = (site, key, wants)
        entry = self._contexts.get(key)
        if entry is None:
            entry = _Entry(site_context(site, self.policy), {site.hostname})
            self._contexts[key] = entry
            if len(self._contexts) > self.capacity:
                self._contexts.popitem(last=False)
        else:
            self._contexts.move_to_end(key)
            if site.hostname not in entry.hostnames:
                entry.hostnames.add(site.hostname)
        return entry.context, wants

    def retain(self, state: DataPlaneState) -> None:
        """Forget contexts of certificates no longer served by any hostname that used them."""
        self._by_site.clear()
        for key, entry in list(self._contexts.items()):
            serving = {
                hostname
                for hostname in entry.hostnames
                if (site := state.sites.get(hostname)) is not None
                and site.certificate is not None
                and site.certificate.id == key[0]
            }
            if serving:
                entry.hostnames = serving
            else:
                del self._contexts[key]

    def __len__(self) -> int:
        return len(self._contexts)


@dataclass(slots=True)
class _Entry:
    """One cached context and the hostnames it was used for."""

    context: SSL.Context
    hostnames: set[str]


def accept_and_record(
    connection: SSL.Connection, certificate: crypto.X509, error: int, depth: int, ok: int
) -> bool:
    """Never fail the handshake over a client certificate; remember why it failed.

    A client CA without a CRL is not checked for revocation: OpenSSL's complaint that
    it found none is passed over."""
    if not ok and error == _UNABLE_TO_GET_CRL:
        return True
    if not ok:
        handshake: Handshake = connection.get_app_data()
        if handshake.verify_error is None:
            handshake.verify_error = f"{_verify_message(error)} (depth {depth})"
    return True


_UNABLE_TO_GET_CRL = 3  # X509_V_ERR_UNABLE_TO_GET_CRL: the issuer has no CRL here

# OpenSSL's words for the verification failures a client certificate commonly meets.
_VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    3: "unable to get certificate CRL",
    12: "CRL has expired",
    23: "certificate revoked",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose",
}


def check_resumed(connection: SSL.Connection, handshake: Handshake) -> None:
    """After a handshake that resumed a session, judge its client certificate again.

    OpenSSL resumes against the context a connection starts on, before the servername
    callback has picked the site, and skips certificate verification on resumption. So
    a certificate counts as verified only if it verified when the session was made and
    it still chains to *this* site's client CAs now (a session made on another host, or
    under other CAs, does not carry its verdict over).
    """
    if not handshake.wants_client_certificate or not _lib.SSL_session_reused(connection._ssl):
        return
    peer = connection.get_peer_certificate()
    if peer is None:
        return
    original = int(_lib.SSL_get_verify_result(connection._ssl))
    if original not in (0, _UNABLE_TO_GET_CRL):
        handshake.verify_error = f"{_verify_message(original)} (resumed session)"
        return
    store = connection.get_context().get_cert_store()
    try:
        if store is None:
            raise crypto.X509StoreContextError("no store", [], peer)
        crypto.X509StoreContext(store, peer).verify_certificate()
    except crypto.X509StoreContextError as exc:
        if exc.errors and exc.errors[0] == _UNABLE_TO_GET_CRL:
            return
        handshake.verify_error = f"{exc} (resumed session)"


def _verify_message(error: int) -> str:
    return _VERIFY_ERRORS.get(error, f"certificate verify error {error}")


def tls_headers(tls: SSL.Connection, handshake: Handshake) -> list[tuple[bytes, bytes]]:
    """The ``SSL-*`` headers sent upstream (empty values are left out, as nginx does)."""
    headers: list[tuple[bytes, bytes]] = [
        (b"SSL-Protocol", (tls.get_protocol_version_name() or "").encode()),
        (b"SSL-Cipher", (tls.get_cipher_name() or "").encode()),
    ]
    # Client details only for a certificate that verified (an app must be able to trust
    # them), with DNs as OpenSSL prints them, as nginx sends them.
    if handshake.wants_client_certificate and handshake.verify_error is None:
        peer = tls.get_peer_certificate()
        if peer is not None:
            certificate = peer.to_cryptography()
            serial = f"{certificate.serial_number:X}"
            if len(serial) % 2:
                serial = "0" + serial
            headers += [
                (b"SSL-Client-S-DN", openssl_dn(certificate.subject).encode()),
                (b"SSL-Client-I-DN", openssl_dn(certificate.issuer).encode()),
                (
                    b"SSL-Client-Fingerprint",
                    peer.digest("sha1").decode().replace(":", "").lower().encode(),
                ),
                (b"SSL-Client-Serial", serial.encode()),
            ]
    return [(name, value) for name, value in headers if value]
