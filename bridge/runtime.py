"""What a running bridge holds: settings, sources, the store, and the delivery wake-up."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from flask import Flask, current_app

from bridge.retry import RetryPolicy
from bridge.sources import SourcesConfig
from bridge.spp_client import SppClient
from bridge.store import Store
from config.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    sources: SourcesConfig
    store: Store
    wake: threading.Event = field(default_factory=threading.Event)

    def secrets(self) -> list[str]:
        s = self.settings
        return [x for x in (s.spp_api_token, s.admin_token, *self.sources.secrets()) if x]

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


def get_runtime(app: Flask | None = None) -> Runtime:
    return (app or current_app).extensions["bridge"]
