"""The admin page's sources: each source's URL, options and last day, and a try-it form.

The try-it form starts with the kind's own ``sample`` (``bridge/providers``), or with an event's
stored request (``/admin/sources?sample=<event id>``), and shows the requests delivery would
make to SPP. Routes on the ``admin_page`` blueprint; ``bridge/http/__init__.py`` imports this
module so they exist before the blueprint is registered.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from werkzeug.exceptions import HTTPException
from werkzeug.test import EnvironBuilder
from wtforms import SelectChoice, SelectField, SubmitField, TextAreaField
from wtforms.validators import DataRequired

from bridge.errors import BridgeError, Unmappable
from bridge.http.admin_page import CLIENT_HOW, _refused, admin_page, pretty
from bridge.http.admin_raw import sample_of
from bridge.intake import preview_calls
from bridge.providers import PROVIDERS
from bridge.replay import plausible_event_id
from bridge.runtime import Runtime, get_runtime
from bridge.sources import Source
from bridge.status import ClientHow

DAY = timedelta(hours=24)


def _content_types() -> list[SelectChoice]:
    """Every content type a kind accepts; a sample's parameters (a multipart boundary) stay in
    the value, so the sample posted with its own choice parses."""
    with_parameters = {provider.sample[0].split(";")[0]: provider.sample[0] for provider in PROVIDERS.values()}
    accepted = dict.fromkeys(content_type for provider in PROVIDERS.values() for content_type in provider.content_types)
    return [SelectChoice(with_parameters.get(content_type, content_type), content_type) for content_type in accepted]


ACCEPTED_TYPES = frozenset(content_type for provider in PROVIDERS.values() for content_type in provider.content_types)


class TryForm(FlaskForm):
    sample = TextAreaField("Sample body", validators=[DataRequired()])
    content_type = SelectField("Content type", choices=_content_types())
    submit = SubmitField("Show the requests")

    def offer(self, content_type: str) -> None:
        """Offer ``content_type`` too when it carries parameters of its own (an event's multipart
        boundary); a type no kind accepts is not offered, and the form refuses it."""
        known = {choice[0] if isinstance(choice, tuple) else choice.value for choice in self.content_type.choices}
        if content_type not in known and content_type.split(";")[0].strip() in ACCEPTED_TYPES:
            self.content_type.choices = [*self.content_type.choices, SelectChoice(content_type, content_type)]


@admin_page.get("/sources")
def sources_page() -> ResponseReturnValue:
    sample_id = request.args.get("sample")
    if sample_id is None:
        return _render_sources()
    return _render_sources(**_event_sample(sample_id))


@admin_page.post("/sources/<source_name>/try")
def try_source(source_name: str) -> ResponseReturnValue:
    runtime = get_runtime()
    source = runtime.sources.sources.get(source_name)
    if source is None:
        return _refused(f"There is no source {source_name!r}.", 404)
    form = TryForm(prefix=source.name)
    form.offer(request.form.get(f"{source.name}-content_type", ""))
    if not form.validate_on_submit():
        return _refused() if "csrf_token" in form.errors else _render_sources(source.name, form)
    return _render_sources(source.name, form, preview(runtime, source, form.sample.data, form.content_type.data))


def _event_sample(event_id: str) -> dict[str, Any]:
    """The form of the event's source filled with the event's request, or a note saying why not."""
    raw = get_runtime().store.queries.raw_request(event_id) if plausible_event_id(event_id) else None
    if raw is None:
        return {"note": f"There is no event {event_id!r} to use as a sample."}
    source = get_runtime().sources.sources.get(raw["source"])
    if source is None:
        return {"note": f"Event {event_id} came to source {raw['source']!r}, which the sources file no longer has."}
    sample = sample_of(source.kind, raw)
    if isinstance(sample, str):
        return {"tried": source.name, "note": f"Event {event_id} cannot be used as a sample: {sample}."}
    content_type, body = sample
    form = TryForm(formdata=None, prefix=source.name, data={"sample": body})
    form.offer(content_type)
    form.content_type.data = content_type
    return {"tried": source.name, "form": form, "note": f"The sample is the request of event {event_id}."}


def _render_sources(
    tried: str = "", form: TryForm | None = None, result: dict[str, Any] | None = None, note: str | None = None
) -> ResponseReturnValue:
    """Every source; the one tried (or filled from an event) shows its form and the result."""
    runtime = get_runtime()
    queries = runtime.store.queries
    latest = queries.latest_by_source()
    last_day = queries.source_counts(datetime.now(UTC) - DAY)
    default_user = runtime.sources.default_user_id
    cards = [
        _source_card(source, latest.get(name), last_day.get(name), default_user)
        for name, source in sorted(runtime.sources.sources.items())
    ]
    for card in cards:
        if card["name"] == tried:
            card.update(form=form or card["form"], result=result, note=note, open=True)
    page_note = note if note and not any(card["name"] == tried for card in cards) else None
    return render_template("admin/sources.html", cards=cards, page_note=page_note)


def _source_card(
    source: Source, latest: dict[str, Any] | None, last_day: dict[str, int] | None, default_user: int | None
) -> dict[str, Any]:
    url = f"{request.host_url}hooks/{source.name}"
    provider = PROVIDERS[source.kind]
    content_type, sample = provider.sample
    form = TryForm(formdata=None, prefix=source.name, data={"sample": sample})
    form.content_type.data = content_type
    return {
        "name": source.name,
        "url": url,
        "kind": source.kind,
        "has_secret": bool(source.secret),
        "latest": latest,
        "last_day": last_day or {"accepted": 0, "failed": 0},
        "setup": provider.sender_setup.format(url=url),
        "client_lookup": source.client_lookup,
        "create_clients": source.create_clients,
        "message": source.message,
        "threading": source.threading,
        "threads": provider.threads,
        "default_user": default_user,
        "form": form,
        "result": None,
        "note": None,
        "open": False,
    }


def preview(runtime: Runtime, source: Source, sample: str, content_type: str) -> dict[str, Any]:
    """What ``POST /api/preview/<source>?calls=true`` answers for this body, made readable:
    {"client": ..., "ticket": json, "message": {"body": json, "files": [...]} or None, "reply":
    ...}, or {"error": why}.

    The sample is run through the source's provider as a request of its own; nothing is stored or sent.
    """
    body = sample.strip().encode()
    inbound = EnvironBuilder(method="POST", path=f"/hooks/{source.name}", data=body, content_type=content_type)
    try:
        calls = preview_calls(runtime, source, inbound.get_request())
    except Unmappable as exc:
        return {"error": f"No ticket: {exc.message} ({exc.code})"}
    except BridgeError as exc:
        return {"error": f"The hook would answer {exc.status}: {exc.message}"}
    except HTTPException as exc:
        return {"error": f"The hook would answer {exc.code}: {exc.description}"}
    client = calls["client"]
    if "how" in client:
        how = client["how"]
        client = {**client, "how": CLIENT_HOW.get(ClientHow(how)) if how in CLIENT_HOW else how}
    message = calls.get("message")
    return {
        "client": client,
        "ticket": {**calls["ticket"], "json": pretty(calls["ticket"]["body"])},
        "message": {**message, "json": pretty(message["body"])} if message else None,
        "reply": calls.get("reply"),
    }
