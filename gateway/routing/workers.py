"""Running RQ workers and looking after failed jobs: JSON serializer, explicit Redis connection.

RQ's warm shutdown on SIGTERM lets the job in hand finish.  The scheduler is
on so that retry intervals (`dispatch.JOB_RETRY_INTERVALS`) are honoured.
"""

from __future__ import annotations

import redis
from rq import Queue, Worker
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from gateway.settings import Settings


def connect(settings: Settings) -> redis.Redis:
    """The Redis connection workers and job tools use."""
    return redis.Redis.from_url(settings.redis_url)


def run_worker(settings: Settings, queue_names: list[str], *, burst: bool = False) -> bool:
    """Work the named queues until stopped."""
    connection = connect(settings)
    queues = [Queue(name, connection=connection, serializer=JSONSerializer) for name in queue_names]
    worker = Worker(queues, connection=connection, serializer=JSONSerializer)
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
