"""Hand-overs per second per worker: `deliver_routed` to the inbox sink beside a no-op RQ job, same worker.

    .venv/bin/python -m bench.handoff [--jobs 500] [--database sqlite|postgresql] [--models in-process,fork]

On one throwaway stack (bench/_stack.py; `--database postgresql` migrates a
fresh database on 127.0.0.1:5432 and drops it at the end):

1. N requests are created, their authorization uploaded and submitted through
   the in-process app, and the outbox relayed (`relay.publish_due`): N real
   `deliver_routed` jobs wait on the facility queues (inbox sinks: the
   facilities have none configured).  Not timed.
2. N no-op jobs (`gateway.routing.jobs.noop`, same argument shape, takes the
   runtime and returns) wait on a queue of their own.  They are the floor:
   everything RQ and the worker model cost per job, with no work in it.
3. For each worker model, one `gateway worker`-equivalent process
   (`run_worker(..., burst=True)`, the same class for both legs) works the
   no-op queue, then another works the facility queues.  Throughput is
   N / (last job's ended_at - first job's started_at) from RQ's own stamps,
   so process start-up and the runtime's construction are not counted; the
   per-job time is ended_at - started_at.
4. The table sets the hand-over beside the no-op for each model, with the
   ratio.  Target: >= 50 hand-overs/s per worker (issue 18).

With `--models fork` the N requests are submitted again (fresh ids) for the
fork leg.  Nothing is asserted; every rq:* key is deleted at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time

from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from bench._stack import PrivateRedisStack
from bench.routing import FACILITIES, create_drafts, delete_keys, percentile, submit
from gateway.adapters import build_redis
from gateway.app import create_app
from gateway.routing import relay
from gateway.routing.dispatch import RqDispatcher
from gateway.routing.queues import facility_queue
from tests.factories import bearer
from tests.fixtures.live import settings_environment

NOOP_QUEUE = "bench-noop"
NOOP_JOB = "gateway.routing.jobs.noop"




def worker_main(queues: list[str], fork: bool) -> None:
    """The child: one worker, burst mode, on settings from the environment (as `gateway worker` does)."""
    from gateway.logs import configure_logging
    from gateway.routing.workers import run_worker
    from gateway.settings import Settings

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    run_worker(settings, queues, burst=True, fork=fork)


def run_worker_process(settings, queues: list[str], fork: bool) -> float:
    """Work `queues` to empty in a child process; its wall time (start-up included, for the record)."""
    env = {**os.environ, **settings_environment(settings)}
    argv = [sys.executable, "-m", "bench.handoff", "--worker", ",".join(queues)] + (["--fork"] if fork else [])
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def job_figures(connection, job_ids: list[str]) -> dict:
    """Throughput and per-job times from RQ's started_at/ended_at stamps."""
    jobs = [j for j in Job.fetch_many(job_ids, connection=connection, serializer=JSONSerializer) if j]
    done = [j for j in jobs if j.get_status() == "finished" and j.started_at and j.ended_at]
    errors = sorted({_why(j) for j in jobs if j.get_status() != "finished"})
    for error in errors:
        print(f"  a job did not finish: {error}", flush=True)
    if not done:
        return {"done": 0, "failed": len(jobs), "per_s": 0.0, "p50": 0.0, "p99": 0.0}
    span = (max(j.ended_at for j in done) - min(j.started_at for j in done)).total_seconds()
    each = [(j.ended_at - j.started_at).total_seconds() * 1e3 for j in done]
    return {"done": len(done), "failed": len(jobs) - len(done), "per_s": len(done) / span if span else 0.0,
            "p50": percentile(each, 50), "p99": percentile(each, 99)}


def _why(job: Job) -> str:
    """A job's status and the last line of its latest error (exception types and our messages: no PHI)."""
    result = job.latest_result()
    lines = (result.exc_string or "").strip().splitlines() if result else []
    return f"{job.get_status()}: {lines[-1][:160] if lines else '(no error recorded)'}"


