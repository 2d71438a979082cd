"""spp-ticket-bridge: inbound webhooks in, Service Provider Pro tickets out.

Importing the package loads nothing else, so the SPP client and the providers stay free
of Flask; the app factory is ``bridge.app.create_app``.
"""

from bridge.version import __version__

__all__ = ["__version__"]
