"""Material as the ``openssl`` command writes it: every PKCS12 variant, PEM, DER, PKCS7.

Each file is made by OpenSSL 3.0 (``tests.material.openssl_cli``), the way users make
them, and read back with ``load_material``. What a file should report follows from
the options it was made with (``Pkcs12Variant``'s descriptions): OpenSSL 3.0 applies
2048 iterations to every KDF and the MAC unless told otherwise.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs7

from certward.errors import MaterialError
from certward.pki.material import Material, MaterialKind, combine, load_material
from certward.pki.pkcs12_structure import Pkcs12Encryption
from certward.pki.problems import ProblemCode
from tests.material.factory import IssuedCert, KeyType, TestCA
from tests.material.openssl_cli import (
    COMMA_PASSWORD,
    DEFAULT_PASSWORD,
    FRIENDLY_NAME,
    UNICODE_PASSWORD,
    OpenSSLCli,
    Pkcs12Variant,
)

OPENSSL_DEFAULT_ITERATIONS = 2048
WRONG_PASSWORD = b"not-the-password"

Make = Callable[[OpenSSLCli, IssuedCert], bytes]


@dataclass(frozen=True, slots=True, kw_only=True)
class Expected:
    """What a variant's ``Pkcs12Details`` must say."""

    encryption: Pkcs12Encryption
    mac_algorithm: str | None
    mac_iterations: int | None


EXPECTED: dict[Pkcs12Variant, Expected] = {
    Pkcs12Variant.DEFAULT: Expected(
        encryption=Pkcs12Encryption.MODERN,
        mac_algorithm="sha256",
        mac_iterations=OPENSSL_DEFAULT_ITERATIONS,
    ),
    Pkcs12Variant.LEGACY: Expected(
        encryption=Pkcs12Encryption.LEGACY,
        mac_algorithm="sha1",
        mac_iterations=OPENSSL_DEFAULT_ITERATIONS,
    ),
    Pkcs12Variant.TRIPLE_DES: Expected(
        encryption=Pkcs12Encryption.LEGACY,
        mac_algorithm="sha1",
        mac_iterations=OPENSSL_DEFAULT_ITERATIONS,
    ),
    Pkcs12Variant.RC2_40: Expected(
        encryption=Pkcs12Encryption.LEGACY,
        mac_algorithm="sha1",
        mac_iterations=OPENSSL_DEFAULT_ITERATIONS,
    ),
    Pkcs12Variant.NO_MAC: Expected(
        encryption=Pkcs12Encryption.MODERN, mac_algorithm=None, mac_iterations=None
    ),
    Pkcs12Variant.NO_MAC_ITERATION: Expected(
        encryption=Pkcs12Encryption.MODERN, mac_algorithm="sha256", mac_iterations=1
    ),
    Pkcs12Variant.NO_ENCRYPTION: Expected(
        encryption=Pkcs12Encryption.NONE,
        mac_algorithm="sha256",
        mac_iterations=OPENSSL_DEFAULT_ITERATIONS,
    ),
    Pkcs12Variant.PLAINTEXT: Expected(
        encryption=Pkcs12Encryption.NONE, mac_algorithm=None, mac_iterations=None
    ),
}
WITH_MAC = [variant for variant, expected in EXPECTED.items() if expected.mac_algorithm]
PASSWORDS = {
    "ascii": DEFAULT_PASSWORD,
    "unicode": UNICODE_PASSWORD,
    "comma": COMMA_PASSWORD,
    "empty": "",
}


@pytest.fixture(scope="module")
def intermediate() -> TestCA:
    return TestCA.root(name="openssl variants root").intermediate(
        name="openssl variants intermediate"
    )


@pytest.fixture(scope="module")
def ec_leaf(intermediate: TestCA) -> IssuedCert:
    return intermediate.issue_leaf("ec.example.test")


@pytest.fixture(scope="module")
def rsa_leaf(intermediate: TestCA) -> IssuedCert:
    return intermediate.issue_leaf("rsa.example.test", key_type=KeyType.RSA_2048)


