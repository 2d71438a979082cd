"""``flask --app wsgi bridge …``: worker, replay, retry, cancel, purge, migrate, sandbox, check, alert-test."""

from __future__ import annotations

import logging
import signal
import sys
from datetime import UTC, datetime, timedelta

import click
from flask.cli import AppGroup

from bridge.errors import BridgeError, ConfigError
from bridge.event_actions import CANCEL_REASON, cancel, retry_now
from bridge.providers import PROVIDERS
from bridge.replay import BulkReplay, Progress, replay_event, replay_failed
from bridge.retention import BadAge, describe_age, parse_age, summary
from bridge.runtime import Runtime, get_runtime
from bridge.sources import Source, open_source_warning
from bridge.store import FAILED_MIN_DAYS

bridge_cli = AppGroup("bridge", help="spp-ticket-bridge commands.")
log = logging.getLogger("bridge.cli")


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@bridge_cli.command("migrate")
def migrate_command() -> None:
    """Apply database migrations (the Procfile's release step; safe to run again)."""
    from sqlalchemy.exc import SQLAlchemyError

    from bridge.migrate import upgrade

    try:
        upgrade(get_runtime().store.engine)
    except SQLAlchemyError as exc:
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        fail(f"cannot migrate: the database is not answering ({type(exc).__name__}: {cause})")
    click.echo("database is up to date")


@bridge_cli.command("worker")
def worker_command() -> None:
    """Deliver queued events to SPP until SIGTERM or Ctrl-C."""
    runtime = get_runtime()
    try:
        worker = runtime.worker()
    except ConfigError as exc:
        fail(str(exc))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    runtime.listen_for_events(worker)
    worker.run()


@bridge_cli.command("replay")
@click.argument("event_id", required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Replay every failed event.")
@click.option("--source", help="With --failed: only this source.")
@click.option("--since", type=click.DateTime(), help="With --failed: received at or after (UTC).")
@click.option("--force", is_flag=True, help="Also replay a delivered event (creates a new ticket).")
def replay_command(
    event_id: str | None, all_failed: bool, source: str | None, since: datetime | None, force: bool
) -> None:
    """Map an event again with the current configuration and queue it."""
    runtime = get_runtime()
    if bool(event_id) == all_failed:
        fail("give either an EVENT_ID or --failed")
    if not all_failed and (source or since):
        fail("--source and --since go with --failed")

    def report(n: int, total: int, eid: str, refused: BridgeError | None) -> None:
        if refused is None:
            click.echo(f"[{n}/{total}] {eid}: queued")
        else:
            click.echo(f"[{n}/{total}] {eid}: {refused.message}", err=True)

    try:
        if all_failed:
            done = replay_failed(runtime, source, since, progress=report)
        else:
            done = _replay_one(runtime, event_id or "", force, report)
    except BridgeError as exc:
        fail(exc.message)
    click.echo(f"{done.replayed} queued, {done.not_replayed} not replayed")
    if done.not_replayed and not all_failed:
        sys.exit(1)


def _replay_one(runtime: Runtime, event_id: str, force: bool, report: Progress) -> BulkReplay:
    try:
        replay_event(runtime, event_id, force=force)
    except BridgeError as exc:
        report(1, 1, event_id, exc)
        return BulkReplay(0, 1)
    report(1, 1, event_id, None)
    return BulkReplay(1, 0)


@bridge_cli.command("retry")
@click.argument("event_id")
def retry_command(event_id: str) -> None:
    """Make a queued or retrying event due now (after fixing its cause, or instead of a long Retry-After)."""
    try:
        retried = retry_now(get_runtime(), event_id)
    except BridgeError as exc:
        fail(exc.message)
    click.echo(f"{event_id}: {retried.status}, due now")
    if retried.delivery_paused:
        click.echo("delivery is paused (SPP refuses the API token): it goes out once the pause ends", err=True)


@bridge_cli.command("cancel")
@click.argument("event_id")
def cancel_command(event_id: str) -> None:
    """Stop delivering a queued or retrying event: it becomes failed ("cancelled by the operator")."""
    try:
        status = cancel(get_runtime(), event_id)
    except BridgeError as exc:
        fail(exc.message)
    click.echo(f"{event_id}: {status} ({CANCEL_REASON}); replay brings it back")


class AgeParam(click.ParamType):
    name = "age"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_age(str(value))
        except BadAge as exc:
            self.fail(str(exc), param, ctx)


@bridge_cli.command("purge")
@click.option(
    "--older-than",
    type=AgeParam(),
    help="Age of the finished events to purge: 30d, 12h, 90m, 45s or days [default: BRIDGE_RETENTION_DAYS].",
)
def purge_command(older_than: timedelta | None) -> None:
    """Delete now the request, message and files of delivered and discarded events finished longer
    ago than --older-than, and of failed ones finished longer ago than that or 90 days; print what went."""
    runtime = get_runtime()
    age = older_than if older_than is not None else timedelta(days=runtime.settings.retention_days)
    try:
        purged = runtime.store.retention.purge(datetime.now(UTC), age)
    except BridgeError as exc:
        fail(exc.message)
    failed_age = describe_age(max(age, timedelta(days=FAILED_MIN_DAYS)))
    click.echo(f"purged {purged.events} events (finished over {describe_age(age)} ago; failed: over {failed_age} ago)")
    for line in summary(purged):
        click.echo(f"  {line}")
    if purged.stale_clients:
        click.echo(f"  {purged.stale_clients} stale client look-ups forgotten")


@bridge_cli.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8081, show_default=True, type=int)
@click.option("--token", default="sandbox-token", show_default=True, help="Bearer token it accepts.")
@click.option("--latency-ms", default=0, show_default=True, type=int, help="Delay before every answer.")
@click.option(
    "--fail-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="Share of requests answered 503."
)
@click.option("--quiet", is_flag=True, help="No log line per request (benchmarks).")
def sandbox_command(host: str, port: int, token: str, latency_ms: int, fail_rate: float, quiet: bool) -> None:
    """Run the SPP simulator (the local run and the tests use it instead of a real workspace)."""
    from bridge.sandbox import PortUnavailable, serve

    try:
        serve(host, port, token, latency_ms, fail_rate, quiet)
    except PortUnavailable as exc:
        fail(f"the sandbox cannot start: {exc}")


