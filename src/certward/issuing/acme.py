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

**Renewal information** (RFC 9773, ARI): when the directory offers ``renewalInfo``,
`AcmeIssuer.renewal_info` fetches a certificate's suggested renewal window (at
``<renewalInfo>/<ari_certificate_id>``, a plain GET over the same verified TLS) and
when to ask again (``Retry-After``), and an order that replaces a certificate names it
in ``replaces``. **Profiles** (draft-ietf-acme-profiles): with a ``profile`` the issuer
sends it in every newOrder, after checking that the directory's ``meta.profiles``
lists it. Only the operator's CA is ever contacted, at the URLs its directory names.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from acme import challenges, client, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from josepy.json_util import field as jose_field
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from certward.clock import SystemClock
from certward.errors import CertwardError
from certward.issuing.renewal import RenewalWindow, ari_retry_at

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
class RenewalInfo:
    """What the ACME CA says about renewing one certificate (RFC 9773): its suggested
    window (None when the document held no readable one) and when to ask again."""

    window: RenewalWindow | None
    ask_again_at: _dt.datetime


class _NewOrder(messages.NewOrder):
    """A newOrder payload with ``replaces`` (RFC 9773 §5), which acme's lacks."""

    replaces: str | None = jose_field("replaces", omitempty=True)


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
        profile: str | None = None,
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
        self._profile = profile
        self._account: messages.RegistrationResource | None = None
        self._lock = threading.Lock()

    def issue(
        self,
        hostnames: Sequence[str],
        key: ec.EllipticCurvePrivateKey,
        *,
        replaces: x509.Certificate | None = None,
    ) -> tuple[str, str]:
        """The certificate PEM for ``hostnames`` (first one as common name) and its chain PEM.

        ``replaces``, the certificate this one renews, is named in the order when the CA
        offers renewal information.
        """
        names = _hostnames(hostnames)
        try:
            issued = self._issue(names, key, replaces)
        except errors.Error as exc:
            raise AcmeError(f"The ACME CA did not issue for {', '.join(names)}: {exc}") from exc
        except OSError as exc:  # requests' connection errors are OSErrors too
            raise AcmeError(
                f"The ACME CA at {self._directory_url} is unreachable, so nothing was issued "
                f"for {', '.join(names)}: {exc}"
            ) from exc
        return issued.certificate_pem, issued.chain_pem

    def offered_profiles(self) -> dict[str, str]:
        """The profiles the CA's directory lists (``meta.profiles``: name to description),
        empty when it lists none; `AcmeError` when the directory cannot be read."""
        network = self._network()
        try:
            return _profiles(client.ClientV2.get_directory(self._directory_url, network))
        except (errors.Error, OSError, ValueError) as exc:
            raise AcmeError(
                f"The ACME directory at {self._directory_url} cannot be read: {exc}"
            ) from exc
        finally:
            network.session.close()

    def renewal_info(self, certificate: x509.Certificate, now: _dt.datetime) -> RenewalInfo | None:
        """The CA's renewal information for ``certificate`` at ``now``, or None when its
        directory offers none; `AcmeError` when it cannot be fetched."""
        network = self._network()
        try:
            directory = client.ClientV2.get_directory(self._directory_url, network)
            base = _renewal_info_url(directory)
            if base is None:
                return None
            response = network.get(
                f"{base.rstrip('/')}/{ari_certificate_id(certificate)}",
                content_type="application/json",
            )
            return RenewalInfo(
                window=_suggested_window(response.content),
                ask_again_at=ari_retry_at(now, response.headers.get("Retry-After")),
            )
        except (errors.Error, OSError, ValueError) as exc:  # ValueError: no AKI to name it by
            raise AcmeError(
                f"The ACME CA at {self._directory_url} sent no renewal information: {exc}"
            ) from exc
        finally:
            network.session.close()

    def _issue(
        self,
        names: list[str],
        key: ec.EllipticCurvePrivateKey,
        replaces: x509.Certificate | None,
    ) -> AcmeCertificate:
        network = self._network()
        try:
            return self._order(self._client(network), names, key, replaces)
        finally:
            network.session.close()  # every connection closed now, none left to the collector

    def _order(
        self,
        acme: client.ClientV2,
        names: list[str],
        key: ec.EllipticCurvePrivateKey,
        replaces: x509.Certificate | None,
    ) -> AcmeCertificate:
        replaced = None
        if replaces is not None and _renewal_info_url(acme.directory) is not None:
            try:
                replaced = ari_certificate_id(replaces)
            except ValueError:  # no authority key identifier: nothing to name it by
                replaced = None
        order = _new_order(acme, names, _csr_pem(names, key), self._profile, replaced)
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
        if self._profile is not None and self._profile not in _profiles(acme.directory):
            raise AcmeError(unoffered_profile(self._directory_url, self._profile, acme.directory))
        with self._lock:
            if self._account is None:
                self._account = _register(acme, self._contact)
            network.account = self._account
        return acme


