"""The behaviour matrix every data plane must pass: cases as data, run by real TLS clients.

A data plane takes part by implementing `DataPlaneUnderTest` and being registered in
``tests/dataplane/test_matrix.py``::

    class MyPlane:
        def __init__(self, setup: PlaneSetup) -> None: ...
        def start(self, state: DataPlaneState) -> Endpoints: ...   # listening when it returns
        def update(self, state: DataPlaneState) -> None: ...       # in effect when it returns
        def stop(self) -> None: ...                                # everything stopped

    DATA_PLANES = {"nginx": NginxDataPlane, "mine": MyPlane}

`PlaneSetup` hands the plane a scratch directory and the fake certward API that answers
``GET /.well-known/acme-challenge/<token>`` (``acme_upstream``); a plane that answers
challenges itself reads the same tokens from ``challenges``. A plane that also
implements `LogsDecisions` has every logged decision compared with `decide`.

Every case builds a `DataPlaneState` from a shared test PKI and two echo upstreams, then
runs steps: HTTPS requests (SNI, optional client certificate, a chosen 127.0.0.x source
address), handshakes that must be refused, live updates, ``openssl s_client`` probes
for a CertificateRequest, plain-HTTP requests, a streamed response and request body, and
a WebSocket echo. The expected status of every request that reaches the access decision
is also computed with `certward.dataplane.access.decide` (`expected_by_decide`): the pure
function is the specification, and ``test_matrix.py`` checks the cases agree with it
before any data plane runs.

What every proxied request must carry upstream (checked for every `Request`):
``X-Forwarded-For`` and ``X-Real-IP`` equal to the client's address (one value, whatever
the client sent), ``X-Forwarded-Proto: https``, ``SSL-Protocol``/``SSL-Cipher`` as
negotiated, and the ``SSL-Client-*`` headers only for a client certificate that
verified on a host that asks for one: DNs the way OpenSSL prints them with
``XN_FLAG_RFC2253`` (`certward.dataplane.nginx.openssl_dn`), the SHA-1 fingerprint in
lower-case hex, the serial in upper-case hex of whole bytes. No header the client sent
under those names (``_`` spellings included) gets through.

The path given to `decide` is the normalised path (percent-decoded, dot segments
resolved, slashes merged), which is what an upstream serves: deciding on the raw target
would let ``/api%2Ddoc`` past the ``-doc`` rule.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import secrets
import socket
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from certward.clock import SystemClock
from certward.dataplane.access import ClientIdentity, Decision, decide
from certward.dataplane.caller_headers import HOP_MARK, HOP_MARK_HEADER, carries_hop_mark
from certward.dataplane.nginx import openssl_dn
from certward.dataplane.request_target import canonical_prefix
from certward.dataplane.state import (
    AccessProfile,
    ClientCa,
    DataPlaneState,
    PathRule,
    RuleKind,
    ServedCertificate,
    Site,
    state_version,
)
from tests.material.factory import IssuedCert, TestCA
from tests.material.tools import require_tool

WAIT_SECONDS = 10.0
NO_PHRASE_IN_NGINX = frozenset({508})
STREAM_SECONDS = 3.0  # how long a streamed piece may take to arrive (buffering takes 5)
HOLD_SECONDS = 5.0  # how long the upstream holds a stream back waiting for the client

# Headers a client may not set for the upstream (the data plane sets them itself).
FORWARDED = (
    "X-Real-IP",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "SSL-Protocol",
    "SSL-Cipher",
    "SSL-Client-S-DN",
    "SSL-Client-I-DN",
    "SSL-Client-Fingerprint",
    "SSL-Client-Serial",
)
CLIENT_HEADERS = FORWARDED[-4:]


# -- the upstream apps ------------------------------------------------------------------------


class EchoUpstream:
    """A plain-HTTP app on loopback that describes each request as JSON.

    ``GET /stream?tag=T`` sends ``first``, then holds the rest back until the test calls
    ``release(T)`` (or `HOLD_SECONDS` pass); ``POST /upload?tag=T`` with a chunked body
    signals ``first_chunk(T)`` as soon as the first chunk arrives; ``GET /ws`` upgrades
    to a WebSocket that echoes every frame. With ``challenges`` it also answers
    ``/.well-known/acme-challenge/<token>`` as certward's API does (404 for an unknown
    token). Every other request gets ``{"upstream", "method", "target", "headers",
    "body_length"}``.
    """

    def __init__(self, name: str, challenges: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.challenges = challenges
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        upstream = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = WAIT_SECONDS

            def handle(self) -> None:
                with _quietly():
                    while upstream._serve_one(self.rfile, self.wfile):
                        pass

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> EchoUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(WAIT_SECONDS)

    def event(self, key: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(key, threading.Event())

    def release(self, tag: str) -> None:
        self.event(f"release:{tag}").set()

    def first_chunk(self, tag: str) -> threading.Event:
        return self.event(f"chunk:{tag}")

    def _serve_one(self, reader: BinaryIO, writer: BinaryIO) -> bool:
        line = reader.readline(65537)
        if not line:
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: list[tuple[str, str]] = []
        while (header := reader.readline(65537)) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        lower = {name.lower(): value for name, value in headers}
        path, _, query = target.partition("?")
        tag = dict(p.partition("=")[::2] for p in query.split("&") if p).get("tag", "")
        if path == "/upload":
            length = _read_body(reader, lower, on_first_chunk=self.first_chunk(tag).set)
        else:
            length = _read_body(reader, lower)
        if path == "/ws" and lower.get("upgrade", "").lower() == "websocket":
            self._websocket(reader, writer, lower)
            return False
        if path == "/stream":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
            writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
            _write_chunk(writer, b"first\n")
            writer.flush()
            released = self.event(f"release:{tag}").wait(HOLD_SECONDS)
            _write_chunk(writer, b"second\n" if released else b"second (held back)\n")
            writer.write(b"0\r\n\r\n")
            writer.flush()
            return True
        acme = "/.well-known/acme-challenge/"
        if self.challenges is not None and path.startswith(acme):
            answer = self.challenges.get(path[len(acme) :])
            status = b"200 OK" if answer is not None else b"404 Not Found"
            body = (answer or "no such challenge\n").encode()
            _respond(writer, status, b"text/plain", body)
            return True
        payload = {
            "upstream": self.name,
            "method": method,
            "target": target,
            "headers": headers,
            "body_length": length,
        }
        _respond(writer, b"200 OK", b"application/json", json.dumps(payload).encode())
        return True

    def _websocket(self, reader: BinaryIO, writer: BinaryIO, headers: Mapping[str, str]) -> None:
        accept = websocket_accept(headers.get("sec-websocket-key", ""))
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        writer.flush()
        while (frame := read_frame(reader)) is not None:
            opcode, payload = frame
            if opcode == 0x8:
                writer.write(frame_bytes(0x8, payload, masked=False))
                writer.flush()
                return
            writer.write(frame_bytes(opcode, payload, masked=False))
            writer.flush()


@contextmanager
def _quietly() -> Iterator[None]:
    """A client or proxy hanging up mid-request is not the upstream's problem."""
    try:
        yield
    except (OSError, ValueError):
        return


