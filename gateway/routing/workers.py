"""Running RQ workers: JSON serializer, explicit Redis connection, graceful SIGTERM (RQ's own)."""

from __future__ import annotations

import redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from gateway.settings import Settings


def run_worker(settings: Settings, queue_names: list[str], *, burst: bool = False) -> bool:
    """Work the named queues until stopped; RQ's warm shutdown lets the job in hand finish."""
    connection = redis.Redis.from_url(settings.redis_url)
    queues = [Queue(name, connection=connection, serializer=JSONSerializer) for name in queue_names]
    worker = Worker(queues, connection=connection, serializer=JSONSerializer)
    return worker.work(burst=burst, logging_level=settings.log_level)