@bridge_cli.command("check")
@click.option(
    "--base-url",
    envvar="BRIDGE_PUBLIC_URL",
    help="Public URL of the web process, e.g. https://my-bridge.herokuapp.com [env: BRIDGE_PUBLIC_URL]",
)
def check_command(base_url: str | None) -> None:
    """Validate the configuration and print each source's URL, sender set-up and delivery options.

    The configuration is loaded (and refused, with one line) before this runs.
    """
    runtime = get_runtime()
    base = (base_url or f"http://localhost:{runtime.settings.port}").rstrip("/")
    click.echo(f"sources file {runtime.sources.path}: {len(runtime.sources.sources)} source(s)")
    for source in runtime.sources.sources.values():
        url = f"{base}/hooks/{source.name}"
        secret = "with secret" if source.secret else "no secret"
        click.echo(f"  {source.name:<20} {source.kind:<10} {url}  ({secret})")
        click.echo(f"      sender: {PROVIDERS[source.kind].sender_setup.format(url=url)}")
        click.echo(f"      delivery: {_delivery_options(source)}")
    click.echo(f"alerts: {_alert_targets(runtime)}")
    days = runtime.settings.retention_days
    click.echo(f"retention: {days} days (failed events: {max(days, FAILED_MIN_DAYS)})")
    for source in runtime.sources.open_sources():
        click.echo(f"warning: {open_source_warning(source)}", err=True)
    if not runtime.settings.spp_api_url:
        click.echo("warning: SPP_API_URL is not set; web and worker will refuse to start", err=True)


def _alert_targets(runtime: Runtime) -> str:
    """Where alerts go, each target named without its secrets."""
    urls = runtime.settings.alert_urls
    if not urls:
        return "off (BRIDGE_ALERT_URLS is not set)"
    return ", ".join(target.label for target in runtime.alerts().targets)


def _delivery_options(source: Source) -> str:
    """The source's conversation keys as the sources file spells them (``threading`` matters
    for email kinds only)."""
    threading = str(source.threading).lower() + ("" if PROVIDERS[source.kind].threads else " (email kinds only)")
    options = {
        "client_lookup": str(source.client_lookup).lower(),
        "create_clients": str(source.create_clients).lower(),
        "message": str(source.message).lower(),
        "threading": threading,
    }
    return ", ".join(f"{key}: {value}" for key, value in options.items())


@bridge_cli.command("alert-test")
def alert_test_command() -> None:
    """Send one test notification to every BRIDGE_ALERT_URLS target; exit 1 if any did not take it."""
    runtime = get_runtime()
    if not runtime.settings.alert_urls:
        fail("BRIDGE_ALERT_URLS is not set: no target to send a test notification to")
    results = runtime.alerts().send_test()
    for target, taken in results:
        click.echo(f"  {target.label:<40} {'ok' if taken else 'failed'}")
    failed = sum(not taken for _, taken in results)
    click.echo(f"{len(results) - failed} of {len(results)} target(s) took the test notification")
    if failed:
        sys.exit(1)
