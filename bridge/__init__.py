"""spp-ticket-bridge: inbound webhooks in, Service Provider Pro tickets out."""

from __future__ import annotations

from bridge.app import create_app
from bridge.version import __version__

__all__ = ["__version__", "create_app"]
