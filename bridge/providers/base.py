"""The interface every inbound kind implements: verify the raw request, then parse it.

:meth:`Provider.read` calls, in this order: ``verify`` (on the raw bytes, before anything
is parsed, so a stranger learns nothing about what we accept), ``check_content_type`` and
``parse``, which returns one :class:`InboundMessage`.
A provider never touches the database or SPP.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any, ClassVar

from marshmallow import EXCLUDE, Schema, ValidationError
from werkzeug import Request
from werkzeug.datastructures import FileStorage

from bridge.errors import BadPayload, PayloadTooLarge, RejectedPayload, Unauthorized, UnsupportedMediaType
from bridge.message import InboundMessage
from bridge.sources import Source


class Provider:
    kind: ClassVar[str]
    content_types: ClassVar[tuple[str, ...]]
    requires_secret: ClassVar[bool] = True
    # source keys this kind understands beyond the common ones (e.g. honeypot)
    options: ClassVar[tuple[str, ...]] = ()
    # the status this sender reads as "rejected, do not retry" (docs/behaviour.md section 4)
    reject_status: ClassVar[int] = 422
    # headers whose values are credentials: never stored, logged or shown
    secret_headers: ClassVar[tuple[str, ...]] = ()
    # how long a one-time signature token (InboundMessage.replay_token) is remembered
    token_ttl_seconds: ClassVar[float] = 12 * 3600
    # what `bridge check` tells the operator to configure at the sender; {url} is the hook URL
    sender_setup: ClassVar[str] = "POST to {url}"
    # the signature travels inside the parsed body (Mailgun's form fields), so the content type
    # is checked before verify() can read it; elsewhere the signature comes first
    signature_in_body: ClassVar[bool] = False
    # an email kind: a reply may join the ticket of the mail it answers (docs/conversations.md)
    threads: ClassVar[bool] = False
    # a secret of the shape validate_secret() accepts (the auth mixins below give one)
    example_secret: ClassVar[str]
    # (content type, body): a small request of this kind's real shape, with some non-ASCII text,
    # that parses to a ticket; the admin page's try-it form starts with it
    sample: ClassVar[tuple[str, str]]

    def validate_options(self, options: Mapping[str, Any]) -> None:
        """Check this kind's source options at start-up; raise ValueError("<option>: <problem>")."""

    def validate_secret(self, secret: str) -> None:
        """Check the shape of a source's secret at start-up; raise ValueError("<problem>")."""

    def check_content_type(self, request: Request) -> None:
        if request.mimetype not in self.content_types:
            accepted = ", ".join(self.content_types)
            raise UnsupportedMediaType(
                f"content type {request.mimetype or 'none'!r} is not accepted by a "
                f"'{self.kind}' source (send {accepted})"
            )

    def verify(self, request: Request, source: Source) -> None:
        raise NotImplementedError

    def body_in_message(self, message: InboundMessage) -> bool:
        """Whether ``message.fields`` holds all the raw body says, so it is not stored a second time
        (docs/limits.md). Never where the raw bytes are signed, MIME, or carry file contents."""
        return False

    def parse(self, request: Request, source: Source) -> InboundMessage:
        raise NotImplementedError

    def read(self, request: Request, source: Source, verify: bool = True) -> InboundMessage:
        """The request as this kind reads it: raw bytes (413 when too big), the signature on them
        (unless a preview skips it), the content type, then the message."""
        read_body(request, source)
        if self.signature_in_body:
            self.check_content_type(request)
        if verify:
            self.verify(request, source)
        if not self.signature_in_body:
            self.check_content_type(request)
        return self.parse(request, source)

    def json_object(self, request: Request) -> dict[str, Any]:
        """The body as a JSON object: 400 when it is not JSON, this kind's reject answer when not an object."""
        try:
            data = strict_json(request.get_data(cache=True))
        except JsonTooDeep as exc:
            raise BadPayload(f"the body is JSON {exc}") from None
        except (ValueError, RecursionError):
            raise BadPayload("the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise RejectedPayload(f"a '{self.kind}' body must be a JSON object", status=self.reject_status)
        return data

    def load(self, schema: type[Schema], data: Any) -> Any:
        """Load ``data`` with a marshmallow schema; field errors become this kind's reject answer."""
        try:
            return schema_instance(schema).load(data)
        except ValidationError as err:
            raise RejectedPayload(
                f"the payload lacks what a '{self.kind}' source requires: {field_errors(err.normalized_messages())}",
                status=self.reject_status,
                errors=err.normalized_messages(),
            ) from None


def field_errors(messages: Any, path: str = "") -> str:
    """marshmallow's nested error messages as text: ``data.fields: Missing data for required field.``"""
    if isinstance(messages, dict):
        return "; ".join(field_errors(inner, f"{path}.{key}" if path else str(key)) for key, inner in messages.items())
    if isinstance(messages, list):
        text = " ".join(str(m) for m in messages if not isinstance(m, dict | list))
        nested = [field_errors(m, path) for m in messages if isinstance(m, dict | list)]
        return "; ".join(([f"{path}: {text}" if path else text] if text else []) + nested)
    return f"{path}: {messages}" if path else str(messages)


def read_body(request: Request, source: Source) -> bytes:
    """The raw body, refused (413) over the source's own ``max_body_bytes``.

    BRIDGE_MAX_BODY_BYTES is enforced before the app, whatever the framing
    (bridge/http/body.py), so the body is already whole in memory here.
    """
    body = request.get_data(cache=True)
    limit = source.max_body_bytes
    if limit and len(body) > limit:
        raise PayloadTooLarge(
            f"the body is {len(body)} bytes; source {source.name!r} takes at most {limit} (max_body_bytes)"
        )
    return body


@functools.cache
def schema_instance(schema: type[Schema]) -> Schema:
    """One instance per schema class: building one copies its fields, too slow for every request."""
    return schema()


class LenientSchema(Schema):
    """A sender's payload: keys the schema does not name are dropped (senders add fields over time)."""

    class Meta:
        unknown = EXCLUDE


KEY_COLUMN_LENGTH = 255  # events.dedupe_key and seen_tokens.token are varchar(255)
BOUNDED_KEY_LENGTH = 200  # the longest value bounded_key keeps as text, leaving room for its prefix


def bounded_key(prefix: str, value: str) -> str:
    """``prefix + value`` when that fits the column as text, else ``prefix`` + a hash of ``value``.

    Long values and control characters (PostgreSQL text holds no NUL) are hashed, so any
    sender-chosen id can be a de-duplication key.
    """
    if len(value) <= BOUNDED_KEY_LENGTH and value.isprintable():
        return prefix + value
    return f"{prefix}sha256:{hashlib.sha256(value.encode('utf-8', 'surrogatepass')).hexdigest()}"


MAX_JSON_DEPTH = 512  # deeper JSON is refused (docs/providers.md, "Limits on what is read of a message")


class JsonTooDeep(ValueError):
    """JSON nested deeper than MAX_JSON_DEPTH."""


def strict_json(raw: str | bytes) -> Any:
    """``json.loads`` that also refuses NaN and Infinity (PostgreSQL's JSON cannot store them),
    and nesting deeper than MAX_JSON_DEPTH: the parser accepts about 940 levels, but storing the
    value (``json.dumps``, from deeper in the call stack) would then recurse past Python's limit.

    Raises ValueError (JsonTooDeep for nesting; RecursionError for absurd nesting) like ``json.loads``.
    """
    data = json.loads(raw, parse_constant=_refuse_constant)
    if _nested_deeper_than(MAX_JSON_DEPTH, data, raw):
        raise JsonTooDeep(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return data


def _nested_deeper_than(limit: int, data: Any, raw: str | bytes) -> bool:
    """Whether ``data`` (parsed from ``raw``) nests deeper than ``limit``, level by level, without
    recursion; a text with no more brackets than ``limit`` cannot, and is not walked."""
    brackets = raw.count("[") + raw.count("{") if isinstance(raw, str) else raw.count(b"[") + raw.count(b"{")
    if brackets <= limit:
        return False
    level = [data] if isinstance(data, (dict, list)) else []
    for _ in range(limit):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, (dict, list))
        ]
        if not level:
            return False
    return True


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def upload_content(upload: FileStorage) -> bytes:
    """The bytes of an uploaded file, from its start whatever was read of it before."""
    upload.stream.seek(0)
    return upload.stream.read()