def _respond(writer: BinaryIO, status: bytes, content_type: bytes, body: bytes) -> None:
    writer.write(
        b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    writer.flush()


def _write_chunk(writer: BinaryIO, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


def _read_body(
    reader: BinaryIO,
    headers: Mapping[str, str],
    *,
    on_first_chunk: Callable[[], None] | None = None,
) -> int:
    if "content-length" in headers:
        return len(reader.read(int(headers["content-length"])))
    if headers.get("transfer-encoding", "").lower() != "chunked":
        return 0
    total = 0
    while True:
        size = int(reader.readline(1024).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while reader.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return total
        total += len(reader.read(size))
        reader.readline(16)
        if on_first_chunk is not None:
            on_first_chunk()
            on_first_chunk = None


def websocket_accept(key: str) -> str:
    digest = hashlib.sha1(  # noqa: S324 - the digest RFC 6455 prescribes
        key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    ).digest()
    return base64.b64encode(digest).decode()


def frame_bytes(opcode: int, payload: bytes, *, masked: bool) -> bytes:
    """One final WebSocket frame (clients mask, servers do not)."""
    head = bytes([0x80 | opcode])
    mask_bit = 0x80 if masked else 0
    if len(payload) < 126:
        head += bytes([mask_bit | len(payload)])
    else:
        head += bytes([mask_bit | 126]) + len(payload).to_bytes(2, "big")
    if not masked:
        return head + payload
    mask = secrets.token_bytes(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frame(reader: BinaryIO) -> tuple[int, bytes] | None:
    """One WebSocket frame (opcode, unmasked payload); None at the end of the stream."""
    head = reader.read(2)
    if len(head) < 2:
        return None
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(reader.read(2), "big")
    elif length == 127:
        length = int.from_bytes(reader.read(8), "big")
    mask = reader.read(4) if head[1] & 0x80 else b""
    payload = reader.read(length)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head[0] & 0x0F, payload


# -- the data plane under test ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a started data plane listens on 127.0.0.1."""

    https_port: int
    http_port: int


@dataclass(frozen=True, slots=True)
class PlaneSetup:
    """What a data plane gets besides the state: a scratch directory, the fake certward
    API for ACME challenges (``http://127.0.0.1:port``) and the challenges it answers."""

    workdir: Path
    acme_upstream: str
    challenges: Mapping[str, str]


class DataPlaneUnderTest(Protocol):
    def start(self, state: DataPlaneState) -> Endpoints:
        """Serve ``state`` on free loopback ports; listening when this returns."""
        ...

    def update(self, state: DataPlaneState) -> None:
        """Serve ``state`` instead, without a restart; in effect when this returns."""
        ...

    def stop(self) -> None:
        """Stop everything started (also after a failed start)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedDecision:
    host: str
    path: str
    ip: str
    decision: str
    rule: str


@runtime_checkable
class LogsDecisions(Protocol):
    def decisions(self) -> list[LoggedDecision]:
        """Every access decision logged so far, oldest first."""
        ...


DataPlaneFactory = Callable[[PlaneSetup], DataPlaneUnderTest]


# -- the test PKI -----------------------------------------------------------------------------


class MatrixPki:
    """Certificates shared by every case, made once per session.

    Server certificates come from one root (the clients trust it). Client certificates:
    ``partner`` (issued by the partner root), ``partner-intermediate`` (by an
    intermediate uploaded below that root), ``partner-expired``, ``partner-no-san``,
    ``partner-server-only`` (serverAuth, no clientAuth), ``stranger`` (a CA no site
    knows), ``sibling`` (a CA one profile of the site selects, another does not),
    ``issuing`` (an intermediate selected without its root), ``unicode`` (non-ASCII and
    RFC 4514 special characters in both its subject and its issuer's).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        # Dated from the real clock: nginx and OpenSSL check validity against it.
        now = SystemClock().now()
        self.validity = {
            "not_before": now - timedelta(days=1),
            "not_after": now + timedelta(days=90),
        }
        valid = self.validity
        self.server_root = TestCA.root(name="matrix server root", **valid)
        self.server_intermediate = self.server_root.intermediate(
            name="matrix server issuing", **valid
        )
        self.partner_root = TestCA.root(name="matrix partner root", **valid)
        self.partner_intermediate = self.partner_root.intermediate(
            name="matrix partner issuing", **valid
        )
        self.stranger_root = TestCA.root(name="matrix stranger root", **valid)
        self.sibling_root = TestCA.root(name="matrix sibling root", **valid)
        self.hidden_root = TestCA.root(name="matrix hidden root", **valid)
        self.issuing = self.hidden_root.intermediate(name="matrix selected intermediate", **valid)
        self.unicode_root = TestCA.root(name='Ünïcode "Partner" Root, Zürich; CA+1', **valid)
        long_ago = now - timedelta(days=400)
        client = {"eku": ["clientAuth"], **valid}
        self.clients: dict[str, IssuedCert] = {
            "partner": self.partner_root.issue_leaf("partner client", **client),
            "partner-intermediate": self.partner_intermediate.issue_leaf(
                "partner intermediate client", **client
            ),
            "partner-expired": self.partner_root.issue_leaf(
                "partner expired client",
                eku=["clientAuth"],
                not_before=long_ago,
                not_after=long_ago + timedelta(days=30),
            ),
            "partner-no-san": self.partner_root.issue_leaf(
                "partner client without SAN", no_san=True, **client
            ),
            "partner-server-only": self.partner_root.issue_leaf(
                "partner server-only", eku=["serverAuth"], **valid
            ),
            "stranger": self.stranger_root.issue_leaf("stranger client", **client),
            "sibling": self.sibling_root.issue_leaf("sibling client", **client),
            "issuing": self.issuing.issue_leaf("issuing client", **client),
            "unicode": self.unicode_root.issue_leaf(
                '#Müller, "Partner" + Co; <ops> =1', no_san=True, **client
            ),
        }
        self._server: dict[str, IssuedCert] = {}
        self._files: dict[str, Path] = {}
        self.server_roots_file = directory / "server-root.pem"
        self.server_roots_file.write_bytes(self.server_root.cert_pem())

    def server(
        self, name: str, *, key_type: str = "ec-p256", via_intermediate: bool = False
    ) -> IssuedCert:
        """The server certificate called ``name`` (made on first use): for the host of
        the same name, or ``host#2`` for a replacement."""
        if name not in self._server:
            host = name.split("#", 1)[0]
            issuer = self.server_intermediate if via_intermediate else self.server_root
            self._server[name] = issuer.issue_leaf(host, key_type=key_type, **self.validity)
        return self._server[name]

    def served(self, name: str) -> ServedCertificate:
        cert = self.server(name)
        intermediates = b"".join(
            c.public_bytes(Encoding.PEM) for c in cert.chain if c != self.server_root.certificate
        )
        return ServedCertificate(
            id=f"{name}:{cert.certificate.serial_number:x}",
            chain_pem=cert.cert_pem() + intermediates,
            key_pem=cert.key_pem(),
        )

    def client_file(self, name: str, *, with_chain: bool = False) -> Path:
        """A PEM file with the client certificate (and its issuers) and its key."""
        key = f"{name}{'+chain' if with_chain else ''}"
        if key not in self._files:
            cert = self.clients[name]
            path = self.directory / f"client-{key}.pem"
            path.write_bytes(
                cert.cert_pem() + (cert.chain_pem() if with_chain else b"") + cert.key_pem()
            )
            self._files[key] = path
        return self._files[key]


def client_ca(ca: TestCA) -> ClientCa:
    return ClientCa(
        sha256_fingerprint=ca.certificate.fingerprint(hashes.SHA256()).hex(),
        subject=ca.certificate.subject.rfc4514_string(),
        certificate_pem=ca.cert_pem(),
    )


def profile(
    name: str,
    *,
    ranges: Sequence[str] = (),
    cas: Sequence[TestCA] = (),
    intermediates: Sequence[TestCA] = (),
) -> AccessProfile:
    """A profile as the control plane builds it: the selected ``cas``, the uploaded
    ``intermediates`` below them, every one an accepted issuer."""
    accepted = [*cas, *intermediates]
    return AccessProfile(
        name=name,
        ip_ranges=tuple(ip_network(r) for r in ranges),
        client_cas=tuple(client_ca(ca) for ca in cas),
        accepted_issuers=frozenset(ca.certificate.subject.rfc4514_string() for ca in accepted),
        trust_pem=b"".join(ca.cert_pem() for ca in accepted),
    )


def rules(*entries: tuple[str, str] | tuple[str, str, str]) -> tuple[PathRule, ...]:
    """``("/prefix", "deny-all")`` or ``("/prefix", "profile", "name")``."""
    return tuple(
        PathRule(prefix=e[0], rule=RuleKind(e[1]), profile=e[2] if len(e) > 2 else None)
        for e in entries
    )


@dataclass(frozen=True, slots=True)
class Env:
    """What a case's state is built from."""

    pki: MatrixPki
    upstreams: Mapping[str, str]  # "app"/"other" → URL


def site(
    env: Env,
    hostname: str,
    *,
    upstream: str = "app",
    certificate: str | None = "",
    path_rules: tuple[PathRule, ...] = (),
    profiles: Sequence[AccessProfile] = (),
    deny: Sequence[str] = (),
    hsts: int | None = None,
) -> Site:
    """A site; ``certificate`` names the server certificate ("" for the hostname's own,
    None for none yet)."""
    return Site(
        hostname=hostname,
        kind="custom",
        app="shop",
        environment="production",
        environment_id=f"env-{upstream}",
        upstream=env.upstreams[upstream],
        certificate=None if certificate is None else env.pki.served(certificate or hostname),
        path_rules=path_rules,
        profiles={p.name: p for p in profiles},
        deny_ranges=tuple(ip_network(r) for r in deny),
        hsts_max_age=hsts,
    )


def state_of(*sites: Site) -> DataPlaneState:
    parts = [repr(s) for s in sites]
    return DataPlaneState(sites={s.hostname: s for s in sites}, version=state_version(parts))


# -- steps ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One HTTPS request and its expected status.

    ``verified`` says how the client certificate must come out of verification (what
    `decide` is told); ``decided=False`` marks statuses that are not an access decision
    (421). ``path`` is sent as is; `decide` sees `normalised_path` of it.
    """

    host: str
    path: str = "/"
    expect: int = 200
    source: str = "127.0.0.1"
    client: str | None = None
    client_chain: bool = False
    verified: bool = True
    sni: str | None = None
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    upstream: str = "app"
    peer: str | None = None  # the server certificate expected (default: the host's own)
    tls_version: ssl.TLSVersion | None = None
    decided: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """A handshake that must fail (``sni=None``: no SNI at all)."""

    sni: str | None
    tls_version: ssl.TLSVersion | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Update:
    """Apply another state live."""

    build: Callable[[Env], DataPlaneState]


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRequestProbe:
    """``openssl s_client -msg``: whether the server sends a CertificateRequest, and the
    CA names it lists."""

    sni: str
    requested: bool
    ca_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PlainRequest:
    """A request to the plain-HTTP port; ``{https_port}`` in ``location`` stands for the
    HTTPS port the data plane listens on (never 443 here: a redirect must keep it)."""

    host: str
    path: str
    expect: int
    location: str | None = None
    body: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamProbe:
    """A response that must reach the client piece by piece, and a request body that must
    reach the upstream piece by piece."""

    host: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSocketProbe:
    host: str
    messages: tuple[bytes, ...] = (b"hello", b"x" * 300)


Step = (
    Request
    | Refused
    | Update
    | CertificateRequestProbe
    | PlainRequest
    | StreamProbe
    | WebSocketProbe
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    name: str
    build: Callable[[Env], DataPlaneState]
    steps: tuple[Step, ...]
    challenges: Mapping[str, str] = field(default_factory=dict)


# -- clients ---------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: bytes
    headers: list[tuple[str, str]]
    peer_certificate: bytes
    tls_version: str
    cipher: str
    reason: str = ""

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return values[0] if values else None

    def forwarded(self, name: str) -> list[str]:
        """The values of header ``name`` the upstream received."""
        return [v for n, v in self.json()["headers"] if n.lower() == name.lower()]


def client_context(
    pki: MatrixPki,
    *,
    client: str | None = None,
    chain: bool = False,
    version: ssl.TLSVersion | None = None,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.server_roots_file))
    context.check_hostname = check_hostname
    if version is not None:
        context.minimum_version = version
        context.maximum_version = version
    if client is not None:
        context.load_cert_chain(pki.client_file(client, with_chain=chain))
    return context


def tls_connect(
    port: int, sni: str | None, context: ssl.SSLContext, *, source: str = "127.0.0.1"
) -> ssl.SSLSocket:
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=WAIT_SECONDS, source_address=(source, 0)
    )
    try:
        return context.wrap_socket(sock, server_hostname=sni)
    except BaseException:
        sock.close()
        raise


def https_request(endpoints: Endpoints, pki: MatrixPki, request: Request) -> Answer:
    context = client_context(
        pki, client=request.client, chain=request.client_chain, version=request.tls_version
    )
    tls = tls_connect(
        endpoints.https_port, request.sni or request.host, context, source=request.source
    )
    # Read before the request: a "Connection: close" answer closes the socket.
    peer = tls.getpeercert(binary_form=True) or b""
    version, cipher = tls.version() or "", (tls.cipher() or ("",))[0]
    connection = http.client.HTTPConnection("127.0.0.1", endpoints.https_port)
    connection.sock = tls
    try:
        connection.putrequest(request.method, request.path, skip_host=True)
        connection.putheader("Host", request.host)
        for name, value in request.headers:
            connection.putheader(name, value)
        if request.body is not None:
            connection.putheader("Content-Length", str(len(request.body)))
        connection.endheaders(request.body)
        response = connection.getresponse()
        body = response.read()
        return Answer(
            status=response.status,
            body=body,
            headers=response.getheaders(),
            peer_certificate=peer,
            tls_version=version,
            cipher=cipher,
            reason=response.reason,
        )
    finally:
        connection.close()


def plain_request(endpoints: Endpoints, host: str, path: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", endpoints.http_port, timeout=WAIT_SECONDS)
    connection.request("GET", path, headers={"Host": host})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def origin_form(target: str) -> str:
    """``https://host/x?q`` → ``/x?q`` (what an upstream receives); other targets as they are."""
    absolute = re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*(.*)", target)
    if absolute is None:
        return target
    rest = absolute[1]
    return rest if rest.startswith("/") else "/" + rest


def normalised_path(target: str) -> str:
    """The path a request is about: an absolute-form target's path, query and fragment
    dropped, percent-decoded, slashes merged, dot segments resolved (RFC 3986 section
    5.2.4), as nginx's ``$uri``."""
    path = re.sub("/+", "/", unquote(re.split("[?#]", origin_form(target), maxsplit=1)[0]))
    segments = path.split("/")
    kept: list[str] = []
    for segment in segments[1:]:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    result = "/" + "/".join(kept)
    if segments[-1] in (".", "..") and not result.endswith("/"):
        result += "/"
    return result


# -- expectations ------------------------------------------------------------------------------


def identity_for(pki: MatrixPki, site: Site, request: Request) -> ClientIdentity | None:
    """What the handshake should learn of the client certificate."""
    if request.client is None or not site.wants_client_certificate:
        return None
    certificate = pki.clients[request.client].certificate
    return ClientIdentity(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        verified=request.verified,
    )


def expected_by_decide(
    pki: MatrixPki, state: DataPlaneState, request: Request
) -> tuple[int, Decision] | None:
    """The status `decide` gives ``request`` (None when the request is not decided)."""
    site = state.site(request.host)
    if not request.decided or site is None:
        return None
    decision = decide(
        site,
        normalised_path(request.path),
        ip_address(request.source),
        identity_for(pki, site, request),
    )
    return (200 if decision.allowed else 403), decision


def expected_client_headers(pki: MatrixPki, client: str) -> dict[str, str]:
    certificate = pki.clients[client].certificate
    serial = f"{certificate.serial_number:X}"
    return {
        "SSL-Client-S-DN": openssl_dn(certificate.subject),
        "SSL-Client-I-DN": openssl_dn(certificate.issuer),
        "SSL-Client-Fingerprint": hashlib.sha1(  # noqa: S324 - the header's own digest
            certificate.public_bytes(Encoding.DER)
        ).hexdigest(),
        "SSL-Client-Serial": serial.rjust(len(serial) + len(serial) % 2, "0"),
    }


def check_forwarded(
    pki: MatrixPki, state: DataPlaneState, request: Request, answer: Answer
) -> None:
    """What the upstream received: our headers, never the client's."""
    data = answer.json()
    assert data["upstream"] == request.upstream, f"served by {data['upstream']}"
    assert (data["method"], data["target"]) == (request.method, origin_form(request.path))
    assert data["body_length"] == len(request.body or b"")
    assert answer.forwarded("X-Forwarded-For") == [request.source]
    assert answer.forwarded("X-Real-IP") == [request.source]
    assert answer.forwarded("X-Forwarded-Proto") == ["https"]
    assert answer.forwarded("SSL-Protocol") == [answer.tls_version]
    assert answer.forwarded("SSL-Cipher") == [answer.cipher]
    loop = answer.forwarded(HOP_MARK_HEADER)
    assert any(carries_hop_mark(v) for v in loop), f"no hop mark upstream: {loop}"
    sent = [v for n, v in request.headers if n.lower() == HOP_MARK_HEADER.lower()]
    assert all(any(s in v for v in loop) for s in sent), f"{sent} dropped: {loop}"
    host = answer.forwarded("Host")
    assert [h.rsplit(":", 1)[0].lower() for h in host] == [request.host], host
    site = state.site(request.host)
    assert site is not None
    verified = request.client is not None and site.wants_client_certificate and request.verified
    expected = expected_client_headers(pki, request.client) if verified and request.client else {}
    for name in CLIENT_HEADERS:
        values = [v for v in answer.forwarded(name) if v]
        assert values == ([expected[name]] if name in expected else []), (name, values)
    for name, _ in data["headers"]:
        assert "_" not in name or name.lower().replace("_", "-") not in {
            f.lower() for f in FORWARDED
        }, f"{name} reached the upstream"


# -- running a case --------------------------------------------------------------------------------


@dataclass
class Run:
    """One case against one data plane."""

    plane: DataPlaneUnderTest
    env: Env
    upstreams: Mapping[str, EchoUpstream]
    state: DataPlaneState
    endpoints: Endpoints
    openssl: Callable[[], str] = lambda: require_tool("openssl")
    logged: int = 0

    def step(self, step: Step) -> None:
        if isinstance(step, Request):
            self.request(step)
        elif isinstance(step, Refused):
            self.refused(step)
        elif isinstance(step, Update):
            self.state = step.build(self.env)
            self.plane.update(self.state)
        elif isinstance(step, CertificateRequestProbe):
            self.certificate_request(step)
        elif isinstance(step, PlainRequest):
            self.plain(step)
        elif isinstance(step, StreamProbe):
            self.stream(step)
        else:
            self.websocket(step)

    def request(self, request: Request) -> None:
        expected = expected_by_decide(self.env.pki, self.state, request)
        if expected is not None:
            assert expected[0] == request.expect, (
                f"the case expects {request.expect} but decide() says {expected[1]}"
            )
        answer = https_request(self.endpoints, self.env.pki, request)
        described = f"{request.host}{request.path} from {request.source} ({request.client})"
        assert answer.status == request.expect, (
            f"{described}: {answer.status}, expected {request.expect}: {answer.body[:300]!r}"
        )
        # nginx 1.22 has no phrase for 508 (its status lines end at 507).
        assert answer.reason or answer.status in NO_PHRASE_IN_NGINX, f"{described}: no reason"
        # HSTS of the site that answers; a 421 may come from either the SNI's site (the
        # gateway) or the Host's (nginx picks the server block by Host).
        served = self.state.site(request.sni or request.host)
        hsts = None if served is None or served.hsts_header is None else served.hsts_header.decode()
        if request.expect != 421:
            assert answer.header("Strict-Transport-Security") == hsts, described
        peer = x509.load_der_x509_certificate(answer.peer_certificate)
        assert peer == self.env.pki.server(request.peer or request.host).certificate
        if request.expect == 200:
            check_forwarded(self.env.pki, self.state, request, answer)
        elif request.expect == 403:
            assert (answer.header("Content-Type") or "").startswith("text/html")
        if expected is not None and isinstance(self.plane, LogsDecisions):
            self.check_logged(request, expected[1])

    def check_logged(self, request: Request, decision: Decision) -> None:
        assert isinstance(self.plane, LogsDecisions)
        waiter = threading.Event()
        for _ in range(100):
            logged = self.plane.decisions()
            # nginx writes a line after the response is sent: the line of a refused
            # request before this one may be the newest for a moment.
            if len(logged) > self.logged and logged[-1].path == normalised_path(request.path):
                break
            waiter.wait(0.02)
        self.logged = len(logged)
        entry = logged[-1]
        assert (entry.host, entry.ip) == (request.host, request.source)
        assert entry.path == normalised_path(request.path)
        assert (entry.decision, entry.rule) == (decision.verdict.value, decision.rule)

    def refused(self, step: Refused) -> None:
        if step.tls_version is not None and step.tls_version < ssl.TLSVersion.TLSv1_2:
            self.old_protocol_refused(step)
            return
        context = client_context(
            self.env.pki, version=step.tls_version, check_hostname=step.sni is not None
        )
        try:
            tls = tls_connect(self.endpoints.https_port, step.sni, context)
        except (ssl.SSLError, ConnectionError):
            return
        # TLS 1.3 may report a refusal only on the first read.
        try:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = tls.recv(1)
        except (ssl.SSLError, ConnectionError):
            return
        finally:
            tls.close()
        raise AssertionError(f"the handshake for SNI {step.sni!r} succeeded ({data!r})")

    def old_protocol_refused(self, step: Refused) -> None:
        """Python's ssl no longer offers TLS 1.1; ``openssl s_client`` still can."""
        assert step.sni is not None
        flag = {ssl.TLSVersion.TLSv1: "-tls1", ssl.TLSVersion.TLSv1_1: "-tls1_1"}
        completed = subprocess.run(
            [
                self.openssl(),
                "s_client",
                "-connect",
                f"127.0.0.1:{self.endpoints.https_port}",
                "-servername",
                step.sni,
                flag[step.tls_version or ssl.TLSVersion.TLSv1_1],
                "-cipher",
                "DEFAULT:@SECLEVEL=0",
            ],
            input=b"",
            capture_output=True,
            timeout=WAIT_SECONDS,
            check=False,
        )
        output = completed.stdout.decode("utf-8", "replace")
        assert "Cipher is (NONE)" in output, output[-2000:]

    def certificate_request(self, step: CertificateRequestProbe) -> None:
        completed = subprocess.run(
            [
                self.openssl(),
                "s_client",
                "-connect",
                f"127.0.0.1:{self.endpoints.https_port}",
                "-servername",
                step.sni,
                "-msg",
                "-CAfile",
                str(self.env.pki.server_roots_file),
            ],
            input=b"",
            capture_output=True,
            timeout=WAIT_SECONDS,
            check=False,
        )
        output = completed.stdout.decode("utf-8", "replace")
        assert "Verify return code: 0 (ok)" in output, output[-2000:]
        requested = any(
            line.startswith("<<<") and "CertificateRequest" in line for line in output.splitlines()
        )
        assert requested == step.requested, output[-3000:]
        names = output.split("Acceptable client certificate CA names", 1)
        if step.requested and step.ca_names:
            assert len(names) == 2, output[-3000:]
            listed = names[1].split("---", 1)[0]
            for name in step.ca_names:
                assert name in listed, (name, listed)
        if not step.requested:
            assert len(names) == 1

    def plain(self, step: PlainRequest) -> None:
        response = plain_request(self.endpoints, step.host, step.path)
        assert response.status == step.expect, (step, response.status)
        assert response.reason, "no reason phrase"
        assert response.getheader("Strict-Transport-Security") is None, "HSTS over plain HTTP"
        if step.location is not None:
            location = step.location.replace("{https_port}", str(self.endpoints.https_port))
            assert response.getheader("Location") == location

    def stream(self, step: StreamProbe) -> None:
        upstream = self.upstreams["app"]
        context = client_context(self.env.pki)
        # The response, piece by piece.
        tag = secrets.token_hex(4)
        tls = tls_connect(self.endpoints.https_port, step.host, context)
        tls.settimeout(STREAM_SECONDS)
        connection = http.client.HTTPConnection("127.0.0.1", self.endpoints.https_port)
        connection.sock = tls
        try:
            connection.request("GET", f"/stream?tag={tag}", headers={"Host": step.host})
            try:
                response = connection.getresponse()
                first = response.readline()
            except TimeoutError:
                raise AssertionError("the first piece of the response was held back") from None
            assert response.status == 200
            assert first == b"first\n"
            upstream.release(tag)
            assert response.read() == b"second\n"
        finally:
            connection.close()
        # The request body, piece by piece.
        tag = secrets.token_hex(4)
        tls = tls_connect(self.endpoints.https_port, step.host, context)
        connection = http.client.HTTPConnection("127.0.0.1", self.endpoints.https_port)
        connection.sock = tls
        try:
            connection.putrequest("POST", f"/upload?tag={tag}", skip_host=True)
            connection.putheader("Host", step.host)
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            connection.send(b"5\r\npart1\r\n")
            arrived = upstream.first_chunk(tag).wait(STREAM_SECONDS)
            connection.send(b"5\r\npart2\r\n0\r\n\r\n")
            response = connection.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["body_length"] == 10
            assert arrived, "the first chunk of the request body was held back"
        finally:
            connection.close()

    def websocket(self, step: WebSocketProbe) -> None:
        tls = tls_connect(self.endpoints.https_port, step.host, client_context(self.env.pki))
        try:
            key = base64.b64encode(secrets.token_bytes(16)).decode()
            tls.sendall(
                (
                    f"GET /ws HTTP/1.1\r\nHost: {step.host}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            reader = tls.makefile("rb")
            status = reader.readline()
            assert status.split(b" ", 2)[1] == b"101", status
            headers = {}
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            assert headers.get("sec-websocket-accept") == websocket_accept(key)
            for message in step.messages:
                tls.sendall(frame_bytes(0x1, message, masked=True))
                assert read_frame(reader) == (0x1, message)
            tls.sendall(frame_bytes(0x8, b"", masked=True))
        finally:
            tls.close()


@contextmanager
def upstreams_running(challenges: Mapping[str, str]) -> Iterator[dict[str, EchoUpstream]]:
    with (
        EchoUpstream("app") as app,
        EchoUpstream("other") as other,
        EchoUpstream("acme", challenges) as acme,
    ):
        yield {"app": app, "other": other, "acme": acme}


def run_case(factory: DataPlaneFactory, case: Case, pki: MatrixPki, workdir: Path) -> None:
    """Start a data plane on the case's state, run every step, stop it."""
    challenges = dict(case.challenges)
    with upstreams_running(challenges) as upstreams:
        env = Env(pki=pki, upstreams={name: u.url for name, u in upstreams.items()})
        plane = factory(
            PlaneSetup(workdir=workdir, acme_upstream=upstreams["acme"].url, challenges=challenges)
        )
        state = case.build(env)
        try:
            endpoints = plane.start(state)
            run = Run(plane=plane, env=env, upstreams=upstreams, state=state, endpoints=endpoints)
            for step in case.steps:
                run.step(step)
        finally:
            plane.stop()


def free_port() -> int:
    """A port nothing listens on right now (the caller retries if it is taken meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the cases ---------------------------------------------------------------------------------

MANY = tuple(f"h{i}.many.test" for i in range(6))
SHOP = "shop.matrix.test"
PARTNERS = "partners.matrix.test"
OFFICE = "office.matrix.test"
RULES = "rules.matrix.test"
PLAIN = "plain.matrix.test"
PENDING = "pending.matrix.test"


def _many(env: Env) -> DataPlaneState:
    for number, host in enumerate(MANY):
        env.pki.server(
            host,
            key_type="rsa-2048" if number % 3 == 0 else "ec-p256",
            via_intermediate=number % 3 == 1,
        )
    return state_of(
        *(site(env, host, upstream="app" if i % 2 == 0 else "other") for i, host in enumerate(MANY))
    )


def _shop_with(certificate: str) -> Callable[[Env], DataPlaneState]:
    return lambda env: state_of(
        site(env, SHOP, certificate=certificate),
        site(env, PLAIN),
        site(env, PENDING, certificate=None),
    )


def _partners(env: Env) -> DataPlaneState:
    pki = env.pki
    partners = profile("partners", cas=[pki.partner_root], intermediates=[pki.partner_intermediate])
    siblings = profile("siblings", cas=[pki.sibling_root])
    selected = profile("selected", cas=[pki.issuing])
    unicode = profile("unicode", cas=[pki.unicode_root])
    return state_of(
        site(
            env,
            PARTNERS,
            path_rules=rules(
                ("/partner", "profile", "partners"),
                ("/siblings", "profile", "siblings"),
                ("/selected", "profile", "selected"),
                ("/unicode", "profile", "unicode"),
                ("/open", "allow-all"),
            ),
            profiles=[partners, siblings, selected, unicode],
        ),
        site(env, PLAIN),
    )


def _hsts(env: Env) -> DataPlaneState:
    """HSTS on the shop (a year) and, with max-age 0, on the pending host; none on plain."""
    return state_of(
        site(env, SHOP, path_rules=rules(("/private", "deny-all")), hsts=31536000),
        site(env, PLAIN),
        site(env, PENDING, hsts=0),
    )


def _ip_rules(env: Env) -> DataPlaneState:
    office = profile("office", ranges=["127.0.0.2/32", "::1/128"], cas=[env.pki.partner_root])
    return state_of(
        site(
            env,
            OFFICE,
            path_rules=rules(("/office", "profile", "office"), ("/public", "allow-all")),
            profiles=[office],
            deny=["127.0.0.3/32", "192.0.2.0/24"],
        )
    )


WEIRD = "/we$ird(\"q'[x]{2}*+^|\\"


def _path_rules(env: Env) -> DataPlaneState:
    return state_of(
        site(
            env,
            RULES,
            path_rules=rules(
                ("/a", "deny-all"),
                ("/a/b", "allow-all"),
                ("/a/b/c", "inherit"),
                ("/a/x", "inherit"),
                ("/inh", "inherit"),
                ("/ap", "allow-all"),
                ("/open-doc", "allow-all"),
                ("/half-do", "allow-all"),
                ("/slash-doc/", "allow-all"),
                ("/p", "profile", "missing"),
                ("/a.b", "deny-all"),
                (WEIRD, "deny-all"),
                ("/secret", "deny-all"),
                ("/sp ace", "deny-all"),
            ),
        )
    )


def _encoded_prefix(env: Env) -> DataPlaneState:
    # As the control plane stores them: ``/files/a%20b`` once never matched anything.
    return state_of(
        site(
            env,
            RULES,
            path_rules=rules(
                (canonical_prefix("/files/a%20b"), "deny-all"),
                (canonical_prefix("/caf%C3%A9"), "deny-all"),
            ),
        )
    )


def _spoofing(env: Env) -> DataPlaneState:
    partners = profile("partners", cas=[env.pki.partner_root])
    return state_of(
        site(env, SHOP),
        site(
            env,
            PARTNERS,
            path_rules=rules(("/partner", "profile", "partners")),
            profiles=[partners],
        ),
    )


SPOOFED = (
    ("X-Forwarded-For", "203.0.113.9"),
    ("X-Real-IP", "203.0.113.9"),
    ("X-Forwarded-Proto", "http"),
    ("SSL-Protocol", "SSLv3"),
    ("SSL-Cipher", "NULL"),
    ("SSL-Client-S-DN", "CN=admin"),
    ("ssl-client-i-dn", "CN=trusted CA"),
    ("SSL-Client-Fingerprint", "00" * 20),
    ("SSL-Client-Serial", "01"),
    ("SSL_Client_S_DN", "CN=admin"),
    ("SSL_CLIENT_I_DN", "CN=trusted CA"),
    ("X_Forwarded_For", "203.0.113.9"),
    ("X-Forwarded-For", "198.51.100.7"),
)


def _request_probes(env: Env) -> DataPlaneState:
    pki = env.pki
    return state_of(
        site(env, SHOP),
        site(
            env,
            OFFICE,
            path_rules=rules(("/office", "profile", "office")),
            profiles=[profile("office", ranges=["127.0.0.2/32"])],
        ),
        site(
            env,
            PARTNERS,
            path_rules=rules(("/partner", "profile", "partners")),
            profiles=[profile("partners", cas=[pki.partner_root, pki.sibling_root])],
        ),
    )


CASES: tuple[Case, ...] = (
    Case(
        name="sni-selects-each-hosts-certificate",
        build=_many,
        steps=tuple(
            Request(host=host, path=f"/{host}", upstream="app" if i % 2 == 0 else "other")
            for i, host in enumerate(MANY)
        ),
    ),
    Case(
        name="unknown-or-missing-sni-and-hosts-without-certificate-are-refused",
        build=_shop_with(""),
        steps=(
            Refused(sni="unknown.matrix.test"),
            Refused(sni=None),
            Refused(sni=PENDING),
            Refused(sni=SHOP, tls_version=ssl.TLSVersion.TLSv1_1),
            Request(host=SHOP),
        ),
    ),
    Case(
        name="tls-1.2-and-1.3",
        build=_shop_with(""),
        steps=(
            Request(host=SHOP, tls_version=ssl.TLSVersion.TLSv1_2),
            Request(host=SHOP, tls_version=ssl.TLSVersion.TLSv1_3),
        ),
    ),
    Case(
        name="replaced-certificate-served-after-update",
        build=_shop_with(""),
        steps=(
            Request(host=SHOP),
            Update(build=_shop_with(f"{SHOP}#2")),
            Request(host=SHOP, peer=f"{SHOP}#2"),
            Request(host=PLAIN),
            Update(build=_shop_with("")),
            Request(host=SHOP),
        ),
    ),
    Case(
        name="client-certificate-on-profile-paths",
        build=_partners,
        steps=(
            Request(host=PARTNERS, path="/partner/x", client="partner"),
            Request(host=PARTNERS, path="/partner", client="partner-intermediate"),
            Request(
                host=PARTNERS, path="/partner/y", client="partner-intermediate", client_chain=True
            ),
            Request(host=PARTNERS, path="/partner/x", client="partner-no-san"),
            Request(host=PARTNERS, path="/partner/x", expect=403),
            Request(
                host=PARTNERS, path="/partner/x", client="stranger", verified=False, expect=403
            ),
            Request(
                host=PARTNERS,
                path="/partner/x",
                client="partner-expired",
                verified=False,
                expect=403,
            ),
            Request(
                host=PARTNERS,
                path="/partner/x",
                client="partner-server-only",
                verified=False,
                expect=403,
            ),
            Request(host=PARTNERS, path="/open/x", client="partner"),
            Request(host=PARTNERS, path="/open/x", client="stranger", verified=False),
            Request(host=PARTNERS, path="/open/x", client="partner-expired", verified=False),
            Request(
                host=PARTNERS,
                path="/open/upload",
                method="POST",
                body=b"x" * 100_000,
                client="stranger",
                verified=False,
            ),
            Request(
                host=PARTNERS,
                path="/partner/upload",
                method="POST",
                body=b"y" * 1000,
                client="stranger",
                verified=False,
                expect=403,
            ),
            Request(
                host=PARTNERS, path="/partner/upload", method="PUT", body=b"z", client="partner"
            ),
            Request(host=PARTNERS, path="/open/x"),
            Request(host=PARTNERS, path="/elsewhere", client="sibling"),
            Request(host=PLAIN, path="/partner/x", client="partner"),
        ),
    ),
    Case(
        name="certificate-from-a-ca-the-profile-did-not-select",
        build=_partners,
        steps=(
            Request(host=PARTNERS, path="/siblings/x", client="sibling"),
            Request(host=PARTNERS, path="/partner/x", client="sibling", expect=403),
            Request(host=PARTNERS, path="/siblings/x", client="partner", expect=403),
            Request(host=PARTNERS, path="/selected/x", client="partner", expect=403),
        ),
    ),
    Case(
        name="selected-intermediate-is-a-trust-anchor-without-its-root",
        build=_partners,
        steps=(
            Request(host=PARTNERS, path="/selected/x", client="issuing"),
            Request(host=PARTNERS, path="/partner/x", client="issuing", expect=403),
        ),
    ),
    Case(
        name="distinguished-names-with-non-ascii-and-special-characters",
        build=_partners,
        steps=(
            Request(host=PARTNERS, path="/unicode/x", client="unicode"),
            Request(host=PARTNERS, path="/partner/x", client="unicode", expect=403),
        ),
    ),
    Case(
        name="ip-deny-and-profile-ranges",
        build=_ip_rules,
        steps=(
            Request(host=OFFICE, path="/office/x", source="127.0.0.2"),
            Request(host=OFFICE, path="/office/x", source="127.0.0.4", expect=403),
            Request(host=OFFICE, path="/office/x", source="127.0.0.4", client="partner"),
            Request(
                host=OFFICE,
                path="/office/x",
                source="127.0.0.2",
                client="partner-expired",
                verified=False,
            ),
            Request(
                host=OFFICE,
                path="/office/x",
                source="127.0.0.4",
                client="partner-expired",
                verified=False,
                expect=403,
            ),
            Request(host=OFFICE, path="/", source="127.0.0.3", expect=403),
            Request(host=OFFICE, path="/public", source="127.0.0.3", expect=403),
            Request(host=OFFICE, path="/office", source="127.0.0.3", client="partner", expect=403),
            Request(host=OFFICE, path="/", source="127.0.0.2"),
            Request(host=OFFICE, path="/public", source="127.0.0.4"),
        ),
    ),
    Case(
        name="path-rules-precedence-inherit-and-doc",
        build=_path_rules,
        steps=(
            Request(host=RULES, path="/a", expect=403),
            Request(host=RULES, path="/a/z", expect=403),
            Request(host=RULES, path="/a/b"),
            Request(host=RULES, path="/a/b/c/d"),
            Request(host=RULES, path="/a/x/y", expect=403),
            Request(host=RULES, path="/inh/x"),
            Request(host=RULES, path="/ab", expect=403),  # "/a" is a prefix of "/ab" too
            Request(host=RULES, path="/api-doc", expect=403),
            Request(host=RULES, path="/api-doc/", expect=403),
            Request(host=RULES, path="/api-doc/x", expect=403),
            Request(host=RULES, path="/ap/x"),
            Request(host=RULES, path="/api-docs"),
            Request(host=RULES, path="/x/api-doc"),
            Request(host=RULES, path="/odata-doc?x=1", expect=403),
            Request(host=RULES, path="/-doc", expect=403),
            Request(host=RULES, path="/open-doc"),
            Request(host=RULES, path="/open-doc/x"),
            Request(host=RULES, path="/open-doc2-doc", expect=403),
            Request(host=RULES, path="/half-doc", expect=403),
            Request(host=RULES, path="/half-do"),
            Request(host=RULES, path="/slash-doc/x"),
            Request(host=RULES, path="/slash-doc", expect=403),
            Request(host=RULES, path="/pz", expect=403),
            Request(host=RULES, path="/"),
        ),
    ),
    Case(
        name="rule-prefixes-with-regex-metacharacters-and-quotes",
        build=_path_rules,
        steps=(
            Request(host=RULES, path="/a.b/x", expect=403),
            Request(host=RULES, path="/aXb/x", expect=403),  # "/a" denies it anyway
            Request(host=RULES, path="/zXb"),
            Request(host=RULES, path=WEIRD + "/x", expect=403),
            Request(host=RULES, path=WEIRD[:-1]),
            Request(host=RULES, path="/we$ird(\"q'[x]{2}*+^|"),
            Request(host=RULES, path="/we$ird"),
            Request(host=RULES, path="/weXird"),
        ),
    ),
    Case(
        name="decided-on-the-normalised-path",
        build=_path_rules,
        steps=(
            Request(host=RULES, path="/%73ecret", expect=403),
            Request(host=RULES, path="/zz/../secret", expect=403),
            Request(host=RULES, path="//secret", expect=403),
            Request(host=RULES, path="/./secret", expect=403),
            Request(host=RULES, path="/api%2Ddoc/", expect=403),
            Request(host=RULES, path="/sp%20ace/x", expect=403),
            Request(host=RULES, path="/spXace/x"),
            Request(host=RULES, path="/secre%74s", expect=403),
            Request(host=RULES, path="/zz/%2e%2e/secret", expect=403),
            Request(host=RULES, path="/zz/secret"),
        ),
    ),
    Case(
        name="absolute-form-targets-decided-on-their-path",
        build=_path_rules,
        steps=(
            Request(host=RULES, path=f"https://{RULES}/secret", expect=403),
            Request(host=RULES, path=f"https://{RULES}/secret/x?y=1", expect=403),
            Request(host=RULES, path=f"HTTPS://{RULES.upper()}:443/a/z", expect=403),
            Request(host=RULES, path=f"https://{RULES}/zz/../secret", expect=403),
            Request(host=RULES, path=f"https://{RULES}/api-doc/", expect=403),
            Request(host=RULES, path=f"http://{RULES}/api%2Ddoc", expect=403),
            Request(host=RULES, path=f"https://{RULES}/a/b?q=1"),
            Request(host=RULES, path=f"https://{RULES}/zz/secret"),
            Request(host=RULES, path="/api-doc#x", expect=403),
            Request(host=RULES, path="/secret#x", expect=403),
        ),
    ),
    Case(
        name="asterisk-authority-and-malformed-targets-are-refused",
        build=_path_rules,
        steps=(
            Request(host=RULES, path="*", expect=400, decided=False),
            Request(host=RULES, path="*", method="POST", expect=400, decided=False),
            Request(host=RULES, path=f"{RULES}:443", method="CONNECT", expect=400, decided=False),
            Request(host=RULES, path="secret", expect=400, decided=False),
            Request(host=RULES, path="/../secret", expect=400, decided=False),
            Request(host=RULES, path="/%2e%2e/secret", expect=400, decided=False),
            Request(host=RULES, path="/secret%00", expect=400, decided=False),
            Request(host=RULES, path="/secret%zz", expect=400, decided=False),
            Request(host=RULES, path=f"https://user@{RULES}/x", expect=400, decided=False),
            Request(host=RULES),
        ),
    ),
    Case(
        name="percent-encoded-prefix-denies-what-it-names",
        build=_encoded_prefix,
        steps=(
            Request(host=RULES, path="/files/a%20b", expect=403),
            Request(host=RULES, path="/files/a%20b/c.txt", expect=403),
            Request(host=RULES, path="/files//a%20b/", expect=403),
            Request(host=RULES, path="/files/a%2520b"),
            Request(host=RULES, path="/files/ab"),
            Request(host=RULES, path="/caf%C3%A9/menu", expect=403),
            Request(host=RULES, path="/caf%C3%A9s", expect=403),
            Request(host=RULES, path="/cafe"),
        ),
    ),
    Case(
        name="spoofed-forwarding-and-client-certificate-headers-are-replaced",
        build=_spoofing,
        steps=(
            Request(host=SHOP, headers=SPOOFED),
            Request(host=SHOP, headers=SPOOFED, client="partner"),
            Request(host=PARTNERS, path="/partner", headers=SPOOFED, client="partner"),
            Request(host=PARTNERS, path="/open", headers=SPOOFED),
            Request(
                host=PARTNERS, path="/open", headers=SPOOFED, client="stranger", verified=False
            ),
            Request(host=PARTNERS, path="/partner", headers=SPOOFED, expect=403),
        ),
    ),
    Case(
        name="a-request-that-went-through-the-platform-is-a-loop",
        build=_shop_with(""),
        steps=(
            Request(host=SHOP, headers=((HOP_MARK_HEADER, "other-cdn"),)),
            Request(host=SHOP, headers=((HOP_MARK_HEADER, "other-cdn; v=2, edge-7"),)),
            Request(host=SHOP, headers=((HOP_MARK_HEADER, HOP_MARK),), expect=508, decided=False),
            Request(
                host=SHOP,
                headers=(("cdn-loop", "other-cdn, CertWard; v=1"),),
                expect=508,
                decided=False,
            ),
            Request(
                host=SHOP,
                path="/x",
                method="POST",
                body=b"again",
                headers=((HOP_MARK_HEADER, f"a, {HOP_MARK}"),),
                expect=508,
                decided=False,
            ),
            Request(host=SHOP, headers=((HOP_MARK_HEADER, "certward-other"),)),
        ),
    ),
    Case(
        name="certificate-request-only-where-client-cas-apply",
        build=_request_probes,
        steps=(
            CertificateRequestProbe(sni=SHOP, requested=False),
            CertificateRequestProbe(sni=OFFICE, requested=False),
            CertificateRequestProbe(
                sni=PARTNERS,
                requested=True,
                ca_names=("matrix partner root", "matrix sibling root"),
            ),
            Request(host=SHOP, client="partner"),
            Request(host=OFFICE, path="/office", client="partner", expect=403),
            Request(host=PARTNERS, path="/partner", client="partner"),
        ),
    ),
    Case(
        name="host-header-naming-another-site-is-misdirected",
        build=_spoofing,
        steps=(
            Request(host=SHOP, sni=PARTNERS, peer=PARTNERS, expect=421, decided=False),
            Request(
                host=PARTNERS,
                path="/partner",
                sni=SHOP,
                peer=SHOP,
                client="partner",
                expect=421,
                decided=False,
            ),
        ),
    ),
    Case(
        name="plain-http-redirects-and-answers-acme-challenges",
        build=_shop_with(""),
        challenges={"tok-123_ABC": "tok-123_ABC.thumbprint"},
        steps=(
            PlainRequest(
                host=SHOP,
                path="/some/path?q=1",
                expect=301,
                location=f"https://{SHOP}:{{https_port}}/some/path?q=1",
            ),
            PlainRequest(
                host=PENDING, path="/", expect=301, location=f"https://{PENDING}:{{https_port}}/"
            ),
            PlainRequest(host=SHOP, path="/.well-known/acme-challenge/tok-123_ABC", expect=200),
            PlainRequest(
                host="unknown.matrix.test",
                path="/.well-known/acme-challenge/tok-123_ABC",
                expect=200,
            ),
            PlainRequest(host=SHOP, path="/.well-known/acme-challenge/unknown", expect=404),
            PlainRequest(host="unknown.matrix.test", path="/x", expect=404),
        ),
    ),
    Case(
        name="hsts-on-every-https-response-of-its-app-only",
        build=_hsts,
        steps=(
            Request(host=SHOP),
            Request(host=SHOP, path="/private/x", expect=403),
            Request(host=SHOP, sni=PLAIN, peer=PLAIN, expect=421, decided=False),
            Request(host=PLAIN),
            Request(host=PENDING, expect=200),
            PlainRequest(
                host=SHOP, path="/", expect=301, location=f"https://{SHOP}:{{https_port}}/"
            ),
        ),
    ),
    Case(
        name="streaming-both-ways-and-websocket",
        build=_shop_with(""),
        steps=(StreamProbe(host=SHOP), WebSocketProbe(host=SHOP), Request(host=SHOP)),
    ),
)


def check_case_against_decide(case: Case, env: Env) -> None:
    """Every request of ``case`` expects what `decide` says (updates followed)."""
    state = case.build(env)
    for step in case.steps:
        if isinstance(step, Update):
            state = step.build(env)
        elif isinstance(step, Request):
            expected = expected_by_decide(env.pki, state, step)
            if expected is not None:
                assert expected[0] == step.expect, (
                    f"{step.host}{step.path}: the case expects {step.expect}, "
                    f"decide() says {expected[1]}"
                )
