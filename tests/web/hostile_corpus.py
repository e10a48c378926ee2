"""Names that attack the page showing them, and an installation full of them.

Certificates carry text their issuer chose: subjects, issuers and SANs (and people type
descriptions and path prefixes). Each payload below would run script, or change what
is displayed, if the console wrote it into the page as markup. Every script payload
sets ``window.__xss``, so a browser test can tell that nothing ran.

RFC 4514 escapes ``<`` and ``>`` in subjects with a backslash; the ``;//`` in the
image payload makes it run anyway if unescaped (the trailing backslash becomes a
comment), so the subjects are as dangerous as the SANs.
"""

from __future__ import annotations

from dataclasses import dataclass

from certward.dataplane.state import RuleKind
from certward.platform import Platform
from certward.services import (
    access_profiles,
    apps,
    authorities,
    client_certificates,
    domains,
    path_rules,
    tls_certificates,
    tokens,
)
from certward.services.uploads import Upload
from certward.snapshot import PathRuleState
from certward.vocabulary import Plan, Role
from tests.material.factory import TestCA
from tests.web.conftest import OPERATOR

SCRIPT = "<script>window.__xss=1</script>"
IMAGE = '"><img src=x onerror=window.__xss=1;//>'
TEMPLATE = "{{7*7}}"
RTL = "\u202egpj.exe"  # displays as "exe.jpg" without care
SVG_PATH = "/<svg/onload=window.__xss=1>"
SAN = "<img src=x onerror=window.__xss=1>.example.com"

RAW_MARKUP = ("<script>window", "<img src=x", "<svg/onload", "<svg onload")
"""Substrings that must never reach a page unescaped."""

APP = "evil"
ENV = "prod"
PROFILE = "office"


@dataclass(frozen=True, slots=True, kw_only=True)
class HostileInstallation:
    """Ids of what `populate` stored, to build the URLs of every page showing them."""

    client_certificate_id: str
    authority_id: str
    tls_certificate_id: str

    @property
    def pages(self) -> list[str]:
        env = f"/apps/{APP}/environments/{ENV}"
        return [
            "/apps",
            f"/apps/{APP}",
            env,
            f"{env}/client-certificates/{self.client_certificate_id}",
            f"{env}/authorities/{self.authority_id}",
            f"{env}/domains",
            f"{env}/access",
            f"{env}/versions",
            f"/apps/{APP}/tls-certificates",
            f"/apps/{APP}/tls-certificates/{self.tls_certificate_id}",
            f"/apps/{APP}/access-profiles",
            f"/apps/{APP}/access-profiles/{PROFILE}",
            f"/apps/{APP}/ip-deny-profiles",
            "/platform/certificates",
            "/platform/audit",
            "/platform/tokens",
        ]


def populate(platform: Platform) -> HostileInstallation:
    """An app whose every certificate field, description, prefix and token description
    is hostile."""
    ctx = platform.context
    apps.create_app(ctx, OPERATOR, name=APP, plan=Plan.LICENSED)
    apps.create_environment(ctx, OPERATOR, APP, name=ENV, upstream="http://10.0.0.10:8080")
    root = TestCA.root(name=SCRIPT)
    issuing = root.intermediate(name=f"{RTL} {TEMPLATE}")
    client = issuing.issue_leaf(IMAGE, eku=["clientAuth"])
    uploaded = client_certificates.upload(
        ctx,
        OPERATOR,
        APP,
        ENV,
        file=Upload(filename="client.p12", data=client.pkcs12("secret")),
        password=b"secret",
        description=f"{SCRIPT} {TEMPLATE} {RTL}",
        pins=["partner.example.com"],
    )
    authority = authorities.upload(
        ctx,
        OPERATOR,
        APP,
        ENV,
        file=Upload(filename="ca.pem", data=root.cert_pem() + issuing.cert_pem()),
    )
    site = issuing.issue_leaf(
        f"{TEMPLATE}{IMAGE}"[:64], sans=["shop.example.com", SAN], eku=["serverAuth"]
    )
    tls = tls_certificates.upload(
        ctx,
        OPERATOR,
        APP,
        certificate=Upload(filename="site.pem", data=site.cert_pem()),
        chain=Upload(filename="chain.pem", data=issuing.cert_pem() + root.cert_pem()),
        private_key=Upload(filename="site.key", data=site.key_pem()),
        description=IMAGE,
    )
    domains.add_custom_domain(
        ctx, OPERATOR, APP, ENV, hostname="shop.example.com", certificate_id=tls.id
    )
    access_profiles.ACCESS_PROFILES.create(
        ctx, OPERATOR, APP, name=PROFILE, ip_ranges=["10.0.0.0/8"]
    )
    access_profiles.upload_client_cas(
        ctx,
        OPERATOR,
        APP,
        PROFILE,
        file=Upload(filename="cas.pem", data=root.cert_pem() + issuing.cert_pem()),
    )
    path_rules.replace_path_rules(
        ctx,
        OPERATOR,
        APP,
        ENV,
        [
            PathRuleState(prefix=SVG_PATH, rule=RuleKind.DENY_ALL),
            PathRuleState(prefix="/", rule=RuleKind.PROFILE, profile=PROFILE),
        ],
    )
    tokens.create_token(
        ctx,
        OPERATOR,
        role=Role.RUNTIME,
        app_name=APP,
        environment_name=ENV,
        description=f"{SCRIPT} {IMAGE} {TEMPLATE} {RTL}",
    )
    return HostileInstallation(
        client_certificate_id=uploaded.id,
        authority_id=authority.id,
        tls_certificate_id=tls.id,
    )
