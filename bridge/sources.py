"""The sources file (docs/behaviour.md section 3): load, expand ``${VAR}``, validate, compile templates.

Everything that can be wrong with the file is found here, at start-up, and reported as
one :class:`ConfigError` line naming the file, the source and the key.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate

from bridge.config_file import expand_variables, read_yaml
from bridge.errors import ConfigError
from bridge.spp_schema import StrictInteger
from bridge.ticket_templates import TICKET_KEYS, compile_ticket

log = logging.getLogger("bridge.sources")

FIELD_KEYS = ("email_field", "name_field", "subject_field", "body_field")
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# bridge/log.py redacts only secrets at least this long, so a shorter one could reach the logs
MIN_SECRET_LENGTH = 4
# ``rate_limit: <n>/second|minute|hour`` (docs/behaviour.md section 3)
RATE_LIMIT = re.compile(r"^\s*([0-9]{1,9})\s*/\s*(second|minute|hour)\s*$")
PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600}


class KindInfo(Protocol):
    """What the sources file needs to know about a kind (see bridge/providers/base.py)."""

    @property
    def requires_secret(self) -> bool: ...

    @property
    def options(self) -> tuple[str, ...]: ...

    def validate_options(self, options: Mapping[str, Any]) -> None: ...

    def validate_secret(self, secret: str) -> None: ...


@dataclass(frozen=True)
class RateLimit:
    """``count`` new events per ``seconds`` (a fixed window) from one sender of a source."""

    count: int
    seconds: int
    text: str  # as written, e.g. "10/minute", for messages


@dataclass
class Source:
    name: str
    kind: str
    secret: str | None = field(default=None, repr=False)
    redirect: str | None = None
    clients: dict[str, int] | None = None
    ticket: dict[str, Any] = field(default_factory=dict)  # values compiled to Templates
    email_field: str | None = None
    name_field: str | None = None
    subject_field: str | None = None
    body_field: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    max_body_bytes: int | None = None  # None: BRIDGE_MAX_BODY_BYTES alone
    rate_limit: RateLimit | None = None
    # the conversation (docs/conversations.md); the file's top-level values where the source sets none
    client_lookup: bool = True  # look the sender up among SPP's clients
    create_clients: bool = False  # create an SPP client for a sender SPP does not have
    message: bool = True  # post the sender's words as the ticket's first message (False: in the note)
    threading: bool = True  # an email reply joins the ticket of the mail it answers

    @property
    def is_open(self) -> bool:
        """Without a secret anyone may post to it (only kinds whose secret is optional get here)."""
        return not self.secret


@dataclass
class SourcesConfig:
    path: str
    sources: dict[str, Source]
    clients: dict[str, int] = field(default_factory=dict)
    default_user_id: int | None = None
    client_lookup: bool = True
    create_clients: bool = False

    def secrets(self) -> list[str]:
        return [s.secret for s in self.sources.values() if s.secret]

    def open_sources(self) -> list[Source]:
        return [s for s in self.sources.values() if s.is_open]


def open_source_warning(source: Source) -> str:
    """The one line that names a source without a secret, at start-up and in ``bridge check``."""
    return (
        f"source {source.name!r} ({source.kind}) has no secret: anyone can post to /hooks/{source.name},"
        " and whoever sends an event's de-duplication key first (e.g. a guessed Idempotency-Key) keeps"
        " the real event out; set a secret unless the source is a public form"
    )


def warn_open_sources(config: SourcesConfig) -> None:
    """One warning line per source without a secret (the web process logs them once, at start-up)."""
    for source in config.open_sources():
        log.warning(open_source_warning(source))


def _valid_client_key(value: str) -> None:
    """An address (``alice@example.com``) or a domain (``@example.com``); anything else never matches."""
    local, at, domain = value.strip().rpartition("@")
    if not at or not domain or "@" in local:
        raise ValidationError("must be an email address or @domain")


class _ClientMap(fields.Dict):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(keys=fields.String(validate=_valid_client_key), values=StrictInteger(), **kwargs)


class _SourceSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # kind-specific options are checked against the kind below

    kind = fields.String(required=True)
    secret = fields.String(allow_none=True)
    redirect = fields.Url(require_tld=False)
    clients = _ClientMap(allow_none=True)
    ticket = fields.Dict(keys=fields.String(validate=validate.OneOf(TICKET_KEYS)), allow_none=True)
    email_field = fields.String()
    name_field = fields.String()
    subject_field = fields.String()
    body_field = fields.String()
    # checked by _max_body_bytes and _rate_limit below, for messages that say what to write
    max_body_bytes = fields.Raw(allow_none=True)
    rate_limit = fields.Raw(allow_none=True)
    client_lookup = fields.Boolean()
    create_clients = fields.Boolean()
    message = fields.Boolean()
    threading = fields.Boolean()


class _DefaultsSchema(Schema):
    class Meta:
        unknown = RAISE

    user_id = StrictInteger()


class _FileSchema(Schema):
    class Meta:
        unknown = RAISE

    defaults = fields.Nested(_DefaultsSchema)
    clients = _ClientMap()
    client_lookup = fields.Boolean()
    create_clients = fields.Boolean()
    sources = fields.Dict(keys=fields.String(), values=fields.Raw(), required=True)


def load_sources(
    path: str,
    kinds: Mapping[str, KindInfo],
    env: Mapping[str, str] | None = None,
    max_body_bytes: int | None = None,
) -> SourcesConfig:
    """Load and check the file; ``max_body_bytes`` is BRIDGE_MAX_BODY_BYTES, which no source may exceed."""
    env = os.environ if env is None else env
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping with a 'sources' key")
    data = expand_variables(raw, env, path)
    top = _load(_FileSchema(), data, path, ())
    inherited = {key: top.get(key, default) for key, default in (("client_lookup", True), ("create_clients", False))}
    sources = {
        name: _source(path, name, spec, kinds, max_body_bytes, inherited) for name, spec in top["sources"].items()
    }
    return SourcesConfig(
        path=path,
        sources=sources,
        clients=_normalize_clients(top.get("clients") or {}),
        default_user_id=top.get("defaults", {}).get("user_id"),
        **inherited,
    )


def _load(schema: Schema, data: Any, path: str, where: tuple[str, ...]) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as err:
        key, message = _first_error(err.messages)
        raise ConfigError(f"{path}: {'.'.join((*where, *key))}: {message}") from None


def _first_error(messages: Any, key: tuple[str, ...] = ()) -> tuple[tuple[str, ...], str]:
    if isinstance(messages, dict):
        name, inner = next(iter(messages.items()))
        # marshmallow reports Dict key/value errors under "key"/"value" below the entry
        return _first_error(inner, key if name in ("key", "value") else (*key, str(name)))
    if isinstance(messages, list):
        return key, str(messages[0]) if messages else "invalid"
    return key, str(messages)


def _source(
    path: str,
    name: str,
    spec: Any,
    kinds: Mapping[str, KindInfo],
    max_body_bytes: int | None,
    inherited: Mapping[str, bool],
) -> Source:
    where = ("sources", name)
    if not SOURCE_NAME.match(name):
        raise ConfigError(f"{path}: sources.{name}: a source name may hold letters, digits, '_', '-', '.'")
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: sources.{name}: must be a mapping with at least 'kind'")
    loaded = _load(_SourceSchema(), spec, path, where)
    kind = kinds.get(loaded["kind"])
    if kind is None:
        known = ", ".join(sorted(kinds))
        raise ConfigError(f"{path}: sources.{name}.kind: unknown kind {loaded['kind']!r} (known: {known})")
    known_keys = set(_SourceSchema().fields) | set(kind.options)
    for key in spec:
        if key not in known_keys:
            raise ConfigError(f"{path}: sources.{name}.{key}: unknown key for kind {loaded['kind']!r}")
    if "secret" in spec:
        _check_secret(f"{path}: sources.{name}.secret", loaded["kind"], kind, loaded["secret"])
    elif kind.requires_secret:
        raise ConfigError(f"{path}: sources.{name}.secret: kind {loaded['kind']!r} needs a secret")
    if loaded.get("redirect") and loaded["kind"] != "form":
        raise ConfigError(f"{path}: sources.{name}.redirect: only 'form' sources redirect")
    clients = loaded.get("clients")
    lookup = loaded.get("client_lookup", inherited["client_lookup"])
    if loaded.get("create_clients", inherited["create_clients"]) and not lookup:
        raise ConfigError(
            f"{path}: sources.{name}.create_clients: needs client_lookup, which is off here"
            " (a client is created only after SPP was asked whether it has one)"
        )
    options = {k: spec[k] for k in kind.options if k in spec}
    try:
        kind.validate_options(options)
    except ValueError as exc:
        raise ConfigError(f"{path}: sources.{name}.{exc}") from None
    return Source(
        name=name,
        kind=loaded["kind"],
        secret=loaded.get("secret") or None,
        redirect=loaded.get("redirect"),
        clients=_normalize_clients(clients) if clients is not None else None,
        ticket=compile_ticket(path, name, loaded.get("ticket") or {}),
        options=options,
        max_body_bytes=_max_body_bytes(f"{path}: sources.{name}.max_body_bytes", spec, max_body_bytes),
        rate_limit=_rate_limit(f"{path}: sources.{name}.rate_limit", spec),
        client_lookup=loaded.get("client_lookup", inherited["client_lookup"]),
        create_clients=loaded.get("create_clients", inherited["create_clients"]),
        message=loaded.get("message", True),
        threading=loaded.get("threading", True),
        **{k: loaded.get(k) for k in FIELD_KEYS},
    )


def _max_body_bytes(where: str, spec: Mapping[str, Any], ceiling: int | None) -> int | None:
    """A whole number of bytes, at most BRIDGE_MAX_BODY_BYTES: that one is the hard limit of every
    request (Flask refuses a larger body before any source is looked at), so a source can only lower it.

    Text of digits is taken too, as ``${VAR}`` always gives text.
    """
    if "max_body_bytes" not in spec:
        return None
    value = spec["max_body_bytes"]
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", value.strip()):
        value = int(value)
    bound = f"from 1 to {ceiling} (BRIDGE_MAX_BODY_BYTES)" if ceiling else "of at least 1"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: must be a whole number of bytes {bound}, got {value!r}")
    if ceiling is not None and value > ceiling:
        raise ConfigError(
            f"{where}: {value} is above BRIDGE_MAX_BODY_BYTES ({ceiling}), the limit of every request;"
            " a source can only lower it"
        )
    return value


def _rate_limit(where: str, spec: Mapping[str, Any]) -> RateLimit | None:
    if "rate_limit" not in spec:
        return None
    value = spec["rate_limit"]
    match = RATE_LIMIT.match(value) if isinstance(value, str) else None
    if match is None or int(match.group(1)) < 1:
        raise ConfigError(f"{where}: must be <n>/second, <n>/minute or <n>/hour (n at least 1), got {value!r}")
    count, unit = int(match.group(1)), match.group(2)
    return RateLimit(count, PERIOD_SECONDS[unit], f"{count}/{unit}")


def _check_secret(where: str, kind_name: str, kind: KindInfo, secret: str | None) -> None:
    """Refuse a ``secret`` that is written but could not protect the source.

    An empty one (``secret: ""``, or ``${VAR:-}`` with VAR unset) would switch authentication
    off without a word; one under MIN_SECRET_LENGTH characters would appear in the logs
    unredacted. Then the kind checks its own shape.
    """
    if secret is None or not secret.strip():
        if kind.requires_secret:
            raise ConfigError(f"{where}: is empty, and kind {kind_name!r} needs a secret")
        raise ConfigError(f"{where}: is empty, which would accept posts from anyone; remove the key if that is meant")
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"{where}: is {len(secret)} character(s); use at least {MIN_SECRET_LENGTH},"
            " as a shorter secret would not be kept out of the logs"
        )
    try:
        kind.validate_secret(secret)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _normalize_clients(clients: Mapping[str, int]) -> dict[str, int]:
    return {address.strip().lower(): user_id for address, user_id in clients.items()}
