"""`gateway worker --review | --all-facilities | --maintenance`: the worker classes the deployments run listen on
the queues they are named for (read from the worker's own registration in Redis)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rq import Worker

from gateway.adapters import build_redis
from gateway.facilities.service import list_facilities
from gateway.intake.routing_policy import REVIEW_QUEUES
from gateway.routing.queues import MAINTENANCE, facility_queue
from tests.fixtures.live import settings_environment
from tests.fixtures.logs import new_log_path

pytestmark = pytest.mark.one_database


def queues_of(settings, tmp_path, *flags: str) -> set[str]:
    connection = build_redis(settings)
    known = {w.name for w in Worker.all(connection=connection)}
    env = {**os.environ, **settings_environment(settings), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    log_path = new_log_path("worker-class", tmp_path)
    with log_path.open("wb") as log:
        worker = subprocess.Popen([str(Path(sys.executable).parent / "gateway"), "worker", *flags], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and worker.poll() is None:
                started = [w for w in Worker.all(connection=connection) if w.name not in known]
                if started:
                    return set(started[0].queue_names())
                time.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
    raise AssertionError(f"the worker did not register: {log_path.read_text()[-2000:]}")


def test_each_worker_class_listens_on_its_queues(settings, db, tmp_path):
    with db.transaction() as session:
        facilities = {facility_queue(f.code) for f in list_facilities(session)}
    assert facilities
    assert queues_of(settings, tmp_path, "--review") == set(REVIEW_QUEUES)
    assert queues_of(settings, tmp_path, "--all-facilities") == facilities
    assert queues_of(settings, tmp_path, "--maintenance") == {MAINTENANCE}
