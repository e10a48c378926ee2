"""Settings: defaults, parsing of every variable, one-sentence errors, no secret in repr."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import pytest

from certward.errors import ConfigurationError
from certward.settings import Settings, parse_listen

KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(32)).decode()


def test_defaults_need_no_configuration() -> None:
    """With no variable set, certward runs from ./certward-data on 127.0.0.1:8700."""
    settings = Settings.from_env({})
    assert settings.data_dir == Path("certward-data")
    assert settings.database_url == f"sqlite:///{Path('certward-data/certward.db').absolute()}"
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 8700)
    assert settings.listen == "127.0.0.1:8700"
    assert settings.platform_domain == "apps.localhost"
    assert settings.admin_token is None
    assert settings.master_key_file == Path("certward-data/master.key")
    assert settings.master_keys == ()
    assert settings.admin_token_file == Path("certward-data/admin-token")
    assert (settings.max_upload_bytes, settings.max_pkcs12_iterations) == (262144, 100_000)
    assert settings.max_pkcs12_mac_iterations == 20_000
    assert (
        settings.material_workers,
        settings.material_cpu_seconds,
        settings.material_wall_seconds,
    ) == (2, 2, 3)


def test_every_variable_is_read(tmp_path: Path) -> None:
    """Each ``CERTWARD_*`` variable sets its field."""
    settings = Settings.from_env(
        {
            "CERTWARD_DATA_DIR": str(tmp_path),
            "CERTWARD_DATABASE_URL": "postgresql+psycopg://certward@db/certward",
            "CERTWARD_LISTEN": "0.0.0.0:9000",
            "CERTWARD_PLATFORM_DOMAIN": "Apps.Example.NET.",
            "CERTWARD_ADMIN_TOKEN": "cw_0123456789abcdef",
            "CERTWARD_MASTER_KEY": f"{KEY},{OTHER_KEY}",
            "CERTWARD_MAX_UPLOAD_BYTES": "1024",
            "CERTWARD_MAX_PKCS12_ITERATIONS": "2048",
            "CERTWARD_MAX_PKCS12_MAC_ITERATIONS": "4096",
            "CERTWARD_MATERIAL_WORKERS": "4",
            "CERTWARD_MATERIAL_CPU_SECONDS": "5",
            "CERTWARD_MATERIAL_WALL_SECONDS": "7",
            "UNRELATED": "ignored",
        }
    )
    assert settings.data_dir == tmp_path
    assert settings.database_url == "postgresql+psycopg://certward@db/certward"
    assert settings.listen == "0.0.0.0:9000"
    assert settings.platform_domain == "apps.example.net"
    assert settings.admin_token == "cw_0123456789abcdef"
    assert settings.master_keys == (bytes(range(32)), bytes(32))
    assert settings.master_key_file == tmp_path / "master.key"
    assert (settings.max_upload_bytes, settings.max_pkcs12_iterations) == (1024, 2048)
    assert settings.max_pkcs12_mac_iterations == 4096
    assert (
        settings.material_workers,
        settings.material_cpu_seconds,
        settings.material_wall_seconds,
    ) == (4, 5, 7)


def test_the_database_follows_the_data_directory(tmp_path: Path) -> None:
    """The default SQLite file lives in the data directory."""
    settings = Settings.from_env({"CERTWARD_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'certward.db'}"


def test_a_key_file_can_live_elsewhere(tmp_path: Path) -> None:
    """``CERTWARD_MASTER_KEY_FILE`` moves the keyring out of the data directory."""
    settings = Settings.from_env({"CERTWARD_MASTER_KEY_FILE": str(tmp_path / "k")})
    assert settings.master_key_file == tmp_path / "k"


def test_empty_variables_count_as_unset() -> None:
    """``CERTWARD_LISTEN=`` means the default, not an error."""
    assert Settings.from_env({"CERTWARD_LISTEN": "", "CERTWARD_ADMIN_TOKEN": ""}).listen == (
        "127.0.0.1:8700"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8700", ("127.0.0.1", 8700)),
        ("localhost:80", ("localhost", 80)),
        ("[::1]:8700", ("::1", 8700)),
        ("[::]:0", ("::", 0)),
    ],
)
def test_listen_addresses(value: str, expected: tuple[str, int]) -> None:
    """``host:port`` and ``[v6]:port`` are understood."""
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    "value", ["8700", "localhost", ":8700", "host:", "host:http", "host:70000", "::1:8700", "h:٣"]
)
def test_bad_listen_addresses_say_what_is_expected(value: str) -> None:
    """A listen address that is not host:port gets one sentence naming the variable."""
    with pytest.raises(ConfigurationError, match=r"^CERTWARD_LISTEN must be host:port .*\.$"):
        Settings.from_env({"CERTWARD_LISTEN": value})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CERTWARD_DATABASE_URL", "not a url", "not a database URL"),
        ("CERTWARD_DATABASE_URL", "mysql://db/certward", "SQLite or PostgreSQL"),
        ("CERTWARD_PLATFORM_DOMAIN", "localhost", "DNS name"),
        ("CERTWARD_PLATFORM_DOMAIN", "apps..example", "DNS name"),
        ("CERTWARD_PLATFORM_DOMAIN", "-apps.example", "DNS name"),
        ("CERTWARD_PLATFORM_DOMAIN", "apps_x.example", "DNS name"),
        ("CERTWARD_PLATFORM_DOMAIN", "apps\n.example", "DNS name"),
        ("CERTWARD_ADMIN_TOKEN", "short", "at least 16"),
        ("CERTWARD_ADMIN_TOKEN", "has a space in it, long", "without spaces"),
        ("CERTWARD_MASTER_KEY", "not base64!", "not valid base64"),
        ("CERTWARD_MASTER_KEY", base64.b64encode(bytes(16)).decode(), "32 bytes"),
        ("CERTWARD_MASTER_KEY", f"{KEY},", "32 bytes"),
        ("CERTWARD_MAX_UPLOAD_BYTES", "0", "positive whole number"),
        ("CERTWARD_MAX_UPLOAD_BYTES", "-5", "positive whole number"),
        ("CERTWARD_MAX_PKCS12_ITERATIONS", "1e6", "positive whole number"),
        ("CERTWARD_TLS_POLICY", "old", "intermediate, modern"),
        ("CERTWARD_EXPIRED_CRL", "ignore", "refuse or warn"),
        ("CERTWARD_EXPIRES_SOON_DAYS_CLIENT_CERTIFICATE", "0", "positive whole number"),
        ("CERTWARD_EXPIRES_SOON_DAYS_TLS_CERTIFICATE", "2w", "positive whole number"),
        ("CERTWARD_EXPIRES_SOON_DAYS_AUTHORITY", "3651", "at most 3650 days"),
    ],
)
def test_bad_values_fail_with_one_sentence(name: str, value: str, message: str) -> None:
    """Each wrong value raises `ConfigurationError` naming the variable, in one sentence."""
    with pytest.raises(ConfigurationError, match=message) as caught:
        Settings.from_env({name: value})
    text = str(caught.value)
    assert text.startswith(name)
    assert text.endswith(".")
    assert "\n" not in text


def test_a_key_in_the_environment_and_a_key_file_conflict(tmp_path: Path) -> None:
    """Two master key sources at once are refused rather than guessed between."""
    with pytest.raises(ConfigurationError, match="not both"):
        Settings.from_env(
            {"CERTWARD_MASTER_KEY": KEY, "CERTWARD_MASTER_KEY_FILE": str(tmp_path / "k")}
        )


def test_repr_never_shows_secrets() -> None:
    """The admin token, master keys and database password stay out of ``repr``."""
    settings = Settings.from_env(
        {
            "CERTWARD_ADMIN_TOKEN": "cw_super-secret-admin-token",
            "CERTWARD_MASTER_KEY": KEY,
            "CERTWARD_DATABASE_URL": "postgresql+psycopg://certward:db-password-42@db/certward",
        }
    )
    shown = repr(settings)
    for secret in ("super-secret-admin-token", KEY, "db-password-42", repr(bytes(range(32)))):
        assert secret not in shown
    assert "admin_token='<set>'" in shown
    assert "postgresql+psycopg://certward:***@db/certward" in shown


def test_expires_soon_windows_are_set_per_kind_in_days() -> None:
    """30 days for each uploaded kind by default; each variable sets its own kind."""
    default = Settings.from_env({})
    assert (
        default.expires_soon_client_certificate,
        default.expires_soon_tls_certificate,
        default.expires_soon_authority,
    ) == (timedelta(days=30),) * 3
    settings = Settings.from_env(
        {
            "CERTWARD_EXPIRES_SOON_DAYS_CLIENT_CERTIFICATE": "14",
            "CERTWARD_EXPIRES_SOON_DAYS_TLS_CERTIFICATE": "21",
            "CERTWARD_EXPIRES_SOON_DAYS_AUTHORITY": "90",
        }
    )
    assert (
        settings.expires_soon_client_certificate,
        settings.expires_soon_tls_certificate,
        settings.expires_soon_authority,
    ) == (timedelta(days=14), timedelta(days=21), timedelta(days=90))


def test_settings_are_frozen() -> None:
    """Settings are read once and never change afterwards."""
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.listen_port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7d", 7 * 86400), ("12h", 12 * 3600), ("30m", 1800), ("300", 300), ("90s", None)],
)
def test_managed_certificate_lifetime_takes_units(value: str, expected: int | None) -> None:
    """CERTWARD_MANAGED_CERT_LIFETIME reads days, hours, minutes or seconds (5 min at least)."""
    environ = {"CERTWARD_MANAGED_CERT_LIFETIME": value}
    if expected is None:
        with pytest.raises(ConfigurationError, match="at least 5 minutes"):
            Settings.from_env(environ)
    else:
        assert Settings.from_env(environ).managed_cert_lifetime.total_seconds() == expected


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CERTWARD_MANAGED_CERT_LIFETIME", "48d", "at most 47 days"),
        ("CERTWARD_MANAGED_CERT_LIFETIME", "a week", "duration"),
        ("CERTWARD_RENEWAL_INTERVAL", "0", "at least 1 second"),
        ("CERTWARD_CA_URL", "https://ca.example.net", "plain http://"),
        ("CERTWARD_CA_URL", "http://ca.example.net/x y", "plain http://"),
    ],
)
def test_renewal_and_ca_settings_refuse_wrong_values(name: str, value: str, message: str) -> None:
    """Wrong lifetimes, intervals and CA URLs stop certward with one sentence naming them."""
    with pytest.raises(ConfigurationError, match=message) as raised:
        Settings.from_env({name: value})
    assert name in str(raised.value)


def test_renewal_and_ca_defaults() -> None:
    """Seven-day certificates, a pass a minute, CA files published under the platform domain."""
    settings = Settings.from_env({"CERTWARD_PLATFORM_DOMAIN": "apps.example.net"})
    assert settings.managed_cert_lifetime.days == 7
    assert settings.renewal_interval.total_seconds() == 60
    assert settings.ca_publication_url == "http://apps.example.net/api/v1/platform/ca"
    custom = Settings.from_env({"CERTWARD_CA_URL": "http://ca.example.net:8080/pki/"})
    assert custom.ca_publication_url == "http://ca.example.net:8080/pki"


def test_acme_settings(tmp_path: Path) -> None:
    """The ACME issuer is off by default; its directory, responder address and bundle are read."""
    defaults = Settings.from_env({})
    assert defaults.acme_directory is None
    assert (defaults.acme_http_host, defaults.acme_http_port) == ("127.0.0.1", 8080)
    assert defaults.acme_ca_bundle is None
    bundle = tmp_path / "pebble.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings.from_env(
        {
            "CERTWARD_ACME_DIRECTORY": "https://127.0.0.1:14000/dir",
            "CERTWARD_ACME_HTTP_LISTEN": "10.0.0.7:5002",
            "CERTWARD_ACME_CA_BUNDLE": str(bundle),
        }
    )
    assert settings.acme_directory == "https://127.0.0.1:14000/dir"
    assert (settings.acme_http_host, settings.acme_http_port) == ("10.0.0.7", 5002)
    assert settings.acme_ca_bundle == bundle


def test_acme_profile_is_read_with_a_directory() -> None:
    """No profile by default; one named is kept as given (trimmed)."""
    assert Settings.from_env({}).acme_profile is None
    settings = Settings.from_env(
        {
            "CERTWARD_ACME_DIRECTORY": "https://127.0.0.1:14000/dir",
            "CERTWARD_ACME_PROFILE": " shortlived ",
        }
    )
    assert settings.acme_profile == "shortlived"
    assert "acme_profile='shortlived'" in repr(settings)


@pytest.mark.parametrize("value", ["short lived", "a/b", "x" * 65])
def test_acme_profile_refuses_what_is_no_profile_name(value: str) -> None:
    with pytest.raises(ConfigurationError, match="CERTWARD_ACME_PROFILE must"):
        Settings.from_env(
            {"CERTWARD_ACME_DIRECTORY": "https://acme.example/dir", "CERTWARD_ACME_PROFILE": value}
        )


def test_acme_profile_needs_a_directory() -> None:
    with pytest.raises(ConfigurationError, match="set CERTWARD_ACME_DIRECTORY too"):
        Settings.from_env({"CERTWARD_ACME_PROFILE": "tlsserver"})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CERTWARD_ACME_DIRECTORY", "http://acme.example/dir", "CERTWARD_ACME_DIRECTORY must"),
        ("CERTWARD_ACME_HTTP_LISTEN", "8080", "CERTWARD_ACME_HTTP_LISTEN must be host:port"),
        ("CERTWARD_ACME_CA_BUNDLE", "/nonexistent/ca.pem", "CERTWARD_ACME_CA_BUNDLE must"),
    ],
)
def test_acme_settings_refuse_wrong_values(name: str, value: str, message: str) -> None:
    """A wrong ACME variable fails with one sentence naming it."""
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env({name: value})