@pytest.fixture(params=["ec", "rsa"])
def leaf(request: pytest.FixtureRequest, ec_leaf: IssuedCert, rsa_leaf: IssuedCert) -> IssuedCert:
    """An EC P-256 and an RSA-2048 leaf, each under an intermediate and a root."""
    return ec_leaf if request.param == "ec" else rsa_leaf


def public_der(key: PrivateKeyTypes | None) -> bytes:
    assert key is not None, "no private key was loaded"
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def fingerprints(certificates: tuple[x509.Certificate, ...]) -> set[bytes]:
    return {c.fingerprint(hashes.SHA256()) for c in certificates}


def refusal(
    data: bytes, *, password: bytes | None = None, expect_pkcs12: bool = False
) -> MaterialError:
    """The MaterialError ``load_material`` raises for ``data``."""
    with pytest.raises(MaterialError) as caught:
        load_material(data, password=password, expect_pkcs12=expect_pkcs12)
    return caught.value


def assert_holds(material: Material, leaf: IssuedCert) -> None:
    """The material is the leaf with its own key, and the chain in leaf-to-root order."""
    assert material.certificates == leaf.full_chain
    assert public_der(material.private_key) == public_der(leaf.private_key)


# -- PKCS12 -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(Pkcs12Variant), ids=lambda v: v.name)
@pytest.mark.parametrize("password", PASSWORDS.values(), ids=PASSWORDS.keys())
def test_every_pkcs12_variant_loads_with_its_details(
    openssl_cli: OpenSSLCli, ec_leaf: IssuedCert, variant: Pkcs12Variant, password: str
) -> None:
    """Each variant and password opens and reports its encryption and MAC as made."""
    data = openssl_cli.pkcs12(ec_leaf, variant=variant, password=password)
    material = load_material(data, password=password.encode(), expect_pkcs12=True)
    assert material.kind is MaterialKind.PKCS12
    assert_holds(material, ec_leaf)
    expected = EXPECTED[variant]
    assert material.pkcs12 is not None
    assert material.pkcs12.encryption is expected.encryption
    assert material.pkcs12.mac_algorithm == expected.mac_algorithm
    assert material.pkcs12.mac_iterations == expected.mac_iterations
    assert FRIENDLY_NAME in material.pkcs12.friendly_names


@pytest.mark.parametrize("variant", list(Pkcs12Variant), ids=lambda v: v.name)
def test_pkcs12_without_chain_holds_the_leaf_alone(
    openssl_cli: OpenSSLCli, rsa_leaf: IssuedCert, variant: Pkcs12Variant
) -> None:
    """``openssl pkcs12 -export`` without ``-certfile`` gives just the leaf and its key."""
    data = openssl_cli.pkcs12(rsa_leaf, variant=variant, include_chain=False)
    material = load_material(data, password=DEFAULT_PASSWORD.encode())
    assert material.certificates == (rsa_leaf.certificate,)
    assert public_der(material.private_key) == public_der(rsa_leaf.private_key)


@pytest.mark.parametrize(
    "variant",
    [v for v in WITH_MAC if v is not Pkcs12Variant.NO_MAC_ITERATION],
    ids=lambda v: v.name,
)
def test_mac_iterations_follow_the_iter_option(
    openssl_cli: OpenSSLCli, ec_leaf: IssuedCert, variant: Pkcs12Variant
) -> None:
    """``-iter 5000`` (which in OpenSSL 3.0 sets the MAC count too) shows as 5000."""
    data = openssl_cli.pkcs12(ec_leaf, variant=variant, iterations=5000)
    material = load_material(data, password=DEFAULT_PASSWORD.encode())
    assert material.pkcs12 is not None
    assert material.pkcs12.mac_iterations == 5000


@pytest.mark.parametrize("variant", list(Pkcs12Variant), ids=lambda v: v.name)
def test_empty_password_and_no_password_open_the_same_file(
    openssl_cli: OpenSSLCli, ec_leaf: IssuedCert, variant: Pkcs12Variant
) -> None:
    """A file exported with ``-passout pass:`` opens with no password at all, as in OpenSSL."""
    data = openssl_cli.pkcs12(ec_leaf, variant=variant, password="")
    assert_holds(load_material(data, password=None), ec_leaf)


