"""``json``: any JSON object, e.g. from a website back end or a no-code tool."""

from __future__ import annotations

from werkzeug import Request

from bridge.message import InboundMessage
from bridge.providers.base import Provider, TokenAuth, body_hash, bounded_key
from bridge.providers.fields import SubmittedMessageSchema, pick_message_fields
from bridge.sources import Source


class JsonProvider(TokenAuth, Provider):
    kind = "json"
    content_types = ("application/json",)
    requires_secret = False
    sender_setup = "POST JSON to {url} (with X-Bridge-Token: <secret>, or ?token=<secret>, when the source has one)"
    sample = (
        "application/json",
        '{"email": "alice@example.com", "name": "Alice Müller", "subject": "Hello", "message": "Hi there, Grüße"}',
    )

    def parse(self, request: Request, source: Source) -> InboundMessage:
        data = self.json_object(request)
        picked = self.load(SubmittedMessageSchema, pick_message_fields(data, source))
        return InboundMessage(dedupe_key=self.dedupe_key(request), fields=data, **picked)

    def body_in_message(self, message: InboundMessage) -> bool:
        """The object is ``fields``, whole; the token is a header, so no signature needs the bytes."""
        return True

    def dedupe_key(self, request: Request) -> str:
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            return body_hash(request)
        return bounded_key("idempotency:", key)
