"""Shared helpers for routing tests: submitted requests, queues in Redis, workers in subprocesses."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests import samples
from tests.factories import bearer, request_body
from tests.fixtures.live import settings_environment
from tests.fixtures.logs import keep_log, new_log_path


def submitted(client, tenant, facility="tufts-mc", **changes) -> str:
    """A request created, with its authorization attached, and submitted; returns its id."""
    headers = bearer(tenant.api_key)
    created = client.post("/v1/requests", json=request_body(facility, **changes), headers=headers)
    assert created.status_code == 201, created.get_json()
    request_id = created.get_json()["id"]
    uploaded = client.post(f"/v1/requests/{request_id}/documents", headers=headers, content_type="multipart/form-data",
                           data={"kind": "authorization", "file": (io.BytesIO(samples.minimal_pdf()), "auth.pdf")})
    assert uploaded.status_code == 201, uploaded.get_json()
    response = client.post(f"/v1/requests/{request_id}/submit", headers=headers)
    assert response.status_code == 202, response.get_json()
    return request_id


def queued_jobs(settings, queue_name: str) -> list:
    """The jobs waiting on a queue, as RQ sees them."""
    connection = redis.Redis.from_url(settings.redis_url)
    return Queue(queue_name, connection=connection, serializer=JSONSerializer).get_jobs()


REPOSITORY = Path(__file__).resolve().parents[2]


def start_worker(settings, *, maintenance: bool = False) -> subprocess.Popen:
    """A long-running `gateway worker [--maintenance]` (not burst) in a subprocess; the caller stops it."""
    argv = [str(Path(sys.executable).parent / "gateway"), "worker", *(["--maintenance"] if maintenance else [])]
    log = new_log_path("worker").open("wb")  # read at the end of the suite (tests/test_zz_logs_hold_no_phi.py)
    try:
        return subprocess.Popen(argv, env=worker_environment(settings), stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def worker_environment(settings) -> dict[str, str]:
    """The environment of a `gateway worker` subprocess: the test settings, and the repository on the path
    (for jobs defined in tests, tests/routing/worker_jobs.py)."""
    path = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    return {**os.environ, **settings_environment(settings), "PYTHONPATH": path}


def run_worker(settings, *facilities: str, burst: bool = True, timeout: float = 120,
               maintenance: bool = False, fork: bool = False) -> subprocess.CompletedProcess:
    """`gateway worker --facility … [--maintenance] [--fork] --burst` in a subprocess with the test settings."""
    argv = [str(Path(sys.executable).parent / "gateway"), "worker"]
    for code in facilities:
        argv += ["--facility", code]
    if maintenance:
        argv.append("--maintenance")
    if burst:
        argv.append("--burst")
    if fork:
        argv.append("--fork")
    env = worker_environment(settings)
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    keep_log("worker", result.stdout + result.stderr)
    return result
