"""The application factory: settings flow one way, from the environment into the app."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from bridge.db import make_engine, normalize_url
from bridge.log import configure_logging
from bridge.providers import PROVIDERS
from bridge.runtime import Runtime
from bridge.sources import load_sources
from bridge.store import Store
from config.settings import load_settings


def create_app(overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Flask:
    """Build the app. ``overrides`` replaces settings by field name (tests); ``env`` replaces os.environ."""
    settings = load_settings(env)
    if overrides:
        settings = settings.with_overrides(overrides)
    sources = load_sources(settings.sources_file, PROVIDERS, env, settings.max_body_bytes)

    app = Flask("bridge")
    # Heroku's router (and Render's, Fly's) terminates TLS: trust its one X-Forwarded-For and
    # -Proto hop, so URLs the bridge prints (admin page, redirects) say https://. Such a router
    # passes Host through; X-Forwarded-Host, which any caller can send, only when configured.
    x_host = 1 if settings.trust_forwarded_host else 0
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=x_host)  # type: ignore[method-assign]
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        # Flask's 500 kB default per form field would refuse ordinary inbound mail
        MAX_FORM_MEMORY_SIZE=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
        # without SECRET_KEY, the admin page sets a key of the database's on first use (AdminSessions)
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    engine = make_engine(normalize_url(settings.database_url, app.instance_path), settings.delivery_concurrency + 4)
    runtime = Runtime(settings, sources, Store(engine))
    app.extensions["bridge"] = runtime
    configure_logging(runtime.secrets(), fmt=settings.log_format)

    from bridge.cli import bridge_cli
    from bridge.http import register_http
    from bridge.http.body import WholeBody

    register_http(app)
    app.wsgi_app = WholeBody(app.wsgi_app, settings.max_body_bytes)  # type: ignore[method-assign]
    app.cli.add_command(bridge_cli)
    return app


def help_only_app(problem: str) -> Flask:
    """An app that can only show the CLI's help: ``flask --app wsgi bridge --help`` explains the
    commands while the configuration is still wrong (a command itself would stop with the one-line
    configuration error, as gunicorn does)."""
    from bridge.cli import bridge_cli

    app = Flask("bridge")
    commands = copy.copy(bridge_cli)
    commands.epilog = f"The configuration is not valid yet: {problem}"
    app.cli.add_command(commands)
    return app
