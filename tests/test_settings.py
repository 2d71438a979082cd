"""config/settings.py: defaults from docs/behaviour.md section 2, one-line errors naming the variable."""

from __future__ import annotations

import pytest

from config.settings import ConfigError, Settings, load_settings

SPP = {"SPP_API_URL": "https://acme.spp.co", "SPP_API_TOKEN": "tok"}


def config_error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_match_the_documented_table() -> None:
    s = load_settings({})
    assert s.spp_api_url is None
    assert s.spp_api_token is None
    assert s.spp_api_version == "2024-03-05"
    assert s.database_url == ""
    assert s.sources_file == "config/sources.yml"
    assert s.admin_token is None
    assert s.embedded_worker is False
    assert s.max_body_bytes == 10 * 1024 * 1024
    assert s.delivery_concurrency == 4
    assert s.max_attempts == 12
    assert s.retry_base_seconds == 30.0
    assert s.retry_max_seconds == 3600.0
    assert s.lease_seconds == 120.0
    assert s.spp_connect_timeout == 5.0
    assert s.spp_read_timeout == 30.0
    assert s.probe_seconds == 30.0
    assert s.port == 8000


def test_load_settings_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_MAX_ATTEMPTS", "3")
    assert load_settings().max_attempts == 3


def test_every_variable_is_read() -> None:
    s = load_settings(
        {
            **SPP,
            "SPP_API_URL": "https://acme.spp.co/",
            "SPP_API_VERSION": "2025-01-01",
            "DATABASE_URL": "postgresql://db/x",
            "BRIDGE_SOURCES_FILE": "/etc/sources.yml",
            "BRIDGE_ADMIN_TOKEN": "adm",
            "BRIDGE_EMBEDDED_WORKER": "TRUE",
            "BRIDGE_MAX_BODY_BYTES": "1024",
            "BRIDGE_DELIVERY_CONCURRENCY": "8",
            "BRIDGE_MAX_ATTEMPTS": "3",
            "BRIDGE_RETRY_BASE_SECONDS": "0.5",
            "BRIDGE_RETRY_MAX_SECONDS": "60",
            "BRIDGE_LEASE_SECONDS": "31",
            "BRIDGE_PROBE_SECONDS": "5",
            "PORT": " 5000 ",
        }
    )
    assert s.spp_api_url == "https://acme.spp.co"  # trailing slash dropped
    assert s.spp_api_token == "tok"
    assert s.spp_api_version == "2025-01-01"
    assert s.database_url == "postgresql://db/x"
    assert s.sources_file == "/etc/sources.yml"
    assert s.admin_token == "adm"
    assert s.embedded_worker is True
    assert (s.max_body_bytes, s.delivery_concurrency, s.max_attempts) == (1024, 8, 3)
    assert (s.retry_base_seconds, s.retry_max_seconds, s.lease_seconds) == (0.5, 60.0, 31.0)
    assert s.probe_seconds == 5.0
    assert s.port == 5000


def test_empty_values_mean_unset() -> None:
    s = load_settings({"SPP_API_VERSION": "", "BRIDGE_MAX_ATTEMPTS": "  ", "BRIDGE_ADMIN_TOKEN": ""})
    assert (s.spp_api_version, s.max_attempts, s.admin_token) == ("2024-03-05", 12, None)


@pytest.mark.parametrize("raw", ["1", "true", "Yes", "on"])
def test_true_spellings(raw: str) -> None:
    assert load_settings({"BRIDGE_EMBEDDED_WORKER": raw}).embedded_worker is True


@pytest.mark.parametrize("raw", ["0", "false", "NO", "off"])
def test_false_spellings(raw: str) -> None:
    assert load_settings({"BRIDGE_EMBEDDED_WORKER": raw}).embedded_worker is False


def test_bad_bool_names_the_variable() -> None:
    assert config_error({"BRIDGE_EMBEDDED_WORKER": "maybe"}) == "BRIDGE_EMBEDDED_WORKER: 'maybe' is not true or false"


INT_VARS = ["BRIDGE_MAX_BODY_BYTES", "BRIDGE_DELIVERY_CONCURRENCY", "BRIDGE_MAX_ATTEMPTS", "PORT"]
FLOAT_VARS = ["BRIDGE_RETRY_BASE_SECONDS", "BRIDGE_RETRY_MAX_SECONDS", "BRIDGE_LEASE_SECONDS", "BRIDGE_PROBE_SECONDS"]


@pytest.mark.parametrize("name", INT_VARS)
def test_int_not_a_number(name: str) -> None:
    assert config_error({name: "ten"}) == f"{name}: 'ten' is not a whole number"


@pytest.mark.parametrize("name", INT_VARS)
def test_int_fraction_refused(name: str) -> None:
    assert config_error({name: "1.5"}) == f"{name}: '1.5' is not a whole number"


