"""Facility workers end to end: real RQ workers in subprocesses, real sinks, SIGKILL mid-job."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from gateway.adapters import build_redis
from gateway.crypto import seal
from gateway.outbox import OutboxMessage
from gateway.routing import relay
from gateway.routing.dispatch import RqDispatcher
from gateway.routing.jobs import SINK_SECRET_PURPOSE
from gateway.routing.models import FacilitySink, JobEffect
from tests.factories import bearer, make_tenant
from tests.fixtures.live import settings_environment
from tests.fixtures.logs import new_log_path
from tests.routing.helpers import run_worker, submitted
from tests.routing.receiver import Receiver

SECRET = "facility-shared-secret-for-tests"


@pytest.fixture(autouse=True)
def clean_redis(settings):
    build_redis(settings).flushdb()


@pytest.fixture(scope="module")
def local_settings(settings):
    """The receivers here listen on 127.0.0.1: the operator's allow-private setting lets sinks reach them."""
    return dataclasses.replace(settings, webhook_allow_private=True)


@pytest.fixture
def facility_sink(db, settings):
    """Configure a facility's sink for one test, then put the inbox back."""
    configured = []

    def configure(code, kind, *, url=None, folder=None):
        with db.transaction() as session:
            sink = session.get(FacilitySink, code) or FacilitySink(facility=code)
            sink.kind, sink.url, sink.folder = kind, url, folder
            sink.secret_sealed = seal(settings.secret_key, SECRET, purpose=SINK_SECRET_PURPOSE) if url else None
            session.add(sink)
        configured.append(code)

    yield configure
    with db.transaction() as session:
        for code in configured:
            session.delete(session.get(FacilitySink, code))


def publish(db, settings):
    dispatcher = RqDispatcher(build_redis(settings))
    while relay.publish_due(db, dispatcher, batch=100).done:
        pass


def effects(db, request_id) -> int:
    with db.transaction() as session:
        return session.scalar(select(func.count()).select_from(JobEffect).where(JobEffect.request_id == request_id))


def test_inbox_sink_and_a_job_delivered_twice_has_its_effect_once(client, db, settings):
    tenant = make_tenant(db)
    request_id = submitted(client, tenant, "lowell-general")
    publish(db, settings)
    assert run_worker(settings, "lowell-general").returncode == 0
    assert effects(db, request_id) == 1
    # Deliver the very same message again (as if a relay died between enqueue and mark-sent).
    with db.transaction() as session:
        session.execute(update(OutboxMessage).where(OutboxMessage.request_id == request_id)
                        .values(state="pending", next_attempt_at=OutboxMessage.created_at))
    publish(db, settings)
    assert run_worker(settings, "lowell-general").returncode == 0
    assert effects(db, request_id) == 1
    events = client.get(f"/v1/requests/{request_id}/events", headers=bearer(tenant.api_key)).get_json()["items"]
    assert [e["type"] for e in events].count("handed_over") == 1