def ari_certificate_id(certificate: x509.Certificate) -> str:
    """The certificate's identifier for renewal information (RFC 9773 §4.1): base64url of
    its authority key identifier's keyIdentifier, ".", base64url of its serial's DER
    integer bytes; `ValueError` without an authority key identifier."""
    try:
        aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        aki = None
    if aki is None or aki.key_identifier is None:
        raise ValueError("the certificate has no authority key identifier")
    serial = certificate.serial_number
    serial_der = serial.to_bytes((serial.bit_length() + 8) // 8, "big", signed=True)
    return f"{_base64url(aki.key_identifier)}.{_base64url(serial_der)}"


def unoffered_profile(directory_url: str, profile: str, directory: messages.Directory) -> str:
    """The sentence for a profile the CA's directory does not list."""
    offered = ", ".join(sorted(_profiles(directory))) or "none"
    return (
        f"The ACME CA at {directory_url} does not offer the profile {profile!r} "
        f"(CERTWARD_ACME_PROFILE); its directory lists: {offered}."
    )


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _profiles(directory: messages.Directory) -> dict[str, str]:
    meta = getattr(directory, "meta", None)
    profiles = getattr(meta, "profiles", None)
    if not isinstance(profiles, Mapping):  # josepy's frozendict
        return {}
    return {str(name): str(description) for name, description in profiles.items()}


def _renewal_info_url(directory: messages.Directory) -> str | None:
    """The directory's ``renewalInfo`` URL, None when it offers none (or not over https)."""
    try:
        url = directory["renewalInfo"]
    except KeyError:
        return None
    return url if isinstance(url, str) and url.startswith("https://") else None


def _suggested_window(content: bytes) -> RenewalWindow | None:
    """``suggestedWindow`` of a renewal information document, None when it is not one
    (not JSON, times missing, not RFC 3339 with an offset)."""
    try:
        document = json.loads(content)
        window = document["suggestedWindow"]
        start = _dt.datetime.fromisoformat(window["start"])
        end = _dt.datetime.fromisoformat(window["end"])
    except (ValueError, TypeError, KeyError):
        return None
    if start.tzinfo is None or end.tzinfo is None:
        return None
    return RenewalWindow(start=start.astimezone(_dt.UTC), end=end.astimezone(_dt.UTC))


def _new_order(
    acme: client.ClientV2,
    names: list[str],
    csr_pem: bytes,
    profile: str | None,
    replaces: str | None,
) -> messages.OrderResource:
    """`client.ClientV2.new_order`, with ``profile`` and ``replaces`` in the payload."""
    payload = _NewOrder(
        identifiers=[messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in names],
        profile=profile,
        replaces=replaces,
    )
    response = acme._post(acme.directory["newOrder"], payload)  # acme's own signed POST
    body = messages.Order.from_json(response.json())
    authorizations = [
        acme._authzr_from_response(acme._post_as_get(url), uri=url) for url in body.authorizations
    ]
    return messages.OrderResource(
        body=body,
        uri=response.headers.get("Location"),
        authorizations=authorizations,
        csr_pem=csr_pem,
    )


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
