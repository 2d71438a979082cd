"""The operators' admin page: sign in, the event list, one event with Replay (the sources page
and its try-it form: ``admin_sources.py``, on the same blueprint).

Server-rendered (Jinja, autoescaped) and usable without JavaScript. Signing in with
BRIDGE_ADMIN_TOKEN puts a fingerprint of the token and a session id in the signed session
cookie, so a new token signs everyone out, and signing out revokes that session id for every
process. The cookie is signed with SECRET_KEY or else a random key kept in the database, never
with anything derived from the token; wrong tokens are throttled per client address
(``bridge/http/throttle.py``). Every form is a FlaskForm carrying its own CSRF token: a global
CSRFProtect would refuse the webhooks, which carry none.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import math
import re
import shlex
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from secrets import token_urlsafe
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Request,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from markupsafe import escape
from werkzeug import Response
from wtforms import PasswordField, SubmitField
from wtforms.validators import DataRequired

from bridge.errors import BadFilter, BridgeError, StoreUnavailable, TooManyAttempts
from bridge.http import throttle
from bridge.http.admin_chart import chart
from bridge.http.admin_raw import request_view
from bridge.http.admin_time import RANGES, moment, parse_since, when
from bridge.log import scrub
from bridge.providers import PROVIDERS
from bridge.providers.base import TokenAuth
from bridge.replay import plausible_event_id, replay_event
from bridge.runtime import Runtime, get_runtime
from bridge.status import PENDING, ClientHow, Status, Step
from bridge.store import ListFilter
from bridge.tickets import human_size

admin_page = Blueprint("admin_page", __name__, url_prefix="/admin")


class AdminSessions(SecureCookieSessionInterface):
    """The signed session cookie belongs to the admin page: elsewhere (a burst of webhooks) no
    cookie is read and no signer is built, and ``session`` is Flask's read-only null session."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path != "/admin" and not request.path.startswith("/admin/"):
            return None
        if not get_runtime(app).settings.admin_token:
            return None  # no admin page (404)
        if not app.secret_key:
            # the database's key, read once; while the database does not answer there is no
            # session, and require_sign_in answers 503
            with contextlib.suppress(StoreUnavailable):
                app.secret_key = get_runtime(app).session_key()
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        """Secure whenever the request came over HTTPS (X-Forwarded-Proto behind the router)."""
        return bool(super().get_cookie_secure(app)) or request.is_secure


PAGE_SIZE, MAX_PAGE_SIZE = 50, 200
SESSION_SECONDS = 12 * 3600
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
HSTS = "max-age=31536000"  # on HTTPS answers only: a browser ignores it on plain HTTP anyway
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CSRF_REFUSED = "The form expired or did not come from this page (CSRF check). Reload the page and try again."


class SignInForm(FlaskForm):
    token = PasswordField("Admin token", validators=[DataRequired()])
    submit = SubmitField("Sign in")


class SignOutForm(FlaskForm):
    submit = SubmitField("Sign out")


class ReplayForm(FlaskForm):
    replay = SubmitField("Replay")
    force = SubmitField("Replay (new ticket)")


# --- signing in ------------------------------------------------------------------------


def _fingerprint(token: str) -> str:
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, b"admin:" + token.encode(), hashlib.sha256).hexdigest()


def _signed_in(token: str) -> bool:
    fresh = time.time() - float(session.get("admin_since", 0)) < SESSION_SECONDS
    if not fresh or not hmac.compare_digest(str(session.get("admin", "")), _fingerprint(token)):
        return False
    session_id = session.get("sid")
    return isinstance(session_id, str) and not get_runtime().store.access.is_revoked(session_id)


@admin_page.before_request
def require_sign_in() -> ResponseReturnValue | None:
    """No admin token configured: the page does not exist. Otherwise signed in, or off to sign in."""
    token = get_runtime().settings.admin_token
    if not token:
        abort(404)
    if not current_app.secret_key:
        raise StoreUnavailable("the database is not answering; retry later")
    if request.endpoint == "admin_page.sign_in" or _signed_in(token):
        return None
    back = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("admin_page.sign_in", next=back))