def test_webhook_sink_delivers_signed_without_phi(client, db, settings, local_settings, facility_sink):
    receiver = Receiver()
    try:
        facility_sink("melrosewakefield", "webhook", url=receiver.url)
        tenant = make_tenant(db)
        request_id = submitted(client, tenant, "melrosewakefield")
        publish(db, settings)
        result = run_worker(local_settings, "melrosewakefield")
        assert result.returncode == 0, result.stderr[-2000:]
    finally:
        receiver.close()
    (hit,) = receiver.hits
    signature = dict(part.split("=", 1) for part in hit["headers"]["Gateway-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{signature['t']}.".encode() + hit["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature["v1"], expected)
    body = json.loads(hit["body"])
    assert body["data"]["request_id"] == request_id
    text = hit["body"].decode()
    for phi in ("Silva", "1980-02-29", "patient", "first_name", "reference"):
        assert phi not in text
    assert effects(db, request_id) == 1


def test_folder_sink_drops_manifest_and_matching_files(client, db, settings, facility_sink, tmp_path):
    facility_sink("community-practices", "folder", folder=str(tmp_path))
    tenant = make_tenant(db)
    request_id = submitted(client, tenant, "community-practices")
    publish(db, settings)
    result = run_worker(settings, "community-practices")
    assert result.returncode == 0, result.stderr[-2000:]
    folder = tmp_path / request_id
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["request"]["id"] == request_id
    (document,) = manifest["documents"]
    assert hashlib.sha256((folder / document["file"]).read_bytes()).hexdigest() == document["sha256"]
    request = client.get(f"/v1/requests/{request_id}", headers=bearer(tenant.api_key)).get_json()
    assert document["sha256"] == request["documents"][0]["sha256"]


@pytest.mark.slow
def test_worker_killed_mid_job_retries_and_the_effect_happens_once(client, db, settings, local_settings,
                                                                  facility_sink):
    receiver = Receiver(script=[(200, 30)])  # the first delivery hangs: that is when the worker dies
    facility_sink("tufts-mc", "webhook", url=receiver.url)
    tenant = make_tenant(db)
    request_id = submitted(client, tenant, "tufts-mc")
    env = {**os.environ, **settings_environment(local_settings)}
    log = new_log_path("worker").open("wb")  # read at the end of the suite (tests/test_zz_logs_hold_no_phi.py)
    # The forking model (`--fork`): killing the work horse mid-job is what the parent notices at once; the
    # in-process model's worker dying mid-job is in tests/routing/test_multi_instance.py.
    worker = subprocess.Popen([str(Path(sys.executable).parent / "gateway"), "worker", "--fork",
                               "--facility", "tufts-mc"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()  # the worker has its own copy of the descriptor

    def children() -> set[str]:
        path = Path(f"/proc/{worker.pid}/task/{worker.pid}/children")
        return set(path.read_text().split()) if path.exists() else set()

    try:
        # Wait for the worker's scheduler child: it must survive, since it is what schedules the retry.
        deadline = time.monotonic() + 60
        while not children() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        before = children()
        publish(db, settings)
        assert receiver.first_hit.wait(60), "the job never reached the sink"
        horses = children() - before
        assert len(horses) == 1, "expected exactly one work horse"
        os.kill(int(horses.pop()), signal.SIGKILL)  # the process running the job dies mid-delivery
        deadline = time.monotonic() + 90
        while effects(db, request_id) == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        receiver.close()
    assert effects(db, request_id) == 1
    keys = {hit["headers"]["Idempotency-Key"] for hit in receiver.hits}
    assert len(receiver.hits) >= 2 and len(keys) == 1  # retried, and the receiver can tell it is the same


def _jobs(settings, queue_name: str) -> tuple[list[str], list[str]]:
    """(failed, scheduled-for-retry) job ids of a queue."""
    from rq import Queue
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry
    from rq.serializers import JSONSerializer

    queue = Queue(queue_name, connection=build_redis(settings), serializer=JSONSerializer)
    return FailedJobRegistry(queue=queue).get_job_ids(), ScheduledJobRegistry(queue=queue).get_job_ids()


def _hits_for(receiver, request_id: str) -> list[dict]:
    return [hit for hit in receiver.hits if json.loads(hit["body"])["data"]["request_id"] == request_id]


def test_webhook_sink_to_loopback_is_refused_without_the_operators_allowance(client, db, settings, facility_sink):
    """The facility sink now has the requester webhooks' SSRF guard: 127.0.0.1 is never contacted unless
    GATEWAY_WEBHOOK_ALLOW_PRIVATE is set (the job fails and waits for a retry, nothing was handed over)."""
    receiver = Receiver()
    try:
        facility_sink("lowell-general", "webhook", url=receiver.url.replace("http:", "https:"))
        tenant = make_tenant(db)
        request_id = submitted(client, tenant, "lowell-general")
        publish(db, settings)
        assert settings.webhook_allow_private is False
        result = run_worker(settings, "lowell-general")
        assert result.returncode == 0, result.stderr[-2000:]
    finally:
        receiver.close()
    assert receiver.hits == [] and effects(db, request_id) == 0
    failed, scheduled = _jobs(settings, "facility.lowell-general")
    assert len(scheduled) >= 1 and failed == []  # "retry later": the target's address may change


def test_webhook_sink_refusal_is_not_retried(client, db, settings, local_settings, facility_sink):
    """A 4xx from the facility system is the sender's "give up": the job goes to the failed registry at once
    instead of being retried five times (RQ's retries stay for "retry later")."""
    receiver = Receiver(script=[(410, 0)] * 10)
    try:
        facility_sink("melrosewakefield", "webhook", url=receiver.url)
        tenant = make_tenant(db)
        request_id = submitted(client, tenant, "melrosewakefield")
        publish(db, settings)
        result = run_worker(local_settings, "melrosewakefield")
        assert result.returncode == 0, result.stderr[-2000:]
    finally:
        receiver.close()
    assert len(_hits_for(receiver, request_id)) == 1 and effects(db, request_id) == 0
    failed, scheduled = _jobs(settings, "facility.melrosewakefield")
    assert len(failed) == len(receiver.hits) >= 1 and scheduled == []  # each refused job: failed, once
