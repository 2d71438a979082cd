"""The bridge's version, sent to SPP in the User-Agent."""

__version__ = "0.1.0"