@pytest.mark.parametrize("name", INT_VARS)
def test_int_zero_refused(name: str) -> None:
    assert config_error({name: "0"}) == f"{name}: must be at least 1, got 0"


@pytest.mark.parametrize("name", INT_VARS)
def test_int_negative_refused(name: str) -> None:
    assert config_error({name: "-3"}) == f"{name}: must be at least 1, got -3"


def test_port_above_65535_refused() -> None:
    assert config_error({"PORT": "70000"}) == "PORT: must be at most 65535, got 70000"


@pytest.mark.parametrize("name", FLOAT_VARS)
def test_float_not_a_number(name: str) -> None:
    assert config_error({name: "soon"}) == f"{name}: 'soon' is not a number"


@pytest.mark.parametrize("name", FLOAT_VARS)
@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "1e999"])
def test_float_must_be_finite_and_positive(name: str, raw: str) -> None:
    assert config_error({name: raw}) == f"{name}: must be a finite number greater than 0, got {raw}"


def test_newline_in_a_value_stays_one_line() -> None:
    assert config_error({"BRIDGE_MAX_ATTEMPTS": "1\n2"}) == "BRIDGE_MAX_ATTEMPTS: '1\\n2' is not a whole number"


@pytest.mark.parametrize("lease", ["30", "29.5", "1"])
def test_lease_must_exceed_read_timeout(lease: str) -> None:
    assert config_error({"BRIDGE_LEASE_SECONDS": lease}) == "BRIDGE_LEASE_SECONDS: must exceed the 30 s read timeout"


def test_lease_just_above_read_timeout_is_accepted() -> None:
    assert load_settings({"BRIDGE_LEASE_SECONDS": "30.5"}).lease_seconds == 30.5


def test_lease_is_compared_with_the_configured_read_timeout() -> None:
    env = {"BRIDGE_SPP_READ_TIMEOUT_SECONDS": "2", "BRIDGE_LEASE_SECONDS": "2"}
    assert config_error(env) == "BRIDGE_LEASE_SECONDS: must exceed the 2 s read timeout"
    assert load_settings({**env, "BRIDGE_LEASE_SECONDS": "3"}).lease_seconds == 3.0


def test_retry_max_below_base_refused() -> None:
    env = {"BRIDGE_RETRY_BASE_SECONDS": "60", "BRIDGE_RETRY_MAX_SECONDS": "10"}
    assert config_error(env) == "BRIDGE_RETRY_MAX_SECONDS: must not be below BRIDGE_RETRY_BASE_SECONDS"


def test_token_required_with_url() -> None:
    message = config_error({"SPP_API_URL": "https://acme.spp.co"})
    assert message == "SPP_API_TOKEN: must be set when SPP_API_URL is set"


def test_url_scheme_checked() -> None:
    message = config_error({"SPP_API_URL": "acme.spp.co", "SPP_API_TOKEN": "t"})
    assert message == "SPP_API_URL: must start with http:// or https://"


def test_token_without_url_is_allowed() -> None:
    assert load_settings({"SPP_API_TOKEN": "t"}).spp_api_url is None


def test_require_spp_without_url() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({}).require_spp()
    assert str(info.value) == "SPP_API_URL: not set (the workspace URL, e.g. https://acme.spp.co)"


def test_require_spp_with_url_passes() -> None:
    load_settings(SPP).require_spp()


def test_with_overrides_returns_a_checked_copy() -> None:
    base = load_settings({})
    changed = base.with_overrides({"max_attempts": 2, "embedded_worker": True})
    assert (changed.max_attempts, changed.embedded_worker) == (2, True)
    assert (base.max_attempts, base.embedded_worker) == (12, False)


def test_with_overrides_runs_the_checks() -> None:
    with pytest.raises(ConfigError, match=r"^BRIDGE_LEASE_SECONDS: must exceed the 30 s read timeout$"):
        load_settings({}).with_overrides({"lease_seconds": 10.0})
    with pytest.raises(ConfigError, match=r"^SPP_API_TOKEN: must be set when SPP_API_URL is set$"):
        Settings().with_overrides({"spp_api_url": "https://acme.spp.co"})


def test_secrets_are_not_in_repr() -> None:
    text = repr(load_settings({**SPP, "SPP_API_TOKEN": "s3cret-spp", "BRIDGE_ADMIN_TOKEN": "s3cret-admin"}))
    assert "s3cret" not in text


def test_heroku_without_a_database_url_is_refused() -> None:
    assert config_error({**SPP, "DYNO": "web.1"}) == (
        "DATABASE_URL is not set: on Heroku (DYNO is set) each dyno would get its own throw-away SQLite file;"
        " add Heroku Postgres"
    )
    assert load_settings({**SPP, "DYNO": "web.1", "DATABASE_URL": "postgres://u:p@db/x"}).database_url
    assert load_settings({**SPP, "DYNO": ""}).database_url == ""  # not on Heroku: SQLite under instance/
