"""The registry of inbound kinds: one module per kind, one line here per module."""

from __future__ import annotations

from bridge.providers.base import Provider
from bridge.providers.form import FormProvider
from bridge.providers.json import JsonProvider

# <mailgun-import>
# <sendgrid-import>
# <cloudmailin-import>
# <postmark-import>
# <email-import>
# <formbuilders-import>

PROVIDERS: dict[str, Provider] = {
    provider.kind: provider
    for provider in (
        JsonProvider(),
        FormProvider(),
        # <mailgun>
        # <sendgrid>
        # <cloudmailin>
        # <postmark>
        # <email>
        # <formbuilders>
    )
}

__all__ = ["PROVIDERS", "Provider"]
