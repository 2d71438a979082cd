"""``standard``: any sender following the Standard Webhooks spec (https://www.standardwebhooks.com).

Verified with the spec's reference library: ``webhook-signature`` holds ``v1,<base64
HMAC-SHA256>`` values (space-separated, for key rotation) over ``{webhook-id}.
{webhook-timestamp}.{body}``, keyed with the base64 part of a ``whsec_`` secret, and a
``webhook-timestamp`` more than five minutes away from now is refused. The body is JSON,
ideally ``{"type", "timestamp", "data"}``; the message is picked out of it like the
``json`` kind does, also looking under ``data`` for the default field names.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError
from werkzeug import Request

from bridge.errors import Unauthorized
from bridge.message import InboundMessage
from bridge.providers.base import Provider, bounded_key
from bridge.providers.fields import DEFAULT_PATHS, SubmittedMessageSchema, honeypot_reason, pick_message_fields
from bridge.sources import Source

log = logging.getLogger("bridge.providers.standard")

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
# What the reference library can raise on hostile input besides WebhookVerificationError:
# verify() decodes the body as UTF-8 (UnicodeDecodeError), unpacks "v1,sig" pairs with a
# bare tuple assignment (ValueError) and base64-decodes signatures (binascii.Error, a
# ValueError). Every one of them is a request we cannot verify: 401.
VERIFY_ERRORS = (WebhookVerificationError, ValueError, TypeError, OverflowError)


class StandardWebhooksProvider(Provider):
    kind = "standard"
    sender_setup = "the sender's webhook endpoint {url}, signing secret = the source's whsec_ secret"
    content_types = ("application/json",)
    requires_secret = True
    options = ("honeypot",)
    example_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    sample = (
        "application/json",
        '{"type": "contact.created", "timestamp": "2026-01-01T12:00:00Z",\n'
        ' "data": {"email": "alice@example.com", "name": "Alice Müller", "message": "Hi there, Grüße"}}',
    )

    def validate_secret(self, secret: str) -> None:
        try:
            Webhook(secret)
        except (EmptyWebhookSecretError, ValueError, TypeError, RuntimeError):
            raise ValueError("is not a Standard Webhooks secret (whsec_ followed by base64)") from None

    def verify(self, request: Request, source: Source) -> None:
        webhook = _webhook(source)
        headers = {name: request.headers.get(name, "") for name in HEADERS}
        try:
            webhook.verify(request.get_data(cache=True), headers, json_parse=False)
        except VERIFY_ERRORS as exc:
            reason = str(exc) if isinstance(exc, WebhookVerificationError) else "malformed signature headers or body"
            raise Unauthorized(f"Standard Webhooks verification failed: {reason}") from None

    def parse(self, request: Request, source: Source) -> InboundMessage:
        data = self.json_object(request)
        picked = self.load(SubmittedMessageSchema, _pick(data, source))
        webhook_id = request.headers.get("webhook-id", "").strip()
        if not picked.get("subject") and isinstance(data.get("type"), str) and data["type"].strip():
            picked["subject"] = f"{data['type'].strip()} event"
        if not picked.get("body"):
            picked["body"] = json.dumps(data, indent=2, ensure_ascii=False)  # the event itself, readable
        return InboundMessage(
            dedupe_key=_dedupe_key(webhook_id),
            fields=data,
            message_id=webhook_id or None,
            discard_reason=honeypot_reason(data, source),
            **picked,
        )


def _webhook(source: Source) -> Webhook:
    try:
        return Webhook(source.secret or "")
    except (EmptyWebhookSecretError, ValueError, TypeError, RuntimeError):
        # our configuration, not the sender's fault; still a request we cannot verify
        log.error("source %s: the secret is not a whsec_ (base64) Standard Webhooks secret", source.name)
        raise Unauthorized("Standard Webhooks verification failed: the source's secret is unusable") from None


def _pick(data: dict[str, Any], source: Source) -> dict[str, Any]:
    """The ``*_field`` paths (dotted), or the default names at the top level, then under ``data``."""
    picked = pick_message_fields(data, source)
    inner = data.get("data")
    if isinstance(inner, dict):
        unconfigured = [role for role in DEFAULT_PATHS if not getattr(source, f"{role}_field")]
        for role, value in pick_message_fields(inner, source).items():
            if role in unconfigured and role not in picked:
                picked[role] = value
    return picked


def _dedupe_key(webhook_id: str) -> str:
    return bounded_key("webhook-id:", webhook_id)