def body_hash(request: Request) -> str:
    return "sha256:" + hashlib.sha256(request.get_data(cache=True)).hexdigest()


class TokenAuth:
    """The bridge's own shared secret: ``X-Bridge-Token`` header or ``?token=`` query value."""

    header = "X-Bridge-Token"
    secret_headers: ClassVar[tuple[str, ...]] = (header,)
    example_secret: ClassVar[str] = "example-token-4f7c2a9e1b"

    def verify(self, request: Request, source: Source) -> None:
        if not source.secret:
            return
        given = request.headers.get(self.header) or request.args.get("token") or ""
        if not hmac.compare_digest(given.encode(), source.secret.encode()):
            raise Unauthorized(f"missing or wrong {self.header} header (or ?token= value)")


class BodyHmacAuth:
    """A header holding base64(HMAC-SHA256(secret, raw body)) after ``signature_prefix`` (Typeform, Tally)."""

    signature_header: ClassVar[str]
    signature_prefix: ClassVar[bytes] = b""
    example_secret: ClassVar[str] = "example-signing-secret-8d2e41"

    def verify(self, request: Request, source: Source) -> None:
        digest = hmac.new((source.secret or "").encode(), request.get_data(cache=True), hashlib.sha256).digest()
        expected = self.signature_prefix + base64.b64encode(digest)
        given = request.headers.get(self.signature_header, "").strip().encode("utf-8", "surrogateescape")
        if not source.secret or not hmac.compare_digest(given, expected):
            raise Unauthorized(f"missing or wrong {self.signature_header} header (HMAC-SHA256 of the body, base64)")


class BasicAuth:
    """HTTP Basic credentials, configured as ``secret: user:pass`` (the sender puts them in the URL)."""

    secret_headers: ClassVar[tuple[str, ...]] = ("Authorization",)
    example_secret: ClassVar[str] = "user:example-pass-3b7c90"

    def validate_secret(self, secret: str) -> None:
        """The sender's ``user:pass`` is compared with the whole secret, so ``:`` alone (no user,
        no password) would pass a colon check: both halves must be there."""
        if ":" not in secret:
            raise ValueError("must be user:pass, the HTTP Basic credentials put in the webhook URL")
        user, _, password = secret.partition(":")
        if not (user.strip() and password.strip()):
            raise ValueError("user:pass needs both a user and a password")

    def verify(self, request: Request, source: Source) -> None:
        expected = (source.secret or "").encode()
        auth = request.authorization
        given = f"{auth.username}:{auth.password}".encode() if auth and auth.type == "basic" else b""
        if not expected or not hmac.compare_digest(given, expected):
            raise Unauthorized(
                "missing or wrong HTTP Basic credentials (put user:pass in the webhook URL)", scheme="Basic"
            )
