"""The admin page's actions on waiting and failed events, on the ``admin_page`` blueprint.

On an event's page, "Retry now" and "Cancel" for a ``queued`` or ``retrying`` event; on the
event list, "Replay the N failed events shown", which leads to a confirmation page stating the
count and the filter. Every form is a FlaskForm with its own CSRF token; each action answers
with a flash message and a redirect (POST, then GET). The templates include
``admin/_event_actions.html`` and ``admin/_bulk_replay.html``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import HiddenField, SubmitField

from bridge.errors import BadFilter, BridgeError
from bridge.event_actions import cancel, retry_now
from bridge.http.admin_page import _refused, admin_page, list_filters
from bridge.http.admin_time import RANGES, when
from bridge.replay import count_failed, replay_failed
from bridge.runtime import get_runtime
from bridge.status import Status

PAUSED = "delivery is paused (SPP refuses the API token): it goes out once the pause ends"


class EventActionForm(FlaskForm):
    retry_now = SubmitField("Retry now")
    cancel = SubmitField("Cancel delivery")


class BulkReplayForm(FlaskForm):
    status = HiddenField()
    source = HiddenField()
    q = HiddenField()
    since = HiddenField()
    confirm = SubmitField("Replay them")


@admin_page.context_processor
def action_helpers() -> dict[str, Any]:
    return {"event_action_form": _event_action_form, "failed_shown": failed_shown}


def _event_action_form() -> EventActionForm:
    return EventActionForm(formdata=None, prefix="act")


def failed_shown(filters: dict[str, Any]) -> int:
    """How many failed events the list's filter shows over all its pages (0 when it shows another status)."""
    if filters.get("status") not in (None, Status.FAILED):
        return 0
    try:
        bulk = _bulk_filter(filters)
    except BadFilter:
        return 0  # a filter the bulk replay cannot take: no button rather than a count of other events
    return count_failed(get_runtime(), bulk["source"], bulk["since_at"], bulk["q"])


# --- one event ------------------------------------------------------------------------


@admin_page.post("/events/<event_id>/retry")
def retry_event(event_id: str) -> ResponseReturnValue:
    if not EventActionForm(prefix="act").validate_on_submit():
        return _refused()
    try:
        retried = retry_now(get_runtime(), event_id)
    except BridgeError as exc:  # 404 unknown, 409 not waiting
        flash(f"Not retried: {exc.message}", "error")
    else:
        then = PAUSED if retried.delivery_paused else "the worker sends it shortly"
        flash(f"Retry now: the event is due; {then}.", "ok")
    return redirect(url_for(".event_page", event_id=event_id), 303)


@admin_page.post("/events/<event_id>/cancel")
def cancel_event(event_id: str) -> ResponseReturnValue:
    if not EventActionForm(prefix="act").validate_on_submit():
        return _refused()
    try:
        cancel(get_runtime(), event_id)
    except BridgeError as exc:
        flash(f"Not cancelled: {exc.message}", "error")
    else:
        flash("Cancelled: the event is failed and will not be delivered; Replay brings it back.", "ok")
    return redirect(url_for(".event_page", event_id=event_id), 303)


# --- failed events of the list's filter ---------------------------------------------------


def _bulk_filter(args: Any) -> dict[str, Any]:
    """The list's filter as the list passes it (``list_filters``), status failed or none;
    raises BadFilter."""
    filters = list_filters(args, datetime.now(UTC))
    return {**filters, "status": Status.FAILED if filters["status"] == Status.FAILED else None}


@admin_page.get("/events/replay-failed")
def confirm_replay() -> ResponseReturnValue:
    """The confirmation: how many failed events the filter holds now, and the filter."""
    try:
        bulk = _bulk_filter(request.args)
    except BadFilter as exc:
        return _refused(exc.message, 400)
    since = bulk.pop("since_at")
    filters = bulk
    count = count_failed(get_runtime(), filters["source"], since, filters["q"])
    # a named range ("last 24 h") is pinned to the moment confirmed, so Confirm replays what was counted
    pinned = {**filters, "since": since.isoformat() if since else None}
    form = BulkReplayForm(formdata=None, data=pinned)
    back = url_for(".events_list", **filters)
    since_text = when(since) if since else None
    if since and filters["since"] in RANGES:
        since_text = f"{RANGES[filters['since']][0]}: {since_text}"
    page = {"count": count, "filters": filters, "since": since_text, "form": form, "back": back}
    return render_template("admin/confirm_replay.html", **page)


@admin_page.post("/events/replay-failed")
def replay_failed_events() -> ResponseReturnValue:
    """Replays the failed events the filter holds at this moment (the count may have moved since
    the confirmation), each in a transaction of its own."""
    form = BulkReplayForm()
    if not form.validate_on_submit():
        return _refused()
    try:
        filters = _bulk_filter(form.data)
    except BadFilter as exc:
        return _refused(exc.message, 400)
    since = filters.pop("since_at")
    done = replay_failed(get_runtime(), filters["source"], since, filters["q"])
    if done.not_replayed:
        flash(
            f"{done.replayed} replayed; {done.not_replayed} not replayed "
            "(they still cannot be mapped, or are no longer failed).",
            "error" if not done.replayed else "ok",
        )
    else:
        flash(f"{done.replayed} replayed.", "ok")
    return redirect(url_for(".events_list", **filters), 303)
