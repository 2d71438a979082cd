"""Settings read once from the environment (docs/behaviour.md section 2).

Every value is parsed and checked here, at start-up; a bad value raises
:class:`ConfigError` whose message is the one line an operator sees.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


class ConfigError(Exception):
    """The configuration is invalid; the message names the file or variable and key."""


DEFAULT_API_VERSION = "2024-03-05"
MIB = 1024 * 1024
MAX_RETENTION_DAYS = 36500  # a hundred years: "keep everything", within what a date can hold


@dataclass(frozen=True)
class Settings:
    spp_api_url: str | None = None
    spp_api_token: str | None = field(default=None, repr=False)
    spp_api_version: str = DEFAULT_API_VERSION
    database_url: str = ""  # empty: the app factory picks a SQLite file under instance/
    sources_file: str = "config/sources.yml"
    admin_token: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    embedded_worker: bool = False
    max_body_bytes: int = 10 * MIB
    max_attachment_bytes: int = 10 * MIB  # a larger file is listed in the message, not sent
    delivery_concurrency: int = 4
    max_attempts: int = 12
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    max_retry_age_seconds: float = 72 * 3600.0
    lease_seconds: float = 120.0
    spp_connect_timeout: float = 5.0
    spp_read_timeout: float = 30.0
    poll_seconds: float = 0.5
    probe_seconds: float = 30.0
    port: int = 8000
    log_format: str = "json"
    trust_forwarded_host: bool = False
    request_read_timeout: float = 60.0
    # apprise URLs; they carry tokens and passwords (bridge/alerts.py, Runtime.secrets())
    alert_urls: tuple[str, ...] = field(default=(), repr=False)
    alert_queue_age_seconds: float = 900.0
    public_url: str | None = None  # where operators reach the bridge: links in alerts, `bridge check`
    retention_days: int = 30

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        settings = replace(self, **overrides)
        settings.check()
        return settings

    def check(self) -> None:
        if self.spp_api_url and not self.spp_api_token:
            raise ConfigError("SPP_API_TOKEN: must be set when SPP_API_URL is set")
        if self.spp_api_url and not self.spp_api_url.startswith(("http://", "https://")):
            raise ConfigError("SPP_API_URL: must start with http:// or https://")
        if self.lease_seconds <= self.spp_read_timeout:
            raise ConfigError(f"BRIDGE_LEASE_SECONDS: must exceed the {self.spp_read_timeout:g} s read timeout")
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ConfigError("BRIDGE_RETRY_MAX_SECONDS: must not be below BRIDGE_RETRY_BASE_SECONDS")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError("BRIDGE_PUBLIC_URL: must start with http:// or https://")
        check_alert_urls(self.alert_urls)

    def require_spp(self) -> None:
        """The processes that deliver (web, worker) cannot run without an SPP workspace."""
        if not self.spp_api_url:
            raise ConfigError("SPP_API_URL: not set (the workspace URL, e.g. https://acme.spp.co)")


def quiet_apprise() -> None:
    """Keep apprise's own log lines out of ours: they name hosts, tokens and whole URLs.

    What went wrong with a notification is logged by bridge/alerts.py, with the target named
    without its secrets.
    """
    apprise_log = logging.getLogger("apprise")
    apprise_log.setLevel(logging.CRITICAL + 1)
    apprise_log.propagate = False


def split_alert_urls(raw: str) -> tuple[str, ...]:
    """BRIDGE_ALERT_URLS as a list: URLs separated by commas or white space (a comma inside a
    URL's query, as in ``mailto://…?to=a@x.org,b@x.org``, stays in its URL). Raises
    ConfigError for text between the separators that is no URL, without repeating it."""
    if not raw.strip():
        return ()
    from apprise.utils.parse import parse_urls

    quiet_apprise()
    urls = tuple(parse_urls(raw, store_unparseable=False))
    rest = raw
    for url in urls:
        rest = rest.replace(url, ",", 1)
    if any(re.split(r"[\s,;]+", rest)):
        raise ConfigError("BRIDGE_ALERT_URLS: holds text that is not a URL of the form scheme://…")
    return urls


def check_alert_urls(urls: tuple[str, ...]) -> None:
    """Every alert URL must be one apprise can send to; the error names the entry by its place
    and scheme, never the rest of the URL (it holds the secret)."""
    if not urls:
        return
    import apprise

    quiet_apprise()
    for n, url in enumerate(urls, 1):
        if apprise.Apprise.instantiate(url) is None:
            scheme = url.split("://", 1)[0]
            scheme = scheme if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,19}", scheme) else "?"
            raise ConfigError(
                f"BRIDGE_ALERT_URLS: entry {n} ({scheme}://…) is not a URL apprise can send to"
                " (unknown scheme or missing parts; see https://github.com/caronc/apprise/wiki)"
            )


def _str(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}: must be at most {maximum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a number") from None
    # float() also takes "nan" and "inf": neither is a usable delay or timeout
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}: must be a finite number greater than 0, got {raw}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices``; the first is the default."""
    raw = (_str(env, name) or choices[0]).lower()
    if raw not in choices:
        raise ConfigError(f"{name}: {raw!r} is not one of {', '.join(choices)}")
    return raw


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _str(env, name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: {raw!r} is not true or false")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from ``env`` (default: ``os.environ``)."""
    env = os.environ if env is None else env
    settings = Settings(
        spp_api_url=(_str(env, "SPP_API_URL") or "").rstrip("/") or None,
        spp_api_token=_str(env, "SPP_API_TOKEN"),
        spp_api_version=_str(env, "SPP_API_VERSION") or DEFAULT_API_VERSION,
        database_url=_str(env, "DATABASE_URL") or "",
        sources_file=_str(env, "BRIDGE_SOURCES_FILE") or "config/sources.yml",
        admin_token=_str(env, "BRIDGE_ADMIN_TOKEN"),
        secret_key=_str(env, "SECRET_KEY"),
        embedded_worker=_bool(env, "BRIDGE_EMBEDDED_WORKER", False),
        max_body_bytes=_int(env, "BRIDGE_MAX_BODY_BYTES", 10 * MIB),
        max_attachment_bytes=_int(env, "BRIDGE_MAX_ATTACHMENT_BYTES", 10 * MIB),
        delivery_concurrency=_int(env, "BRIDGE_DELIVERY_CONCURRENCY", 4),
        max_attempts=_int(env, "BRIDGE_MAX_ATTEMPTS", 12),
        retry_base_seconds=_float(env, "BRIDGE_RETRY_BASE_SECONDS", 30.0),
        retry_max_seconds=_float(env, "BRIDGE_RETRY_MAX_SECONDS", 3600.0),
        lease_seconds=_float(env, "BRIDGE_LEASE_SECONDS", 120.0),
        # Not documented for users: lets tests and benchmarks shorten the 30 s read timeout.
        spp_read_timeout=_float(env, "BRIDGE_SPP_READ_TIMEOUT_SECONDS", 30.0),
        poll_seconds=_float(env, "BRIDGE_POLL_SECONDS", 0.5),
        probe_seconds=_float(env, "BRIDGE_PROBE_SECONDS", 30.0),
        port=_int(env, "PORT", 8000, maximum=65535),
        log_format=_choice(env, "LOG_FORMAT", ("json", "text")),
        trust_forwarded_host=_bool(env, "BRIDGE_TRUST_FORWARDED_HOST", False),
        # how long a client may take to send a whole request (bridge/server.py)
        request_read_timeout=_float(env, "BRIDGE_REQUEST_READ_TIMEOUT_SECONDS", 60.0),
        alert_urls=split_alert_urls(env.get("BRIDGE_ALERT_URLS", "")),
        alert_queue_age_seconds=_float(env, "BRIDGE_ALERT_QUEUE_AGE_SECONDS", 900.0),
        public_url=(_str(env, "BRIDGE_PUBLIC_URL") or "").rstrip("/") or None,
        # days a finished event keeps its request, message and files (bridge/store/retention.py)
        retention_days=_int(env, "BRIDGE_RETENTION_DAYS", 30, maximum=MAX_RETENTION_DAYS),
    )
    settings.check()
    if not settings.database_url and _str(env, "DYNO"):
        # a dyno's file system is its own and is wiped on every restart
        raise ConfigError(
            "DATABASE_URL is not set: on Heroku (DYNO is set) each dyno would get its own"
            " throw-away SQLite file; add Heroku Postgres"
        )
    return settings
