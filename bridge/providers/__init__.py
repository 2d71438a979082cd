"""The registry of inbound kinds: one module per kind, one line here per module."""

from __future__ import annotations

from bridge.providers.base import Provider
from bridge.providers.cloudmailin import CloudMailinProvider
from bridge.providers.email import EmailProvider
from bridge.providers.form import FormProvider
from bridge.providers.jotform import JotformProvider
from bridge.providers.json import JsonProvider
from bridge.providers.mailgun import MailgunProvider
from bridge.providers.postmark import PostmarkProvider
from bridge.providers.sendgrid import SendGridProvider
from bridge.providers.standard import StandardWebhooksProvider
from bridge.providers.tally import TallyProvider
from bridge.providers.typeform import TypeformProvider

PROVIDERS: dict[str, Provider] = {
    provider.kind: provider
    for provider in (
        JsonProvider(),
        FormProvider(),
        MailgunProvider(),
        SendGridProvider(),
        PostmarkProvider(),
        CloudMailinProvider(),
        EmailProvider(),
        TypeformProvider(),
        TallyProvider(),
        JotformProvider(),
        StandardWebhooksProvider(),
    )
}

__all__ = ["PROVIDERS", "Provider"]