@admin_page.after_request
def harden(response: Response) -> Response:
    """Security headers, and no configured secret on any page, whatever a sender put in its data."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.is_secure:
        response.headers["Strict-Transport-Security"] = HSTS
    if response.mimetype == "text/html" and not response.direct_passthrough:
        secrets = [s for s in get_runtime().secrets() if len(s) >= 4]
        escaped = [str(escape(s)) for s in secrets]  # as the page holds them
        response.set_data(scrub(response.get_data(as_text=True), [*secrets, *escaped]))
    return response


@admin_page.context_processor
def page_helpers() -> dict[str, Any]:
    return {
        "signout_form": SignOutForm(formdata=None, prefix="signout"),
        "when": when,
        "at": functools.partial(moment, now=datetime.now(UTC)),
        "size": human_size,
        "statuses": tuple(Status),
        "Status": Status,
    }


def _safe_next() -> str:
    """Back where the operator was going, never off this admin page."""
    target = request.args.get("next", "")
    return target if target.startswith("/admin") else url_for("admin_page.events_list")


@admin_page.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> ResponseReturnValue:
    form = SignInForm()
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template("admin/sign_in.html", form=form), status
    try:
        failures = throttle.check_allowed()
    except TooManyAttempts as exc:
        form.token.errors = [
            f"Too many wrong tokens from this address: try again in {math.ceil(exc.retry_after / 60)} min."
        ]
        response = make_response(render_template("admin/sign_in.html", form=form), 429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    token = get_runtime().settings.admin_token or ""
    if not hmac.compare_digest(form.token.data.encode(), token.encode()):
        throttle.failed()
        form.token.errors = ["Wrong admin token."]
        return render_template("admin/sign_in.html", form=form), 401
    throttle.succeeded(failures)
    session.clear()
    session.update(admin=_fingerprint(token), admin_since=time.time(), sid=token_urlsafe(24))
    return redirect(_safe_next(), 303)


@admin_page.post("/sign-out")
def sign_out() -> ResponseReturnValue:
    """Signs out for good: a copy of the cookie is refused from now on, in every process."""
    if not SignOutForm(prefix="signout").validate_on_submit():
        return _refused()
    expires = datetime.fromtimestamp(float(session.get("admin_since", 0)) + SESSION_SECONDS, UTC)
    get_runtime().store.access.revoke_session(str(session["sid"]), expires)
    session.clear()
    flash("Signed out.", "ok")
    return redirect(url_for("admin_page.sign_in"), 303)


def _refused(message: str = CSRF_REFUSED, status: int = 400) -> ResponseReturnValue:
    return render_template("admin/error.html", message=message), status


# --- events ---------------------------------------------------------------------------


@admin_page.get("/")
@admin_page.get("/events")
def events_list() -> ResponseReturnValue:
    runtime = get_runtime()
    queries = runtime.store.queries
    now = datetime.now(UTC)
    try:
        filters = list_filters(request.args, now)
    except BadFilter as exc:
        return _refused(f"Not a filter: {exc.message}.", 400)
    where = ListFilter(filters["status"], filters["source"], filters["q"], filters["since_at"])
    rows, next_cursor = queries.list_page(where, _page_size(), _cursor())
    for row in rows:
        row["subject"] = row["ticket_subject"] or row["message_subject"] or ""
        row["sender"] = sender_of({"name": row["sender_name"], "email": row["sender_email"]})
    counts = queries.count_by_status(where)
    links = {k: v for k, v in filters.items() if k != "since_at"}
    sources = sorted(set(runtime.sources.sources) | set(queries.latest_by_source()))
    next_url = url_for(".events_list", **links, limit=request.args.get("limit"), cursor=next_cursor)
    first_run = not rows and not _cursor() and not any(links.values())
    hours = [] if first_run else queries.hourly(now, source=filters["source"])
    return render_template(
        "admin/events.html",
        rows=rows,
        counts=counts,
        filters=links,
        ranges=RANGES,
        sources=sources,
        next_url=next_url if next_cursor else None,
        paged=bool(_cursor()),
        pause=queries.delivery_pause(),
        probe_seconds=runtime.settings.probe_seconds,
        chart=chart(hours),
        first_run=first_event(runtime) if first_run else None,
        refresh=any(row["status"] in PENDING for row in rows),
    )


def list_filters(args: Mapping[str, str], now: datetime) -> dict[str, Any]:
    """The list's filters (status, source, q, since as given, and since_at, the moment) from a
    query string or a form; raises BadFilter for a ``since`` that names no time or a control
    character (which no source or sender holds, and PostgreSQL refuses in text)."""
    status = args.get("status") or None
    source = (args.get("source") or "")[:100] or None
    q = (args.get("q") or "").strip()[:200] or None
    since = (args.get("since") or "").strip()[:64]
    if any(CONTROL.search(value) for value in (source or "", q or "", since)):
        raise BadFilter("a filter must not contain control characters")
    since_at = parse_since(since, now)
    return {
        "status": Status(status) if status in tuple(Status) else None,
        "source": source,
        "q": q,
        "since": since if since_at else None,
        "since_at": since_at,
    }


def _page_size() -> int:
    raw = request.args.get("limit", "")
    return min(max(int(raw), 1), MAX_PAGE_SIZE) if raw.isascii() and raw.isdigit() else PAGE_SIZE


def _cursor() -> str | None:
    cursor = request.args.get("cursor") or ""
    return cursor if plausible_event_id(cursor) else None


# the kinds a first event is easiest to send with curl, best first
FIRST_KINDS = ("json", "form")


def first_event(runtime: Runtime) -> dict[str, Any]:
    """How to send a first event: a curl line for one configured source (a ``json`` or ``form``
    source if there is one), its URL and where to try it; ``source`` None without sources."""
    rank = {kind: number for number, kind in enumerate(FIRST_KINDS)}
    sources = sorted(
        runtime.sources.sources.values(), key=lambda s: (rank.get(s.kind, len(rank)), bool(s.secret), s.name)
    )
    if not sources:
        return {"source": None}
    source = sources[0]
    provider = PROVIDERS[source.kind]
    url = f"{request.host_url}hooks/{source.name}"
    content_type, sample = provider.sample
    command = ["curl", "-s", "-H", f"Content-Type: {content_type}"]
    if source.secret and isinstance(provider, TokenAuth):
        command += ["-H", f"{TokenAuth.header}: YOUR-SECRET"]
    command += ["--data-binary", sample, url]
    return {
        "source": source.name,
        "kind": source.kind,
        "url": url,
        "curl": shlex.join(command),
        "token": bool(source.secret) and isinstance(provider, TokenAuth),
        "signed": bool(source.secret) and not isinstance(provider, TokenAuth),
        "setup": provider.sender_setup.format(url=url),
    }


def sender_of(message: dict[str, Any]) -> str:
    name, email = message.get("name") or "", message.get("email") or ""
    return f"{name} <{email}>" if name and email else name or email


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@admin_page.get("/events/<event_id>")
def event_page(event_id: str) -> ResponseReturnValue:
    queries = get_runtime().store.queries
    event = queries.get_event(event_id) if plausible_event_id(event_id) else None
    if event is None:
        return _refused(f"There is no event {event_id!r}.", 404)
    message = event["message"] or {}
    attempts = queries.list_attempts(event_id)
    raw = queries.raw_request(event_id)
    return render_template(
        "admin/event.html",
        event=event,
        raw=request_view(raw) if raw else None,
        refresh=event["status"] in PENDING,
        message=message,
        sender=sender_of(message),
        fields_json=pretty(message.get("fields") or {}),
        ticket_json=pretty(event["ticket_request"]) if event["ticket_request"] else None,
        attempts=attempts,
        steps=delivery_steps(event, attempts),
        client=client_view(event),
        thread=thread_view(event),
        first_message=message_view(event),
        files=file_states(event, message, get_runtime().settings.max_attachment_bytes),
        planned=bool(event["ticket_request"]),
        form=ReplayForm(formdata=None),
        AMBIGUOUS=AMBIGUOUS,
    )


# what the event page shows of the delivery steps (bridge/steps.py): each from the event's
# columns, its plan and its attempts; nothing here asks SPP

CLIENT_HOW = {
    ClientHow.MAPPED: "from the sources file",
    ClientHow.FOUND: "looked up in SPP",
    ClientHow.CREATED: "created in SPP",
    ClientHow.DEFAULT: "default user",
}
FINISHED_UNDELIVERED = (Status.FAILED, Status.DISCARDED)
AMBIGUOUS = {
    Step.CLIENT: "SPP may have created a client we never heard of",
    Step.TICKET: "SPP may have created a ticket we never heard of",
    Step.MESSAGE: "SPP may have posted a message we never heard of",
}


def delivery_steps(event: dict[str, Any], attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Client, ticket and message, in the order delivery takes them: each with its state (done,
    waiting, failed, not reached, not needed), what it came to, and its attempts. None for an
    event that was never mapped to a ticket."""
    purged = event["purged_at"] is not None
    if not event["ticket_request"] and not (purged and event["status"] != Status.DISCARDED):
        return []
    plan = event["plan"] or {}
    how = event["client_how"]
    client_note = f"client {event['client_id']}, {CLIENT_HOW[ClientHow(how)]}" if how in CLIENT_HOW else None
    if event["thread_of"]:
        ticket_note = f"joined ticket {event['ticket_id']} of event {event['thread_of']}"
    else:
        ticket_note = f"ticket {event['ticket_id']}"
    if purged:  # the plan is gone: what the columns say was done stands for what was planned
        client_needed = how in (ClientHow.FOUND, ClientHow.CREATED)
        message_needed = event["spp_message_id"] is not None
    else:
        client_needed, message_needed = bool(plan.get("client")), bool(plan.get("message"))
    rows = [
        (Step.CLIENT, client_needed, event["client_id"], client_note),
        (Step.TICKET, True, event["ticket_id"], ticket_note),
        (Step.MESSAGE, message_needed, event["spp_message_id"], f"message {event['spp_message_id']}"),
    ]
    status, stopped = event["status"], False
    steps = []
    for step, needed, done, note in rows:
        detail: str | None = None
        if not needed:
            state = "not needed"
            detail = client_note if step == Step.CLIENT else "the body is in the ticket's note (message: false)"
        elif done is not None:
            state, detail = "done", note
        elif status == Status.DELIVERED:  # SPP's answer carried no id
            state = "done"
        elif stopped:
            state = "not reached" if status in FINISHED_UNDELIVERED else "waiting"
        else:
            stopped = True
            state = "failed" if status in FINISHED_UNDELIVERED else "waiting"
            detail = event["last_error"]
        mine = [a for a in attempts if a["step"] == step]
        steps.append({"name": str(step), "state": state, "detail": detail, "attempts": mine})
    return steps


