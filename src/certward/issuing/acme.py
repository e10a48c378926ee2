"""An ACME issuer: server certificates from an ACME CA (RFC 8555) over HTTP-01 challenges.

`AcmeIssuer.issue` registers the account (once per issuer; an account that already
exists for the key is reused), orders a certificate for the hostnames, answers every
authorization's HTTP-01 challenge through a `ChallengeResponder`, and finalizes the
order with a CSR signed by the certificate's key. It returns the certificate and the
chain above it as the ACME server sent them: certward never fetches URLs it finds in
certificates (no AIA chasing, no alternate chains).

`Http01Responder` is the in-process responder: a small threaded HTTP server that
answers ``GET /.well-known/acme-challenge/<token>`` with the key authorization
published for that token and 404 for everything else. A data plane that serves the
challenges itself implements `ChallengeResponder` instead.

The ACME server's TLS certificate is verified against ``ca_bundle`` when given (a test
CA such as pebble's), otherwise against the system's trusted roots.
"""

from __future__ import annotations

import datetime as _dt
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from acme import challenges, client, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from josepy.jwa import ES256
from josepy.jwk import JWKEC

ACME_USER_AGENT = "certward"
DEFAULT_TIMEOUT = _dt.timedelta(seconds=90)
NETWORK_TIMEOUT_SECONDS = 30
CHALLENGE_PATH = "/.well-known/acme-challenge/"

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


class AcmeError(Exception):
    """The ACME CA did not issue: the sentence says why."""


