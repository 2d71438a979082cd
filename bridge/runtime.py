"""What a running bridge holds: settings, sources, the store, and the delivery wake-up."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from flask import Flask, current_app

from bridge.alerts import EVERY_SECONDS, Alerts, secret_parts, target
from bridge.chores import Chore, Chores
from bridge.retention import purge_chore
from bridge.retry import RetryPolicy
from bridge.sources import SourcesConfig
from bridge.spp_client import SppClient
from bridge.store import DeliveryQueue, Store
from bridge.worker import NotifyListener, Worker
from config.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    sources: SourcesConfig
    store: Store
    wake: threading.Event = field(default_factory=threading.Event)

    def secrets(self) -> list[str]:
        s = self.settings
        return [x for x in (s.spp_api_token, s.admin_token, *self.sources.secrets(), *self._alert_secrets) if x]

    @cached_property
    def _alert_secrets(self) -> list[str]:
        """Worked out once: the admin page scrubs every page it serves."""
        return [part for url in self.settings.alert_urls for part in secret_parts(url)]

    def session_key(self) -> str:
        """What signs the admin page's session cookie: SECRET_KEY, else a random key the bridge
        made once and keeps in the database, the same for every process (raises StoreUnavailable)."""
        return self.settings.secret_key or self.store.access.secret("admin_session_key")

    def retry_policy(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(s.retry_base_seconds, s.retry_max_seconds, s.max_attempts, s.max_retry_age_seconds)

    def spp_client(self) -> SppClient:
        s = self.settings
        s.require_spp()
        assert s.spp_api_url and s.spp_api_token
        return SppClient(
            s.spp_api_url,
            s.spp_api_token,
            s.spp_api_version,
            connect_timeout=s.spp_connect_timeout,
            read_timeout=s.spp_read_timeout,
            pool_size=s.delivery_concurrency,
        )

    def worker(self, queue: DeliveryQueue | None = None, **overrides: Any) -> Worker:
        """A delivery worker with this bridge's settings, woken by its web layer.

        ``queue`` replaces the web's (the ``worker`` process's own engine); ``overrides`` are
        Worker options (tests poll faster). Raises ConfigError when SPP is not configured.
        """
        s = self.settings
        options = {
            "concurrency": s.delivery_concurrency,
            "lease_seconds": s.lease_seconds,
            "poll_seconds": s.poll_seconds,
            "probe_seconds": s.probe_seconds,
            "wake": self.wake,
            "chores": Chores(self.chores()),
            **overrides,
        }
        return Worker(queue or self.store.queue, self.spp_client(), self.retry_policy(), **options)

    def chores(self) -> list[Chore]:
        """What every worker does periodically beside delivery (bridge/chores.py)."""
        chores = [purge_chore(self.store, self.settings.retention_days)]
        if self.settings.alert_urls:
            alerts = self.alerts()
            chores.append(Chore("alerts", EVERY_SECONDS, lambda now, stopping: alerts.run(now)))
        return chores

    def alerts(self, **overrides: Any) -> Alerts:
        """The alerts chore for BRIDGE_ALERT_URLS; ``overrides`` are Alerts options (tests shorten the window)."""
        s = self.settings
        options: dict[str, Any] = {
            "queue_age_seconds": s.alert_queue_age_seconds,
            "public_url": s.public_url,
            "secrets": self.secrets(),
            **overrides,
        }
        return Alerts(self.store.alerts, [target(url) for url in s.alert_urls], **options)

    def listen_for_events(self, worker: Worker) -> None:
        """On PostgreSQL, wake ``worker`` on every NOTIFY of a new event, from any process."""
        if self.store.is_postgres:
            url = self.store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            NotifyListener(url, self.wake, worker.stopping).start()


def get_runtime(app: Flask | None = None) -> Runtime:
    return (app or current_app).extensions["bridge"]
