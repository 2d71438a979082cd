"""The registry of inbound kinds: one module per kind, one line here per module."""

from __future__ import annotations

from bridge.providers.base import Provider
from bridge.providers.form import FormProvider
from bridge.providers.json import JsonProvider

PROVIDERS: dict[str, Provider] = {
    provider.kind: provider
    for provider in (
        JsonProvider(),
        FormProvider(),
    )
}

__all__ = ["PROVIDERS", "Provider"]