def prepare_handovers(db, client, headers, connection, count: int, offset: int) -> list[str]:
    """`count` submitted requests relayed onto their facility queues; the RQ job ids."""
    ids = create_drafts(client, headers, count, offset)
    for request_id in ids:
        submit(client, headers, request_id)
    dispatcher = RqDispatcher(connection)
    while relay.publish_due(db, dispatcher, batch=200).done:
        pass
    job_ids = []
    for code in FACILITIES:
        job_ids += Queue(facility_queue(code), connection=connection, serializer=JSONSerializer).get_job_ids()
    return job_ids


def prepare_noops(connection, count: int, tag: str) -> list[str]:
    queue = Queue(NOOP_QUEUE, connection=connection, serializer=JSONSerializer)
    return [queue.enqueue(NOOP_JOB, args=[f"noop-{i}", "x#1"], job_id=f"noop-{tag}-{i}").id for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500, help="jobs per leg (default 500)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--models", default="in-process,fork", help="worker models: in-process, fork")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # child mode: the queues to work
    parser.add_argument("--fork", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker.split(","), args.fork)
        return
    models = [m.strip() for m in args.models.split(",") if m.strip()]

    database_url = None
    if args.database == "postgresql":
        from tests.fixtures.databases import create_pg_database

        database_url = create_pg_database()
    rows = []
    try:
        with PrivateRedisStack(database_url=database_url) as stack:
            settings = dataclasses.replace(stack.settings, log_level="WARNING")
            connection = build_redis(settings)
            delete_keys(connection)
            app = create_app(settings)
            client, headers = app.test_client(), bearer(stack.api_key)
            print(f"stack: {args.database}, redis {settings.redis_url}; {os.cpu_count()} CPUs; one worker "
                  f"process per leg, burst mode; {args.jobs} jobs per leg", flush=True)
            try:
                for index, model in enumerate(models):
                    fork = model == "fork"
                    noop_ids = prepare_noops(connection, args.jobs, model)
                    noop_wall = run_worker_process(settings, [NOOP_QUEUE], fork)
                    noop = job_figures(connection, noop_ids)
                    handover_ids = prepare_handovers(app.extensions["gateway"].db, client, headers, connection,
                                                     args.jobs, offset=index * args.jobs)
                    handover_wall = run_worker_process(settings, [facility_queue(c) for c in FACILITIES], fork)
                    handover = job_figures(connection, handover_ids)
                    rows.append((model, noop, noop_wall, handover, handover_wall))
                    delete_keys(connection)
            finally:
                delete_keys(connection)
                delete_keys(connection, "LIMITS:*")
                app.extensions["gateway"].db.dispose()
    finally:
        if database_url:
            from tests.fixtures.databases import drop_pg_database

            drop_pg_database(database_url)

    print("\nhand-over (deliver_routed → inbox sink) beside a no-op RQ job, one worker, same worker class")
    print(f"{'model':<11} {'job':<9} {'done':>5} {'failed':>6} {'jobs/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'process s':>9}")
    for model, noop, noop_wall, handover, handover_wall in rows:
        for name, figures, wall in (("no-op", noop, noop_wall), ("hand-over", handover, handover_wall)):
            print(f"{model:<11} {name:<9} {figures['done']:>5} {figures['failed']:>6} {figures['per_s']:>8.1f} "
                  f"{figures['p50']:>8.2f} {figures['p99']:>8.2f} {wall:>9.1f}")
        ratio = noop["per_s"] / handover["per_s"] if handover["per_s"] else float("inf")
        print(f"{model:<11} RATIO     no-op/hand-over throughput {ratio:.2f}×; hand-over {handover['per_s']:.1f}/s "
              f"per worker (target ≥ 50/s: {'met' if handover['per_s'] >= 50 else 'NOT met'})")
    print("(jobs/s from RQ's started_at/ended_at of the first and last job; 'process s' is the worker process's "
          "wall time including start-up, for the record)")


if __name__ == "__main__":
    main()
