"""`gateway maintenance sweep|stale`: housekeeping an operator can also run from cron."""

from __future__ import annotations

import click

from gateway.cli import emit, json_option, main, pass_context


@main.group()
def maintenance():
    """Housekeeping."""


@maintenance.command("sweep")
@click.option("--older-than-minutes", type=click.IntRange(0), default=360, show_default=True)
@json_option
@pass_context
def maintenance_sweep(ctx, older_than_minutes, as_json):
    """Remove orphaned staging objects (from killed uploads) and expired idempotency keys."""
    from datetime import timedelta

    from gateway.intake.jobs import sweep_orphans

    data = sweep_orphans(ctx.settings, db=ctx.db, older_than=timedelta(minutes=older_than_minutes))
    emit(data, as_json, f"removed {data['staging_removed']} staging objects, "
                        f"purged {data['idempotency_purged']} idempotency keys")


@maintenance.command("stale")
@json_option
@pass_context
def maintenance_stale(ctx, as_json):
    """Warn about and cancel stale drafts and unanswered returned requests now (the relay does it daily)."""
    from gateway.clock import SystemClock
    from gateway.intake.stale import StalePolicy, sweep

    result = sweep(ctx.db, clock=SystemClock.from_settings(ctx.settings),
                   policy=StalePolicy.from_settings(ctx.settings))
    emit({"warned": result.warned, "closed": result.closed}, as_json,
         f"warned {len(result.warned)} requests, cancelled {len(result.closed)}")
