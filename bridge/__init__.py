"""spp-ticket-bridge: inbound webhooks in, Service Provider Pro tickets out."""

from __future__ import annotations

__version__ = "0.1.0"

from bridge.app import create_app

__all__ = ["__version__", "create_app"]
