"""Running RQ workers and looking after failed jobs: JSON serializer, explicit Redis connection.

The worker model (issue 18).  RQ's default `Worker` forks a work horse per
job; every job then started from a cold copy and rebuilt settings, engine and
S3 client — 0.64 s of a 0.65 s inbox hand-over.  `gateway worker` now runs
jobs in its own process (`GatewayWorker`, RQ's `SimpleWorker`) on the
runtime built once before the first job (`gateway.runtime`).  That is safe
here because every job is a plain function of ids that owns its
transactions (a job that raises rolls back and leaves nothing behind in the
process) and holds no per-job global state; what it costs, and how each is
covered:

- Timeouts still work: `SimpleWorker` runs the job under RQ's
  `UnixSignalDeathPenalty` (SIGALRM in the worker's main thread), so a job
  past `GATEWAY_JOB_TIMEOUT` raises `JobTimeoutException`, is failed and
  retried by RQ, and the worker takes the next job.
- A job that raises never stops the worker: RQ records the failure (retry or
  failed registry) and logs it; the loop goes on.
- A job that takes the process down (segfault in a C extension, OOM kill)
  takes the worker with it, loudly: the process exits non-zero for its
  supervisor (`make run`, compose's restart policy, Kubernetes) to restart.
  Its job stays "started" in RQ; it is retried once `job_timeout` plus
  `ABANDON_MARGIN` seconds pass without it finishing — `get_heartbeat_ttl`
  below shortens RQ's fixed +60 s so a killed worker's job comes back
  quickly — by whichever worker sweeps the registries next (every
  `GATEWAY_WORKER_MAINTENANCE_INTERVAL` seconds, and at every worker's start).
  Two RQ defaults would stretch that to minutes, and both are shortened here:
  an idle worker sweeps only when its blocking dequeue returns, which RQ lets
  wait `worker_ttl - 15` (405) seconds — here at most one maintenance
  interval (`dequeue_timeout`); and a queue's sweep lock lives 899 s, so a
  worker killed while sweeping stopped every sweep of that queue for fifteen
  minutes — here `SWEEP_LOCK_TTL` (`GatewayQueue`).
  A job retried like that may have acted already: jobs are idempotent
  (`JobEffect`, sinks' idempotency keys).  A worker killed in the instant
  between taking a job off its queue and marking it started: if it works one
  queue, RQ moved the job to the queue's intermediate list, and fails (so
  retries) it after a minute, this worker after `STUCK_AFTER` seconds
  (`GatewayQueue`); if it works several (every default worker does), RQ took
  the job with BLPOP and it is in no list at all — RQ never finds it.  For
  route jobs the relay does (`gateway.routing.reconcile`): the outbox knows
  which hand-overs are still owed, and a job RQ holds nowhere is published
  again.

`gateway worker --fork` keeps RQ's forking model for isolation (a job's
memory given back after every job), but forks from the warm parent: the
runtime is built before the first fork and each work horse only drops the
inherited pool's connections (`dispose(close=False)`, so the parent's stay
usable) instead of rebuilding everything.

RQ's warm shutdown on SIGTERM lets the job in hand finish, in both models.
The scheduler is on so that retry intervals (`dispatch.JOB_RETRY_INTERVALS`)
are honoured.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import redis
from rq import Queue, SimpleWorker, Worker
from rq.defaults import DEFAULT_WORKER_TTL
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import now as rq_now

from gateway.settings import Settings

log = logging.getLogger("gateway.routing.workers")

# Seconds past a job's timeout after which a "started" job whose worker vanished counts as abandoned.  The
# timeout itself is enforced inside the worker, so a live worker has finished (or failed) the job by then.
ABANDON_MARGIN = 10


# Seconds a job may sit taken off its queue but not started before it counts as its worker's casualty.  A live
# worker starts a job within milliseconds of taking it; RQ's own rule is a minute.
STUCK_AFTER = 15


# Seconds a queue's registry-sweep lock lives if its holder dies mid-sweep (RQ: 899).  A sweep takes
# milliseconds; the lock only keeps two workers from sweeping the same queue at once.
SWEEP_LOCK_TTL = 30


class _PromptIntermediateQueue(IntermediateQueue):
    def should_be_cleaned_up(self, job_id: str) -> bool:
        first_seen = self.get_first_seen(job_id)
        # RQ's clock, as RQ stamped first_seen with it (Redis bookkeeping, never a date the rules see).
        return first_seen is not None and rq_now() - first_seen > timedelta(seconds=STUCK_AFTER)


class GatewayQueue(Queue):
    """RQ's queue, whose taken-but-never-started jobs come back after STUCK_AFTER seconds, not a minute, and
    whose sweep lock outlives a dead sweeper by SWEEP_LOCK_TTL seconds, not fifteen minutes."""

    @property
    def intermediate_queue(self) -> IntermediateQueue:
        return _PromptIntermediateQueue(self.key, connection=self.connection)

    def acquire_maintenance_lock(self) -> bool:
        return bool(self.connection.set(self.registry_cleaning_key, 1, nx=True, ex=SWEEP_LOCK_TTL))


def connect(settings: Settings) -> redis.Redis:
    """The Redis connection workers and job tools use."""
    return redis.Redis.from_url(settings.redis_url)


def _abandon_after(job: Job) -> int:
    if job.timeout == -1:
        return DEFAULT_WORKER_TTL
    return int(job.timeout or Queue.DEFAULT_TIMEOUT) + ABANDON_MARGIN


class _SweepsWhenIdle:
    """An idle worker wakes from its blocking dequeue every maintenance interval, so it sweeps RQ's registries
    (and finds a dead worker's job) on time even when no new job arrives."""

    @property
    def dequeue_timeout(self) -> int:
        return max(1, min(self.worker_ttl - 15, int(self.maintenance_interval)))


class GatewayWorker(_SweepsWhenIdle, SimpleWorker):
    """Runs each job in this process, on the runtime built before the first one (see the module's docstring)."""

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """How long the job's "started" entry lives: its timeout plus a short margin (RQ adds 60 s)."""
        return _abandon_after(job)


class GatewayForkWorker(_SweepsWhenIdle, Worker):
    """RQ's forking worker, forking from a parent whose runtime is already built (`--fork`)."""

    def main_work_horse(self, job: Job, queue: Queue):
        from gateway.runtime import runtime

        # The parent's pooled connections must not be shared with the horse: forget them here, without
        # closing the sockets the parent still uses.
        runtime().db.engine.dispose(close=False)
        super().main_work_horse(job, queue)


def run_worker(settings: Settings, queue_names: list[str], *, burst: bool = False, fork: bool = False) -> bool:
    """Work the named queues until stopped, on a runtime built from `settings` before the first job."""
    from gateway.runtime import Runtime, install
    from gateway.startup_heap import freeze_startup_heap

    install(Runtime.from_settings(settings))  # builds clients; opens no connection (the scheduler forks next)
    connection = connect(settings)
    queues = [GatewayQueue(name, connection=connection, serializer=JSONSerializer) for name in queue_names]
    worker_class = GatewayForkWorker if fork else GatewayWorker
    worker = worker_class(queues, connection=connection, serializer=JSONSerializer, queue_class=GatewayQueue,
                          maintenance_interval=settings.worker_maintenance_interval)
    freeze_startup_heap()  # after the runtime is built, and before a fork worker's work horses share its pages
    log.info("worker starting", extra={"model": "fork" if fork else "in-process", "queues": len(queue_names)})
    return worker.work(burst=burst, logging_level=settings.log_level, with_scheduler=True)


def failed_jobs(settings: Settings, queue_names: list[str]) -> list[dict]:
    """Jobs in the failed-job registries: id, queue, function, arguments (ids only), the error's last line."""
    connection, out = connect(settings), []
    for name in queue_names:
        queue = Queue(name, connection=connection, serializer=JSONSerializer)
        registry = FailedJobRegistry(queue=queue)
        for job_id in registry.get_job_ids():
            job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
            error = (job.latest_result().exc_string if job.latest_result() else "") or ""
            out.append({"id": job_id, "queue": name, "function": job.func_name, "args": list(job.args),
                        "error": error.strip().splitlines()[-1][:200] if error.strip() else None,
                        "failed_at": job.ended_at})
    return out


def requeue(settings: Settings, queue_names: list[str], job_id: str) -> str | None:
    """Put a failed job back on its queue; returns the queue name, or None if no registry has it."""
    connection = connect(settings)
    for name in queue_names:
        registry = FailedJobRegistry(queue=Queue(name, connection=connection, serializer=JSONSerializer))
        if job_id in registry.get_job_ids():
            registry.requeue(job_id)
            return name
    return None
