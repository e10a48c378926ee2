"""An ACME issuer: server certificates from an ACME CA (RFC 8555) over HTTP-01 challenges.

`AcmeIssuer.issue` registers the account (once per issuer; an account that already
exists for the key is reused), orders a certificate for the hostnames, answers every
authorization's HTTP-01 challenge through a `ChallengeResponder`, and finalizes the
order with a CSR signed by the certificate's key. It returns the certificate and the
chain above it as the ACME server sent them: certward never fetches URLs it finds in
certificates (no AIA chasing, no alternate chains).

The responder only publishes and withdraws key authorizations; whatever answers
``GET /.well-known/acme-challenge/<token>`` on port 80 of the names (the data plane)
serves them. certward's responder publishes them in the database
(`certward.services.acme_issuing.DatabaseChallengeResponder`).

The ACME server's TLS certificate is verified against ``ca_bundle`` when given (a test
CA such as pebble's), otherwise against the system's trusted roots.
"""

from __future__ import annotations

import datetime as _dt
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from acme import challenges, client, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from certward.clock import SystemClock
from certward.errors import CertwardError

ACME_USER_AGENT = "certward"
DEFAULT_TIMEOUT = _dt.timedelta(seconds=90)
NETWORK_TIMEOUT_SECONDS = 30
CHALLENGE_PATH = "/.well-known/acme-challenge/"
_SYSTEM_CLOCK = SystemClock()

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,255}")  # base64url, no padding (RFC 8555 §8.3)


class AcmeError(CertwardError):
    """The ACME CA did not issue: the sentence says why.

    Not a `Refusal`: the use cases that order certificates answer it as
    `IssuerUnavailable` (503), and the renewal worker records it on the certificate.
    """


def is_challenge_token(token: str) -> bool:
    """Whether ``token`` can be an HTTP-01 token: 1-255 base64url characters, so it is
    safe in a URL path and a database key as it is."""
    return _TOKEN.fullmatch(token) is not None


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
            raise AcmeError(
                f"The ACME CA at {self._directory_url} is unreachable, so nothing was issued "
                f"for {', '.join(names)}: {exc}"
            ) from exc
        return issued.certificate_pem, issued.chain_pem

    def _issue(self, names: list[str], key: ec.EllipticCurvePrivateKey) -> AcmeCertificate:
        network = self._network()
        try:
            return self._order(self._client(network), names, key)
        finally:
            network.session.close()  # every connection closed now, none left to the collector

    def _order(
        self, acme: client.ClientV2, names: list[str], key: ec.EllipticCurvePrivateKey
    ) -> AcmeCertificate:
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
            # acme compares the deadline with its own reading of the system clock, in naive
            # local time: the real clock, whatever clock the services run on.
            deadline = _SYSTEM_CLOCK.now().astimezone().replace(tzinfo=None) + self._timeout
            finalized = acme.poll_and_finalize(order, deadline)
        finally:
            for token in published:
                self._responder.withdraw(token)
        return _split(finalized.fullchain_pem, key, names)

    def _network(self) -> client.ClientNetwork:
        network = client.ClientNetwork(
            self._jwk,
            alg=ES256,
            user_agent=ACME_USER_AGENT,
            timeout=NETWORK_TIMEOUT_SECONDS,
        )
        if self._ca_bundle is not None:
            # Passed on as requests' ``verify``, which takes a CA bundle path as well.
            network.verify_ssl = str(self._ca_bundle)  # type: ignore[assignment]
        return network

    def _client(self, network: client.ClientNetwork) -> client.ClientV2:
        acme = client.ClientV2(client.ClientV2.get_directory(self._directory_url, network), network)
        with self._lock:
            if self._account is None:
                self._account = _register(acme, self._contact)
            network.account = self._account
        return acme


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