def client_view(event: dict[str, Any]) -> dict[str, Any]:
    """The SPP client and how it was found; while it is not known, whom delivery looks up."""
    plan = (event["plan"] or {}).get("client") or {}
    how = event["client_how"]
    client_id = event["client_id"]
    if client_id is None and how is None and not plan:  # an event stored before clients were recorded
        client_id = (event["ticket_request"] or {}).get("user_id")
    return {
        "id": client_id,
        "how": CLIENT_HOW.get(ClientHow(how)) if how in CLIENT_HOW else None,
        "lookup": plan if plan and client_id is None else None,
        "name": " ".join(p for p in (plan.get("name_f"), plan.get("name_l")) if p),
    }


def thread_view(event: dict[str, Any]) -> dict[str, Any] | None:
    """For an email reply: the earlier event whose ticket it joined, or what it answered."""
    reply = (event["plan"] or {}).get("reply")
    if not event["thread_of"] and not reply:
        return None
    return {
        "earlier": event["thread_of"],
        "ticket_id": event["ticket_id"],
        "references": (reply or {}).get("references") or [],
        "ticket_ref": (reply or {}).get("ticket_ref"),
        "own_ticket": not event["thread_of"] and event["ticket_id"] is not None,
    }


def message_view(event: dict[str, Any]) -> dict[str, Any] | None:
    """The message posted on the ticket (or to be): the reply's own words when it joined an
    earlier ticket, else the sender's message. None with ``message: false``."""
    plan = event["plan"] or {}
    message = plan.get("message")
    if not message:
        return None
    reply = plan.get("reply") if event["thread_of"] else None
    text = reply["text"] if reply else message["text"]
    return {"id": event["spp_message_id"], "text": text, "joined": reply is not None}