@pytest.mark.parametrize("variant", WITH_MAC, ids=lambda v: v.name)
@pytest.mark.parametrize("given", [WRONG_PASSWORD, None, b""], ids=["wrong", "none", "empty"])
def test_wrong_password_on_a_macced_file_is_wrong_password_never_corrupted(
    openssl_cli: OpenSSLCli, ec_leaf: IssuedCert, variant: Pkcs12Variant, given: bytes | None
) -> None:
    """The MAC tells a wrong (or missing) password apart from damage."""
    data = openssl_cli.pkcs12(ec_leaf, variant=variant, password=UNICODE_PASSWORD)
    error = refusal(data, password=given)
    codes = [problem.code for problem in error.problems]
    assert codes[0] is ProblemCode.WRONG_PASSWORD
    assert ProblemCode.CORRUPTED not in codes


def test_wrong_password_on_a_file_without_mac_is_refused_with_a_typed_error(
    openssl_cli: OpenSSLCli, ec_leaf: IssuedCert
) -> None:
    """Without a MAC the encrypted bags fail to open; the message says why it cannot tell."""
    data = openssl_cli.pkcs12(ec_leaf, variant=Pkcs12Variant.NO_MAC)
    error = refusal(data, password=WRONG_PASSWORD)
    assert error.code == ProblemCode.WRONG_PASSWORD.value
    assert "MAC" in str(error)


@pytest.mark.parametrize("given", [WRONG_PASSWORD, None], ids=["wrong", "none"])
def test_plaintext_pkcs12_opens_with_any_password(
    openssl_cli: OpenSSLCli, ec_leaf: IssuedCert, given: bytes | None
) -> None:
    """Nothing in a no-MAC, no-encryption file depends on the password, so none is needed."""
    data = openssl_cli.pkcs12(ec_leaf, variant=Pkcs12Variant.PLAINTEXT)
    assert_holds(load_material(data, password=given), ec_leaf)


# -- PEM and DER keys -------------------------------------------------------------------


def test_encrypted_pkcs8_pem_key_combines_with_certificate_and_chain(
    openssl_cli: OpenSSLCli, leaf: IssuedCert
) -> None:
    """``BEGIN ENCRYPTED PRIVATE KEY`` + certificate + chain files make one complete upload."""
    key = load_material(
        openssl_cli.encrypted_pkcs8_pem(leaf, UNICODE_PASSWORD),
        password=UNICODE_PASSWORD.encode(),
    )
    assert key.certificates == ()
    material = combine([load_material(leaf.cert_pem()), key, load_material(leaf.chain_pem())])
    assert_holds(material, leaf)


@pytest.mark.parametrize("password", [None, COMMA_PASSWORD], ids=["plain", "encrypted"])
def test_traditional_pem_key_loads(
    openssl_cli: OpenSSLCli, leaf: IssuedCert, password: str | None
) -> None:
    """``BEGIN RSA/EC PRIVATE KEY``, plain or with ``Proc-Type: 4,ENCRYPTED``, loads."""
    pem = openssl_cli.traditional_key_pem(leaf, password)
    assert (b"Proc-Type: 4,ENCRYPTED" in pem) == (password is not None)
    material = load_material(pem, password=password.encode() if password else None)
    assert material.kind is MaterialKind.PEM
    assert public_der(material.private_key) == public_der(leaf.private_key)


def test_der_certificate_loads(openssl_cli: OpenSSLCli, leaf: IssuedCert) -> None:
    """``openssl x509 -outform DER`` is read as one DER certificate."""
    material = load_material(openssl_cli.certificate_der(leaf))
    assert material.kind is MaterialKind.DER
    assert material.certificates == (leaf.certificate,)
    assert material.private_key is None


