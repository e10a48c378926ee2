"""Reloading a stored RSA key: certward's stored-key path vs pyca's validating load.

pyca validates RSA private keys on every load (tens of milliseconds for RSA-2048).
certward validates once, at upload; keys reloaded from its own encrypted store (bundle
builds, gateway start) go through load_stored_private_key, which skips that check.
The ratio shows what each reload saves.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from _harness import compare, row
from certward.pki.convert import private_key_der
from certward.pki.material import load_stored_private_key


def main() -> None:
    print(__doc__.splitlines()[0])
    keys = [
        ("rsa-2048", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("rsa-4096", rsa.generate_private_key(public_exponent=65537, key_size=4096)),
        ("ec-p256", ec.generate_private_key(ec.SECP256R1())),
    ]
    for label, key in keys:
        der = private_key_der(key)

        def stored(der: bytes = der) -> None:
            load_stored_private_key(der)

        def validating(der: bytes = der) -> None:
            serialization.load_der_private_key(der, password=None)

        calls = 3 if label == "rsa-4096" else 20
        ours, baseline = compare(stored, validating, calls=calls, batches=7)
        print(row(f"{label} stored reload vs validating load", ours, baseline))


if __name__ == "__main__":
    main()
