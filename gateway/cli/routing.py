"""`gateway outbox relay`, `gateway jobs failed|requeue`, `gateway facilities sink`."""

from __future__ import annotations

import signal
import threading

import click

from gateway.cli import Context, emit, fail, json_option, main, pass_context, serve_process_metrics


def _queues(ctx: Context) -> list[str]:
    from gateway.facilities.service import list_facilities
    from gateway.routing.queues import all_queues

    with ctx.db.transaction() as session:
        return all_queues([f.code for f in list_facilities(session)])


@main.group()
def outbox():
    """The transactional outbox."""


@outbox.command("relay")
@click.option("--once", is_flag=True, help="Publish what is due once and exit.")
@click.option("--metrics-port", type=int, default=None,
              help="Serve the relay's Prometheus metrics (route jobs published again) on this port.")
@json_option
@pass_context
def outbox_relay(ctx, once, metrics_port, as_json):
    """Publish routed work to RQ until stopped (SIGTERM/SIGINT finish the batch in hand)."""
    if metrics_port is not None and not once:
        serve_process_metrics(metrics_port)
    from gateway.adapters import build_checkpoint_store, build_redis
    from gateway.audit.checkpointer import Checkpointer
    from gateway.routing import relay
    from gateway.routing.dispatch import RqDispatcher
    from gateway.routing.housekeeping import Housekeeping
    from gateway.sqlite_turns import give_this_process_priority
    from gateway.startup_heap import freeze_startup_heap

    give_this_process_priority()  # on SQLite, routing writes before intake does (gateway.sqlite_turns)
    dispatcher = RqDispatcher(build_redis(ctx.settings), job_timeout=ctx.settings.job_timeout)
    if once:
        result = relay.publish_due(ctx.db, dispatcher, batch=ctx.settings.outbox_batch_size)
        emit({"published": result.published, "deferred": result.deferred, "notified": result.notified}, as_json,
             f"published {result.published}, deferred {result.deferred}, notified {result.notified}")
        return
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    checkpointer = Checkpointer.from_settings(ctx.settings, ctx.db, build_checkpoint_store(ctx.settings))
    housekeeping = Housekeeping(ctx.settings, ctx.db, dispatcher, checkpointer=checkpointer)
    freeze_startup_heap()
    relay.run(ctx.db, dispatcher, stop=stop, batch=ctx.settings.outbox_batch_size,
              idle=ctx.settings.outbox_poll_interval, lease=ctx.settings.outbox_lease, on_idle=housekeeping.tick,
              notifications_apart=True)


@main.group()
def jobs():
    """RQ jobs."""


@jobs.command("failed")
@json_option
@pass_context
def jobs_failed(ctx, as_json):
    """List jobs in the failed-job registries."""
    from gateway.routing.workers import failed_jobs

    data = failed_jobs(ctx.settings, _queues(ctx))
    emit(data, as_json, "\n".join(f"{j['id']}  {j['queue']}  {j['function']}  {j['error']}" for j in data)
         or "no failed jobs")


@jobs.command("requeue")
@click.argument("job_id")
@json_option
@pass_context
def jobs_requeue(ctx, job_id, as_json):
    """Put a failed job back on its queue."""
    from gateway.routing.workers import requeue

    queue = requeue(ctx.settings, _queues(ctx), job_id)
    if queue is None:
        fail("no failed job with that id", as_json, "NOT_FOUND", 2)
    emit({"id": job_id, "queue": queue}, as_json, f"requeued {job_id} on {queue}")


@main.group()
def facilities():
    """Facilities."""


@facilities.command("sink")
@click.argument("code")
@click.option("--kind", type=click.Choice(["inbox", "webhook", "folder"]), required=True)
@click.option("--url", help="webhook: the facility ROI system's HTTPS endpoint")
@click.option("--secret", help="webhook: the shared HMAC secret (prompted when omitted)")
@click.option("--folder", help="folder: where manifests and documents are dropped")
@json_option
@pass_context
def facilities_sink(ctx, code, kind, url, secret, folder, as_json):
    """Set how a facility receives its routed requests."""
    from gateway.crypto import seal
    from gateway.db import utcnow
    from gateway.facilities.service import get_facility
    from gateway.routing.jobs import SINK_SECRET_PURPOSE
    from gateway.routing.models import FacilitySink

    if kind == "webhook" and not url:
        fail("--url is required for a webhook sink", as_json, "VALIDATION_FAILED", 2)
    if kind == "webhook" and not secret:
        secret = click.prompt("HMAC secret", hide_input=True)
    if kind == "folder" and not folder:
        fail("--folder is required for a folder sink", as_json, "VALIDATION_FAILED", 2)
    with ctx.db.transaction() as session:
        if get_facility(session, code) is None:
            fail("unknown facility", as_json, "FACILITY_UNKNOWN", 2)
        sink = session.get(FacilitySink, code) or FacilitySink(facility=code)
        sink.kind, sink.url, sink.folder, sink.updated_at = kind, url, folder, utcnow()
        sink.secret_sealed = seal(ctx.settings.secret_key, secret, purpose=SINK_SECRET_PURPOSE) if secret else None
        session.add(sink)
    emit({"facility": code, "kind": kind, "url": url, "folder": folder}, as_json, f"{code}: {kind} sink")