def file_states(event: dict[str, Any], message: dict[str, Any], max_bytes: int) -> list[dict[str, Any]]:
    """Each attachment of the message and what became of it: sent with the message (its number
    is in the plan's files), listed as a link, too large, or not sent and why."""
    plan = event["plan"] or {}
    planned = plan.get("message")
    sent = set(planned.get("files") or []) if planned else set()
    files = []
    for number, attachment in enumerate(message.get("attachments") or []):
        url, problem, size = attachment.get("url"), attachment.get("problem"), attachment.get("size") or 0
        link = url if isinstance(url, str) and url.lower().startswith(("https://", "http://")) else None
        if number in sent:
            state = "sent with the message" if event["spp_message_id"] else "to be sent with the message"
        elif url:
            state = "listed as a link"
        elif problem:
            state = f"not sent: {problem}"
        elif size > max_bytes:
            state = f"too large: over the {human_size(max_bytes)} limit, listed by name"
        elif not event["ticket_request"]:
            state = "not sent: no ticket"
        elif not planned:
            state = "not sent: listed in the ticket's note (message: false)"
        else:
            state = "not sent: its content did not come with the request"
        files.append({**attachment, "state": state, "sent": number in sent, "link": link, "size": size})
    return files


@admin_page.post("/events/<event_id>/replay")
def replay(event_id: str) -> ResponseReturnValue:
    form = ReplayForm()
    if not form.validate_on_submit():
        return _refused()
    try:
        status = replay_event(get_runtime(), event_id, force=bool(form.force.data))
    except BridgeError as exc:  # 404 unknown, 409 not replayable, 422 still unmappable
        flash(f"Not replayed: {exc.message}", "error")
    else:
        flash(f"Replayed: the event is {status}; the worker will deliver it shortly.", "ok")
    return redirect(url_for(".event_page", event_id=event_id), 303)
