"""A job taken off its queue by a worker that died before starting it comes back after STUCK_AFTER seconds.

RQ keeps such a job in the queue's intermediate list and fails it (so retries it) after a minute; the
gateway's queues say after STUCK_AFTER (a live worker starts a job within milliseconds).  Real Redis.
"""

from __future__ import annotations

import uuid

import pytest
from rq.utils import now as rq_now

from gateway.adapters import build_redis
from gateway.routing.workers import STUCK_AFTER, GatewayQueue

pytestmark = pytest.mark.one_database  # Redis only


def test_a_job_stuck_between_taken_and_started_counts_as_stuck_after_stuck_after_seconds(settings):
    redis = build_redis(settings)
    queue = GatewayQueue(f"stuck-{uuid.uuid4().hex[:8]}", connection=redis)
    stuck = queue.intermediate_queue
    job_id = uuid.uuid4().hex
    try:
        assert stuck.set_first_seen(job_id)
        assert not stuck.should_be_cleaned_up(job_id)  # just seen: a live worker may be starting it
        redis.set(stuck.get_first_seen_key(job_id), (rq_now().timestamp() - STUCK_AFTER - 1))
        assert stuck.should_be_cleaned_up(job_id)
        assert STUCK_AFTER < 60  # RQ's own rule is a minute
    finally:
        redis.delete(stuck.get_first_seen_key(job_id))
        redis.close()
