"""The worker model: jobs run in the worker process on a runtime built once; timeouts and failures handled.

A real `gateway worker --burst` in a subprocess works jobs put on the maintenance queue by RQ itself.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from gateway.adapters import build_redis
from gateway.routing.queues import MAINTENANCE
from gateway.routing.workers import ABANDON_MARGIN, SWEEP_LOCK_TTL, GatewayQueue
from tests.routing.helpers import run_worker, start_worker

pytestmark = pytest.mark.one_database  # RQ and the process model; the database plays no part

JOBS = "tests.routing.worker_jobs"


@pytest.fixture
def queue(settings):
    connection = build_redis(settings)
    connection.flushdb()
    return Queue(MAINTENANCE, connection=connection, serializer=JSONSerializer)


def _status(queue, job_id):
    job = Job.fetch(job_id, connection=queue.connection, serializer=JSONSerializer)
    return job, job.get_status()


@pytest.mark.parametrize("fork", [False, True], ids=["in-process", "fork"])
def test_jobs_share_one_process_and_a_timeout_or_an_error_does_not_stop_the_worker(settings, queue, fork):
    first = queue.enqueue(f"{JOBS}.pid", job_id="first")
    queue.enqueue(f"{JOBS}.sleep", args=[30], job_timeout=1, job_id="slow")
    queue.enqueue(f"{JOBS}.fail", job_id="failing")
    queue.enqueue("gateway.routing.jobs.noop", args=["r", "s#1"], job_id="noop")
    last = queue.enqueue(f"{JOBS}.pid", job_id="last")

    result = run_worker(settings, maintenance=True, fork=fork, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]

    slow, status = _status(queue, "slow")
    assert status == JobStatus.FAILED and "JobTimeoutException" in slow.latest_result().exc_string
    failing, status = _status(queue, "failing")
    assert status == JobStatus.FAILED and "RuntimeError" in failing.latest_result().exc_string
    noop, status = _status(queue, "noop")
    assert status == JobStatus.FINISHED and noop.return_value() == {"noop": True}
    pids = [Job.fetch(j.id, connection=queue.connection, serializer=JSONSerializer).return_value()
            for j in (first, last)]
    assert all(pids)
    # In process: the same worker ran the job before and after the timeout and the failure.  Forking: each
    # job had its own work horse.
    assert (pids[0] == pids[1]) is (not fork)


def test_a_job_that_kills_the_process_stops_the_worker_loudly_and_its_job_stays_started(settings, queue):
    """Nothing in-process survives os._exit: the worker exits non-zero (for its supervisor to restart it),
    and the job is left "started", which RQ's registry sweep retries or fails once its timeout and the
    margin have passed (tests/routing/test_multi_instance.py sees that happen)."""
    queue.enqueue(f"{JOBS}.crash", job_timeout=5, job_id="crash")
    result = run_worker(settings, maintenance=True, timeout=60)
    assert result.returncode == 3
    _, status = _status(queue, "crash")
    assert status == JobStatus.STARTED
    assert "crash" in queue.started_job_registry.get_job_ids()


def test_an_idle_worker_brings_back_a_dead_workers_job_with_no_new_work_arriving(settings, queue, tmp_path):
    """The job of a worker that died comes back once its timeout and the margin have passed, even when the
    surviving worker has nothing else to do: RQ's idle worker sweeps only when its blocking dequeue returns,
    which by RQ's default takes 405 s; ours returns every maintenance interval."""
    marker = tmp_path / "crashed"
    queue.enqueue(f"{JOBS}.crash_once", args=[str(marker)], job_timeout=1, retry=Retry(max=1), job_id="once")
    crashed = run_worker(settings, maintenance=True, timeout=60)
    assert crashed.returncode == 3 and marker.exists()
    assert _status(queue, "once")[1] == JobStatus.STARTED

    survivor = start_worker(dataclasses.replace(settings, worker_maintenance_interval=1), maintenance=True)
    try:
        # Patience well past the 1 + ABANDON_MARGIN seconds the job needs, far short of RQ's 405.
        deadline = time.monotonic() + 1 + ABANDON_MARGIN + 50
        while _status(queue, "once")[1] != JobStatus.FINISHED and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        survivor.terminate()
        survivor.wait(timeout=30)
    job, status = _status(queue, "once")
    assert status == JobStatus.FINISHED and job.return_value() == "recovered"


def test_a_sweepers_lock_outlives_it_by_seconds_not_fifteen_minutes(settings, queue):
    """A worker killed mid-sweep leaves the queue's sweep lock behind; RQ's lived 899 s and stopped every
    other worker from finding that queue's abandoned jobs for that long."""
    gateway_queue = GatewayQueue(MAINTENANCE, connection=queue.connection, serializer=JSONSerializer)
    assert gateway_queue.acquire_maintenance_lock()
    assert not gateway_queue.acquire_maintenance_lock()  # still one sweeper at a time
    assert 0 < queue.connection.ttl(gateway_queue.registry_cleaning_key) <= SWEEP_LOCK_TTL
