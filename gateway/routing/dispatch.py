"""The `Dispatcher` protocol and its RQ implementation: jobs by dotted path, JSON payloads of ids, retries.

Only this module and `workers.py` import rq.  Jobs carry ids and never PHI;
RQ's JSON serializer is used everywhere (never pickle).
"""

from __future__ import annotations

from typing import Protocol

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

# Seconds between a failed job's attempts; after the last it goes to the failed-job registry.
JOB_RETRY_INTERVALS = [5, 30, 120, 600, 1800]
FAILED_TTL = 14 * 24 * 3600


class DispatchUnavailable(Exception):
    """The queue broker could not be reached; the caller keeps the work and retries."""


class Dispatcher(Protocol):
    def enqueue(self, queue: str, function: str, args: list, *, job_id: str, at_front: bool = False) -> str:
        """Put a job on `queue`; returns its id."""

    def lost(self, jobs: dict[str, str]) -> set[str]:
        """Of these jobs ({id: queue}), the ones the broker holds nowhere (see `gateway.routing.reconcile`)."""


class RqDispatcher:
    """Enqueues on Redis through RQ with the JSON serializer and a retry policy."""

    def __init__(self, connection: redis.Redis, *, job_timeout: int | None = None):
        self.connection = connection
        self.job_timeout = job_timeout  # seconds (GATEWAY_JOB_TIMEOUT); None: RQ's default (180)

    def enqueue(self, queue: str, function: str, args: list, *, job_id: str, at_front: bool = False) -> str:
        """Enqueue `function(*args)`; vendor errors become DispatchUnavailable."""
        try:
            job = Queue(queue, connection=self.connection, serializer=JSONSerializer).enqueue(
                function, args=args, job_id=job_id, at_front=at_front, failure_ttl=FAILED_TTL,
                job_timeout=self.job_timeout,
                retry=Retry(max=len(JOB_RETRY_INTERVALS), interval=JOB_RETRY_INTERVALS),
                description=f"{function.rsplit('.', 1)[-1]}({job_id})")
        except redis.RedisError as error:
            raise DispatchUnavailable(type(error).__name__) from None
        return job.id

    def lost(self, jobs: dict[str, str]) -> set[str]:
        """Jobs with no hash, or "queued" or "started" while in neither their queue's list, its intermediate
        list (taken by a single-queue worker) nor its started registry.  Scheduled (a retry waiting), deferred,
        failed and finished jobs are held."""
        try:
            return {job_id for job_id, queue in jobs.items() if self._held_nowhere(job_id, queue)}
        except redis.RedisError as error:
            raise DispatchUnavailable(type(error).__name__) from None

    def _held_nowhere(self, job_id: str, queue_name: str) -> bool:
        try:
            job = Job.fetch(job_id, connection=self.connection, serializer=JSONSerializer)
        except NoSuchJobError:
            return True
        if job.get_status(refresh=False) not in (JobStatus.QUEUED, JobStatus.STARTED):
            return False
        queue = Queue(queue_name, connection=self.connection, serializer=JSONSerializer)
        return (self.connection.lpos(queue.key, job_id) is None
                and self.connection.lpos(queue.intermediate_queue_key, job_id) is None
                and job_id not in queue.started_job_registry)


def give_up_current_job() -> None:
    """Inside an RQ job that is about to fail: no retries left, so it goes to the failed registry at once."""
    from rq import get_current_job

    job = get_current_job()
    if job is not None:
        job.retries_left = 0


class RecordingDispatcher:
    """A development/test dispatcher that keeps jobs in a list (for unit tests of the relay logic)."""

    def __init__(self, fail: bool = False):
        self.jobs: list[tuple[str, str, list, str, bool]] = []
        self.fail = fail

    def enqueue(self, queue: str, function: str, args: list, *, job_id: str, at_front: bool = False) -> str:
        """Record the job, or fail as if Redis were down."""
        if self.fail:
            raise DispatchUnavailable("ConnectionError")
        self.jobs.append((queue, function, args, job_id, at_front))
        return job_id

    def lost(self, jobs: dict[str, str]) -> set[str]:
        """The jobs never recorded here (a test empties `jobs` to play a broker that lost them)."""
        if self.fail:
            raise DispatchUnavailable("ConnectionError")
        recorded = {job_id for _queue, _function, _args, job_id, _front in self.jobs}
        return set(jobs) - recorded
