"""Cost of certward's full client-certificate judgement vs a bare pyca PKCS12 load.

Both sides open the same file with the same password. certward's side does everything
an upload does: size cap, DER pre-parse with iteration caps, pyca load, forcing the
lazily parsed certificate fields, chain ordering, every check, and strict path
verification. Files are written as OpenSSL 3 writes them (PBES2/AES-256, PBKDF2 and
MAC at 2048 iterations) or in the legacy profile (3DES, SHA-1 MAC), holding either the
leaf alone (what `openssl pkcs12 -export` writes without -certfile) or the leaf with
its intermediate and root. Target: ratio <= 1.3 for EC keys.

With a chain inside, certward also verifies the path with
cryptography.x509.verification: two ECDSA signature checks (~85 us each here) that
a bare load never performs, which is where the chain rows spend their extra time.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import pkcs12

from _harness import compare, row
from certward.pki.checks import Purpose, judge
from certward.pki.convert import Pkcs12Profile, to_pkcs12
from certward.pki.material import load_material
from tests.material.factory import NOW, TestCA

PASSWORD = b"benchmark password"


def main() -> None:
    print(__doc__.splitlines()[0])
    root = TestCA.root(key_type="ec-p256")
    for key_type, target in (("ec-p256", 1.3), ("rsa-2048", None)):
        intermediate = root.intermediate(key_type="ec-p256")
        leaf = intermediate.issue_leaf("client", eku=["clientAuth"], key_type=key_type)
        for profile, with_chain in [(p, c) for c in (False, True) for p in Pkcs12Profile]:
            data = to_pkcs12(
                private_key=leaf.private_key,
                certificate=leaf.certificate,
                chain=leaf.chain if with_chain else (),
                password=PASSWORD,
                profile=profile,
            )

            def full(data: bytes = data) -> None:
                material = load_material(data, password=PASSWORD)
                verdict = judge(material, at=NOW, purpose=Purpose.CLIENT_CERTIFICATE)
                assert verdict.ok, verdict.problems

            def bare(data: bytes = data) -> None:
                pkcs12.load_pkcs12(data, PASSWORD)

            calls = 5 if key_type.startswith("rsa") else 50
            ours, baseline = compare(full, bare, calls=calls)
            contents = "leaf+chain" if with_chain else "leaf only"
            label = f"{key_type} {profile.value} {contents} ({len(data)} B)"
            print(row(label, ours, baseline, target if profile is Pkcs12Profile.MODERN else None))


if __name__ == "__main__":
    main()
