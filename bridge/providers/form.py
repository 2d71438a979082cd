"""``form``: an HTML form posted straight from a website (urlencoded or multipart)."""

from __future__ import annotations

from typing import Any

from werkzeug import Request
from werkzeug.datastructures import FileStorage

from bridge.errors import RejectedPayload
from bridge.message import Attachment, InboundMessage
from bridge.providers.base import Provider, TokenAuth, body_hash, upload_content
from bridge.providers.fields import SubmittedMessageSchema, honeypot_reason, pick_message_fields
from bridge.sources import Source


class FormProvider(TokenAuth, Provider):
    kind = "form"
    content_types = ("application/x-www-form-urlencoded", "multipart/form-data")
    requires_secret = False
    sender_setup = '<form method="post" action="{url}"> (add ?token=<secret> when the source has a secret)'
    options = ("honeypot",)
    sample = (
        "application/x-www-form-urlencoded",
        "email=alice%40example.com&name=Alice+M%C3%BCller&subject=Hello&message=Hi+there%2C+Gr%C3%BC%C3%9Fe",
    )

    def body_in_message(self, message: InboundMessage) -> bool:
        """Every field is in ``fields``; an uploaded file's contents only in the raw body."""
        return not message.attachments

    def parse(self, request: Request, source: Source) -> InboundMessage:
        form = request.form
        data: dict[str, Any] = {}
        for key in form:
            values = form.getlist(key)
            data[key] = values[0] if len(values) == 1 else values
        files = [file for name, upload in request.files.items(multi=True) if (file := _file(name, upload))]
        if not data and not files:
            raise RejectedPayload("the form has no fields", status=self.reject_status)
        picked = self.load(SubmittedMessageSchema, pick_message_fields(data, source))
        return InboundMessage(
            dedupe_key=body_hash(request),
            fields=data,
            attachments=files,
            discard_reason=honeypot_reason(data, source),
            **picked,
        )


def _file(field: str, upload: FileStorage) -> Attachment | None:
    """An uploaded file with its bytes; None for a file input left empty, which browsers post
    with no file name and no bytes."""
    content = upload_content(upload)
    if not upload.filename and not content:
        return None
    return Attachment(
        name=upload.filename or field,
        content_type=upload.mimetype or "application/octet-stream",
        size=len(content),
        content=content,
    )
