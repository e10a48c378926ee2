"""Time to refuse hostile PKCS12 files vs what pyca alone would spend opening them.

Each file is ~1 KB and claims 2^31-1 iterations in one place (the MAC, the key bag's
PBKDF2, the certificate safe's PBKDF2). certward's guard must refuse it in < 50 ms.
pyca's cost is measured on the same file rewritten to a count it can finish
(2^18), then extrapolated linearly to 2^31-1: the work is one hash chain per count.
A fourth file hides the key bag's 2^31-1 inside the encrypted certificate safe: the
guard decrypts the safe (2048 iterations) to see it.

Second figure: the CPU of the wrong-password explanation (checking the MAC) of a file
at the MAC cap, with a wrong and with an empty password, for each MAC hash; target
<= 50 ms. ``native KDF`` says whether the RFC 7292 KDF ran in libcrypto.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable

from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography.hazmat.primitives.serialization import pkcs12

from _harness import per_call_seconds
from certward.errors import MaterialError
from certward.pki.limits import DEFAULT_MAX_MAC_ITERATIONS
from certward.pki.material import load_material
from certward.pki.pkcs12_crypto import native_kdf_available
from tests.material import hostile

PROBE = 2**18
TARGET_SECONDS = 0.050


def refuse_seconds(data: bytes) -> float:
    def attempt() -> None:
        try:
            load_material(data, password=hostile.HOSTILE_PASSWORD.encode())
        except MaterialError as exc:
            if exc.code != "too-expensive":
                raise AssertionError(f"refused as {exc.code}, not too-expensive") from exc
        else:
            raise AssertionError("the hostile file was accepted")

    return statistics.median(per_call_seconds(attempt, 20) for _ in range(5))


def pyca_seconds(data: bytes) -> float:
    start = time.perf_counter()
    # The rewritten MAC no longer verifies; the rounds are spent all the same.
    with contextlib.suppress(ValueError):
        pkcs12.load_pkcs12(data, hostile.HOSTILE_PASSWORD.encode())
    return time.perf_counter() - start


def wrong_password_cpu(data: bytes, password: bytes | None) -> float:
    """Median CPU seconds of refusing ``data`` with ``password`` as ``wrong-password``."""
    samples = []
    for _ in range(7):
        start = time.process_time()
        try:
            load_material(data, password=password)
        except MaterialError as exc:
            if exc.code != "wrong-password":
                raise AssertionError(f"refused as {exc.code}, not wrong-password") from exc
        else:
            raise AssertionError("the wrong password was accepted")
        samples.append(time.process_time() - start)
    return statistics.median(samples)


def explanations() -> None:
    print(f"wrong-password explanation at the MAC cap ({DEFAULT_MAX_MAC_ITERATIONS:,}), "
          f"native KDF: {native_kdf_available()}")  # fmt: skip
    base = asn1_pkcs12.Pfx.load(hostile.base_pkcs12())
    for mac_hash in ("sha1", "sha256", "sha512"):
        data = hostile.assemble_pfx(
            list(base.authenticated_safe),
            password=hostile.HOSTILE_PASSWORD,
            mac_iterations=DEFAULT_MAX_MAC_ITERATIONS,
            mac_hash=mac_hash,
        )
        for label, password in (("wrong", b"not the password"), ("empty", None)):
            cpu = wrong_password_cpu(data, password)
            verdict = "ok" if cpu <= TARGET_SECONDS else f"ABOVE {TARGET_SECONDS * 1e3:.0f} ms"
            print(f"  MAC {mac_hash:<7} {label} password: {cpu * 1e3:6.2f} ms CPU ({verdict})")


def main() -> None:
    print(__doc__.splitlines()[0])
    base = hostile.base_pkcs12()
    builders: list[tuple[str, Callable[..., bytes]]] = [
        ("MAC iterations", hostile.huge_mac_iterations),
        ("key bag PBKDF2 iterations", hostile.huge_key_bag_iterations),
        ("certificate safe PBKDF2 iterations", hostile.huge_cert_bag_iterations),
    ]
    for label, build in builders:
        data = build(base, iterations=hostile.MAX_ITERATIONS)
        refused = refuse_seconds(data)
        probe = pyca_seconds(build(base, iterations=PROBE))
        extrapolated = probe * hostile.MAX_ITERATIONS / PROBE
        verdict = "ok" if refused < TARGET_SECONDS else f"ABOVE {TARGET_SECONDS * 1e3:.0f} ms"
        print(
            f"{label:<36} {len(data):5d} B  refused in {refused * 1e3:7.3f} ms ({verdict}); "
            f"pyca alone: ~{extrapolated / 60:5.1f} min (2^18 took {probe * 1e3:.0f} ms)"
        )
    inside = hostile.kdf_inside_encrypted_safe()
    refused = refuse_seconds(inside)
    probe = pyca_seconds(hostile.kdf_inside_encrypted_safe(iterations=PROBE))
    extrapolated = probe * hostile.MAX_ITERATIONS / PROBE
    verdict = "ok" if refused < TARGET_SECONDS else f"ABOVE {TARGET_SECONDS * 1e3:.0f} ms"
    print(
        f"{'key bag 2^31-1 inside the encrypted safe':<36} {len(inside):5d} B  refused in "
        f"{refused * 1e3:7.3f} ms ({verdict}); pyca alone: ~{extrapolated / 60:5.1f} min"
    )
    explanations()


if __name__ == "__main__":
    main()
