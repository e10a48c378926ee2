"""Restart (apply) time of an environment with 50 client certificates and 50 CAs.

Each restart validates every certificate again with its decrypted key, freezes a
new version, and writes the whole runtime bundle (PKCS12 and PEM per certificate,
truststore, settings) with fsyncs, then switches ``current``. Baseline, measured in
the same run: the bare serialization of the same PKCS12 files and truststore with
pyca (what any bundle must pay). Target: apply < 1 s in the modern profile.
"""

from __future__ import annotations

import statistics
import tempfile
import time

from _harness import per_call_seconds
from certward.authorization import Principal
from certward.bundles.files import new_password
from certward.pki.convert import Pkcs12Profile, to_java_truststore, to_pkcs12
from certward.platform import open_platform
from certward.services import apps, authorities, client_certificates, staging
from certward.services.uploads import Upload
from certward.settings import Settings
from certward.vocabulary import Plan, Role
from tests.material.factory import TestCA

CERTIFICATES = 50
AUTHORITIES = 50
ROUNDS = 5
TARGET_SECONDS = 1.0
ADMIN = Principal(token_id=None, role=Role.ADMIN)


def main() -> None:
    print(__doc__.splitlines()[0])
    with tempfile.TemporaryDirectory() as data_dir:
        platform = open_platform(Settings.from_env({"CERTWARD_DATA_DIR": data_dir}))
        context = platform.context
        apps.create_app(context, ADMIN, name="bench", plan=Plan.LICENSED)
        apps.create_environment(
            context, ADMIN, "bench", name="production", upstream="http://10.0.0.1:9"
        )
        issuer = TestCA.root(name="bench issuing CA").intermediate(name="bench intermediate")
        leaves = [
            issuer.issue_leaf(
                f"client-{n}", eku=["clientAuth"], key_type="rsa-2048" if n % 5 == 0 else "ec-p256"
            )
            for n in range(CERTIFICATES)
        ]
        for number, leaf in enumerate(leaves):
            client_certificates.upload(
                context,
                ADMIN,
                "bench",
                "production",
                file=Upload(filename="c.p12", data=leaf.pkcs12("pw")),
                password=b"pw",
                pins=[f"partner-{number}.example.com"],
                call_name=f"call-{number}",
            )
        cas = [TestCA.root(name=f"trusted CA {n}") for n in range(AUTHORITIES)]
        for ca in cas:
            authorities.upload(
                context,
                ADMIN,
                "bench",
                "production",
                file=Upload(filename="ca.pem", data=ca.cert_pem()),
            )
        for profile in Pkcs12Profile:
            apply_times: list[float] = []
            for round_ in range(ROUNDS):
                apps.update_environment(
                    context, ADMIN, "bench", "production", pkcs12_profile=profile
                )
                client_certificates.update_certificate(
                    context,
                    ADMIN,
                    "bench",
                    "production",
                    client_certificates.list_certificates(context, ADMIN, "bench", "production")[
                        0
                    ].id,
                    description=f"{profile.value} round {round_}",
                )
                start = time.perf_counter()
                staging.restart(context, ADMIN, "bench", "production")
                apply_times.append(time.perf_counter() - start)

            def bare(profile: Pkcs12Profile = profile) -> None:
                for leaf in leaves:
                    to_pkcs12(
                        private_key=leaf.private_key,
                        certificate=leaf.certificate,
                        chain=leaf.chain,
                        password=new_password().encode(),
                        profile=profile,
                    )
                to_java_truststore(
                    [ca.certificate for ca in cas], password=b"bench", profile=profile
                )

            baseline = statistics.median(per_call_seconds(bare, 1) for _ in range(ROUNDS))
            applied = statistics.median(apply_times)
            verdict = ""
            if profile is Pkcs12Profile.MODERN:
                verdict = "  ok" if applied < TARGET_SECONDS else f"  ABOVE {TARGET_SECONDS:.0f} s"
            print(
                f"{profile.value:<7} apply {applied * 1e3:7.1f} ms vs bare PKCS12 serialization "
                f"{baseline * 1e3:7.1f} ms: ratio {applied / baseline:5.2f}x{verdict}"
            )
        platform.close()


if __name__ == "__main__":
    main()