@pytest.mark.parametrize("traditional", [False, True], ids=["pkcs8", "traditional"])
def test_der_private_key_loads(
    openssl_cli: OpenSSLCli, leaf: IssuedCert, traditional: bool
) -> None:
    """A DER key, PKCS#8 or PKCS#1/SEC1, is read as a key without certificates."""
    material = load_material(openssl_cli.private_key_der(leaf, traditional=traditional))
    assert material.kind is MaterialKind.DER
    assert material.certificates == ()
    assert public_der(material.private_key) == public_der(leaf.private_key)


# -- PKCS7 ------------------------------------------------------------------------------


@pytest.mark.parametrize("der", [False, True], ids=["pem", "der"])
def test_pkcs7_chain_loads_and_combines_with_certificate_and_key(
    openssl_cli: OpenSSLCli, leaf: IssuedCert, der: bool
) -> None:
    """``openssl crl2pkcs7`` output gives the whole chain; with a DER key it is complete."""
    chain = load_material(openssl_cli.pkcs7_chain(leaf, der=der))
    assert chain.kind is (MaterialKind.PKCS7 if der else MaterialKind.PEM)
    assert fingerprints(chain.certificates) == fingerprints(leaf.full_chain)
    material = combine(
        [
            load_material(openssl_cli.certificate_der(leaf)),
            load_material(openssl_cli.private_key_der(leaf)),
            chain,
        ]
    )
    assert material.private_key is not None
    assert material.certificates[0] == leaf.certificate
    assert fingerprints(material.certificates) == fingerprints(leaf.full_chain)


def test_pkcs7_whose_certificate_set_is_not_der_sorted_loads_without_warning(
    openssl_cli: OpenSSLCli, rsa_leaf: IssuedCert
) -> None:
    """crl2pkcs7 keeps file order in a SET OF; pyca warns about it, certward must not."""
    data = openssl_cli.pkcs7_chain(rsa_leaf, der=True)
    encodings = [c.dump() for c in cms.ContentInfo.load(data)["content"]["certificates"]]
    assert encodings != sorted(encodings), "precondition: the SET OF is not in DER order"
    with pytest.warns(UserWarning, match="could not be parsed as DER"):
        pkcs7.load_der_pkcs7_certificates(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        material = load_material(data)
    assert fingerprints(material.certificates) == fingerprints(rsa_leaf.full_chain)


# -- what the user got wrong -------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda cli, leaf: leaf.full_chain_pem() + leaf.key_pem(), "PEM"),
        (lambda cli, leaf: cli.certificate_der(leaf), "DER"),
        (lambda cli, leaf: cli.pkcs7_chain(leaf, der=True), "PKCS7"),
    ],
    ids=["pem-bundle", "der-certificate", "pkcs7"],
)
def test_other_material_given_as_pkcs12_is_not_pkcs12_and_says_how_to_convert(
    openssl_cli: OpenSSLCli, ec_leaf: IssuedCert, make: Make, said: str
) -> None:
    """A .p12 upload that is really PEM/DER/PKCS7 is named as such, with the way out."""
    data = make(openssl_cli, ec_leaf)
    error = refusal(data, expect_pkcs12=True)
    assert error.code == ProblemCode.NOT_PKCS12.value
    assert said in str(error)
    assert "convert" in str(error)


@pytest.mark.parametrize(
    "make",
    [
        lambda cli, leaf: cli.encrypted_pkcs8_pem(leaf, DEFAULT_PASSWORD),
        lambda cli, leaf: cli.traditional_key_pem(leaf, DEFAULT_PASSWORD),
    ],
    ids=["pkcs8", "traditional"],
)
@pytest.mark.parametrize("given", [WRONG_PASSWORD, None], ids=["wrong", "missing"])
def test_encrypted_pem_key_with_wrong_or_missing_password_is_wrong_password(
    openssl_cli: OpenSSLCli, leaf: IssuedCert, make: Make, given: bytes | None
) -> None:
    """An encrypted key that cannot be opened is blamed on the password."""
    data = make(openssl_cli, leaf)
    assert refusal(data, password=given).code == ProblemCode.WRONG_PASSWORD.value