class ChallengeResponder(Protocol):
    """Serves HTTP-01 key authorizations at ``/.well-known/acme-challenge/<token>``."""

    def publish(self, token: str, key_authorization: str) -> None:
        """Serve ``key_authorization`` for ``token`` from now on."""

    def withdraw(self, token: str) -> None:
        """Stop serving ``token`` (no error when it is not published)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AcmeCertificate:
    """A certificate the ACME CA issued and the chain above it, both PEM."""

    certificate_pem: str
    chain_pem: str


class AcmeIssuer:
    """Orders server certificates from the ACME CA at ``directory_url`` (see the module)."""

    def __init__(
        self,
        *,
        directory_url: str,
        account_key: ec.EllipticCurvePrivateKey,
        responder: ChallengeResponder,
        ca_bundle: Path | None = None,
        timeout: _dt.timedelta = DEFAULT_TIMEOUT,
        contact: Sequence[str] = (),
    ) -> None:
        if not directory_url.startswith("https://"):
            raise ValueError(f"an ACME directory is an https:// URL, not {directory_url!r}")
        if not isinstance(account_key.curve, ec.SECP256R1):
            raise ValueError("the ACME account key must be an ECDSA P-256 key")
        self._directory_url = directory_url
        self._jwk = JWKEC(key=account_key)
        self._responder = responder
        self._ca_bundle = ca_bundle
        self._timeout = timeout
        self._contact = tuple(contact)
        self._account: messages.RegistrationResource | None = None
        self._lock = threading.Lock()

    def issue(self, hostnames: Sequence[str], key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
        """The certificate PEM for ``hostnames`` (first one as common name) and its chain PEM."""
        names = _hostnames(hostnames)
        try:
            issued = self._issue(names, key)
        except errors.Error as exc:
            raise AcmeError(f"The ACME CA did not issue for {', '.join(names)}: {exc}") from exc
        except OSError as exc:  # requests' connection errors are OSErrors too
            raise AcmeError(f"The ACME CA at {self._directory_url} is unreachable: {exc}") from exc
        return issued.certificate_pem, issued.chain_pem

    def _issue(self, names: list[str], key: ec.EllipticCurvePrivateKey) -> AcmeCertificate:
        acme = self._client()
        order = acme.new_order(_csr_pem(names, key))
        published: list[str] = []
        try:
            for authorization in order.authorizations:
                if authorization.body.status == messages.STATUS_VALID:
                    continue
                challenge = _http01(authorization)
                response, validation = challenge.response_and_validation(self._jwk)
                token = challenge.chall.encode("token")
                self._responder.publish(token, validation)
                published.append(token)
                acme.answer_challenge(challenge, response)
            deadline = _dt.datetime.now() + self._timeout  # naive local time, as acme expects
            finalized = acme.poll_and_finalize(order, deadline)
        finally:
            for token in published:
                self._responder.withdraw(token)
        return _split(finalized.fullchain_pem, key, names)

    def _client(self) -> client.ClientV2:
        network = client.ClientNetwork(
            self._jwk,
            alg=ES256,
            user_agent=ACME_USER_AGENT,
            timeout=NETWORK_TIMEOUT_SECONDS,
        )
        if self._ca_bundle is not None:
            # Passed on as requests' ``verify``, which takes a CA bundle path as well.
            network.verify_ssl = str(self._ca_bundle)  # type: ignore[assignment]
        acme = client.ClientV2(client.ClientV2.get_directory(self._directory_url, network), network)
        with self._lock:
            if self._account is None:
                self._account = _register(acme, self._contact)
            network.account = self._account
        return acme


class Http01Responder:
    """The in-process HTTP-01 responder: serves published tokens on ``host:port``.

    Use as a context manager (or `start` / `stop`); port 0 picks a free port, read it
    back from `port`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080) -> None:
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The TCP port the responder listens on."""
        return int(self._server.server_address[1])

    def publish(self, token: str, key_authorization: str) -> None:
        """Serve ``key_authorization`` for ``token``."""
        if not _TOKEN.fullmatch(token):
            raise ValueError("an ACME challenge token is base64url text")
        with self._lock:
            self._tokens[token] = key_authorization

    def withdraw(self, token: str) -> None:
        """Stop serving ``token``."""
        with self._lock:
            self._tokens.pop(token, None)

    @property
    def published(self) -> int:
        """How many tokens are served right now."""
        with self._lock:
            return len(self._tokens)

    def lookup(self, token: str) -> str | None:
        """The key authorization published for ``token``, if any."""
        with self._lock:
            return self._tokens.get(token)

    def start(self) -> None:
        """Serve in a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="acme-http01", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Http01Responder:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _handler(responder: Http01Responder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "certward-acme-http01"
        sys_version = ""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            token = path[len(CHALLENGE_PATH) :] if path.startswith(CHALLENGE_PATH) else ""
            answer = responder.lookup(token) if _TOKEN.fullmatch(token) else None
            body = (answer if answer is not None else "not found\n").encode("ascii")
            self.send_response(200 if answer is not None else 404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the ACME CA polls; failures surface in the order's status

    return Handler


def _register(acme: client.ClientV2, contact: Sequence[str]) -> messages.RegistrationResource:
    registration = messages.NewRegistration.from_data(
        email=",".join(c.removeprefix("mailto:") for c in contact) or None,
        terms_of_service_agreed=True,
    )
    try:
        return acme.new_account(registration)
    except errors.ConflictError as exc:  # the key already has an account: use it
        return messages.RegistrationResource(uri=exc.location, body=messages.Registration())


def _http01(authorization: messages.AuthorizationResource) -> messages.ChallengeBody:
    for challenge in authorization.body.challenges:
        if isinstance(challenge.chall, challenges.HTTP01):
            return challenge
    raise AcmeError(
        f"The ACME CA offers no http-01 challenge for {authorization.body.identifier.value}."
    )


def _hostnames(hostnames: Sequence[str]) -> list[str]:
    names = list(dict.fromkeys(h.strip().rstrip(".").lower() for h in hostnames))
    if not names or not all(names):
        raise ValueError("an ACME order needs at least one hostname")
    return names


def _csr_pem(names: list[str], key: ec.EllipticCurvePrivateKey) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().add_extension(
        x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
    )
    if len(names[0]) <= 64:
        builder = builder.subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _split(
    fullchain_pem: str, key: ec.EllipticCurvePrivateKey, names: list[str]
) -> AcmeCertificate:
    """The leaf and the chain of ``fullchain_pem``, checked against the key and names."""
    try:
        certificates = x509.load_pem_x509_certificates(fullchain_pem.encode())
    except ValueError as exc:
        raise AcmeError(f"The ACME CA sent no readable certificate: {exc}") from exc
    leaf, chain = certificates[0], certificates[1:]
    pem = serialization.Encoding.PEM
    if leaf.public_key().public_bytes(
        pem, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise AcmeError("The ACME CA sent a certificate for another key.")
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    missing = set(names) - {n.lower() for n in sans.get_values_for_type(x509.DNSName)}
    if missing:
        raise AcmeError(f"The ACME CA sent a certificate without {', '.join(sorted(missing))}.")
    return AcmeCertificate(
        certificate_pem=leaf.public_bytes(pem).decode(),
        chain_pem="".join(c.public_bytes(pem).decode() for c in chain),
    )
