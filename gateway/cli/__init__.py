"""The `gateway` console script: operators' and scripts' commands, each with `--json`."""

from __future__ import annotations

import json
import sys
from functools import cached_property

import click

from gateway.settings import Settings


class Context:
    """What commands share: settings from the environment and a database built on first use."""

    def __init__(self):
        self.settings = Settings.from_env()

    @cached_property
    def db(self):
        from gateway.db import Database

        return Database.from_settings(self.settings)


pass_context = click.make_pass_decorator(Context, ensure=True)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def emit(data, as_json: bool, human: str | None = None) -> None:
    """Print `data` as JSON for scripts, or a human line."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))
    else:
        click.echo(human if human is not None else json.dumps(data, indent=2, default=str))


def fail(message: str, as_json: bool, code: str = "ERROR", exit_code: int = 1):
    """Report a failure the same way in both output modes, then exit non-zero."""
    if as_json:
        click.echo(json.dumps({"error": {"code": code, "message": message}}), err=True)
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(exit_code)


@click.group()
def main():
    """Records Request Gateway administration."""
    from gateway.logs import configure_logging

    configure_logging(Settings.from_env().log_level)


def run():
    """Console-script entry point: the command groups of every domain, then click."""
    from gateway.cli import (  # noqa: F401  (they register their commands on `main`)
        audit,
        disclosures,
        fhir,
        identity,
        maintenance,
        routing,
    )

    main()


@main.group()
def db():
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@json_option
@pass_context
def db_upgrade(ctx: Context, revision: str, as_json: bool):
    """Apply migrations up to REVISION."""
    from gateway import migrate

    migrate.upgrade(ctx.settings.database_url, revision)
    current = migrate.current_revision(ctx.db.engine)
    emit({"revision": current}, as_json, f"database at revision {current}")


@db.command("downgrade")
@click.argument("revision")
@json_option
@pass_context
def db_downgrade(ctx: Context, revision: str, as_json: bool):
    """Revert migrations down to REVISION ("base" empties the schema)."""
    from gateway import migrate

    migrate.downgrade(ctx.settings.database_url, revision)
    current = migrate.current_revision(ctx.db.engine)
    emit({"revision": current}, as_json, f"database at revision {current}")


@db.command("current")
@json_option
@pass_context
def db_current(ctx: Context, as_json: bool):
    """Show the database's revision and the code's head."""
    from gateway import migrate

    data = {"revision": migrate.current_revision(ctx.db.engine),
            "head": migrate.head_revision(ctx.settings.database_url)}
    emit(data, as_json, f"database {data['revision']}, code head {data['head']}")


@db.command("grant-app-role")
@click.option("--role", required=True, help="The existing PostgreSQL role the application connects as.")
@click.option("--print-only", is_flag=True, help="Print the statements instead of running them.")
@json_option
@pass_context
def db_grant_app_role(ctx: Context, role: str, print_only: bool, as_json: bool):
    """Give ROLE the application's privileges (run as the owner, after every upgrade): rows only;
    the audit trail INSERT and SELECT only."""
    from gateway.db_roles import RoleError, grant_app_role

    try:
        statements = grant_app_role(ctx.db.engine, role, apply=not print_only)
    except RoleError as error:
        fail(str(error), as_json, "ROLE_REFUSED", 2)
    emit({"role": role, "applied": not print_only, "statements": statements}, as_json,
         "\n".join(f"{statement};" for statement in statements) if print_only
         else f"granted {role} the application's privileges ({len(statements)} statements)")


@main.command("config")
@json_option
@pass_context
def show_config(ctx: Context, as_json: bool):
    """Show the effective settings, secrets masked."""
    emit(ctx.settings.redacted(), as_json)


@main.command("worker")
@click.option("--facility", "facilities", multiple=True, help="Facility code (repeatable); default all queues.")
@click.option("--maintenance", is_flag=True,
              help="Also (or, without --facility, only) the gateway's own queue: webhooks, e-mail, sweeps, batches.")
@click.option("--all-facilities", is_flag=True, help="Every facility's queue (the facility worker class).")
@click.option("--review", is_flag=True, help="The legal and sensitive review queues (the review worker class).")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@click.option("--metrics-port", type=int, default=None,
              help="Serve this worker's Prometheus metrics (hand-over latency) on this port.")
@click.option("--fork", is_flag=True,
              help="Run each job in a work horse forked from this warm process (isolation; slower) instead of "
                   "in the worker process itself.")
@pass_context
def worker(ctx: Context, facilities: tuple[str, ...], maintenance: bool, all_facilities: bool, review: bool,
           burst: bool, metrics_port: int | None, fork: bool):
    """Run an RQ worker on the given queues, by default all of them (SIGTERM finishes the job in hand).

    Jobs run in this process on a runtime built once (gateway.routing.workers explains the model).
    Deployments run one worker class per kind of queue (review, facilities, maintenance) and scale each
    on its own queue length (infra/k8s/, docker-compose.yml)."""
    if metrics_port is not None:
        serve_process_metrics(metrics_port)
    from gateway.facilities.service import list_facilities
    from gateway.intake.routing_policy import REVIEW_QUEUES
    from gateway.routing import queues
    from gateway.routing.workers import run_worker

    with ctx.db.transaction() as session:
        known = [f.code for f in list_facilities(session)]
    unknown = sorted(set(facilities) - set(known))
    if unknown:
        fail(f"unknown facility: {', '.join(unknown)}", False, "FACILITY_UNKNOWN", 2)
    # Facilities added later are listened to after a restart (a rollout), as with --facility.
    chosen = known if all_facilities else list(facilities)
    names = ([*REVIEW_QUEUES] if review else []) + [queues.facility_queue(code) for code in chosen] \
        + ([queues.MAINTENANCE] if maintenance else [])
    ctx.db.dispose()  # the runtime builds the worker's own engine; this one only listed the facilities
    from gateway.sqlite_turns import give_this_process_priority

    give_this_process_priority()  # on SQLite, hand-overs write before intake does (gateway.sqlite_turns)
    run_worker(ctx.settings, names or queues.all_queues(known), burst=burst, fork=fork)


def serve_process_metrics(port: int) -> None:
    """Export what this worker's jobs (or this relay) observe, from the process's own port.

    A worker's jobs may run in forked work horses.

    A work horse's values die with it unless they are written to files: multiprocess mode needs
    PROMETHEUS_MULTIPROC_DIR before prometheus_client is first imported, so a private folder is made
    here when the environment names none (the container images set one on a writable volume).
    """
    import os
    import tempfile

    if "prometheus_client" in sys.modules and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        fail("prometheus_client was imported before the metrics folder was set", False, "METRICS_SETUP", 2)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="gateway-metrics-"))
    from prometheus_client import start_http_server

    from gateway.metrics import exporter_registry

    start_http_server(port, registry=exporter_registry())
