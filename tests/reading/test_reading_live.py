"""Reading at upload, end to end: the real app, clamd, moto's S3, Redis, RQ workers and the real Tesseract.

A text-layer form is read during the upload; a scan is read by `gateway worker --maintenance`; a blurred one
is DOC_UNREADABLE until a legible copy comes; submit waits for a reading in progress; a reading job killed
mid-run is retried and records its findings once.  OCR-bound, so on one database (PostgreSQL), except the
submit-wait test, whose lock ordering is the databases' business.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from functools import cache
from pathlib import Path

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import select

from gateway.adapters import build_redis
from gateway.app import create_app
from gateway.intake.models import Document, RequestEvent
from tests.factories import bearer, facility_today, make_tenant, request_body
from tests.fixtures.live import settings_environment
from tests.fixtures.logs import new_log_path
from tests.reading import corpus

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs Debian's tesseract-ocr")
PDF = "application/pdf"


@cache
def form(variant: str) -> bytes:
    """The corpus form dated as request_body dates the typed authorization (signed 10 days ago)."""
    today = facility_today()
    base = corpus.dated(corpus.CLEAN, today - timedelta(days=10), today + timedelta(days=170))
    if variant == "text":
        return corpus.form_pdf(base)
    if variant == "text-other-patient":
        return corpus.form_pdf(dataclasses.replace(corpus.OTHER_PATIENT, signed_on=base.signed_on,
                                                   expires_on=base.expires_on))
    if variant == "scan":
        return corpus.scan_pdf(base, dpi=200, seed=7)
    if variant == "blurred":
        return corpus.scan_pdf(base, dpi=200, seed=9, blur=corpus.BLUR_PAST_READING * 200 / 300)
    raise ValueError(variant)


@pytest.fixture(scope="module")
def reading_app(settings):
    application = create_app(dataclasses.replace(settings, reading_enabled=True))
    application.config["TESTING"] = False
    yield application
    application.extensions["gateway"].db.dispose()


@pytest.fixture
def api(reading_app):
    return reading_app.test_client()


class Worker:
    """`gateway worker --maintenance --fork` in the background (not burst: its scheduler runs the retries).

    Fork-per-job, so that a test can kill the work horse mid-reading and see the worker retry the job; a
    worker killed with its job running in-process is tests/routing/test_multi_instance.py's case."""

    def __init__(self, settings):
        env = {**os.environ, **settings_environment(settings)}
        log = new_log_path("worker").open("wb")  # read at the end of the suite (test_zz_logs_hold_no_phi.py)
        command = [str(Path(sys.executable).parent / "gateway"), "worker", "--maintenance", "--fork"]
        self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while not self.children() and time.monotonic() < deadline:  # the scheduler: it must survive a kill
            time.sleep(0.1)
        time.sleep(0.5)
        self.scheduler = self.children()

    def children(self, pid: int | None = None) -> set[int]:
        pid = pid or self.process.pid
        path = Path(f"/proc/{pid}/task/{pid}/children")
        return {int(p) for p in path.read_text().split()} if path.exists() else set()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def worker(settings):
    """One background worker for the module's OCR tests."""
    build_redis(settings).delete("rq:queue:gateway")  # nothing left over from other modules' tests
    running = Worker(settings)
    yield running
    running.stop()


def reading_status(db, document_id) -> str:
    with db.sessions() as session:
        return session.get(Document, document_id).reading_status


def wait_read(db, document_id, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while (status := reading_status(db, document_id)) == "pending" and time.monotonic() < deadline:
        time.sleep(0.2)
    return status


def create(api, tenant) -> str:
    body = request_body(patient__last_name="Silva-Pereira")
    body["authorization"]["signer_name"] = "Ana Silva-Pereira"
    created = api.post("/v1/requests", json=body, headers=bearer(tenant.api_key))
    assert created.status_code == 201, created.get_json()
    return created.get_json()["id"]


def upload(api, tenant, request_id, pdf: bytes, kind="authorization") -> dict:
    response = api.post(f"/v1/requests/{request_id}/documents", headers=bearer(tenant.api_key),
                        content_type="multipart/form-data", data={"kind": kind, "file": (io.BytesIO(pdf), "a.pdf")})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def resource(api, tenant, request_id) -> dict:
    return api.get(f"/v1/requests/{request_id}", headers=bearer(tenant.api_key)).get_json()


def read_events(db, request_id) -> list[dict]:
    with db.sessions() as session:
        return [e.detail for e in session.scalars(select(RequestEvent).where(
            RequestEvent.request_id == request_id, RequestEvent.type == "document_read"))]


@pytest.mark.one_database
def test_a_text_layer_form_is_read_during_the_upload(api, db):
    tenant = make_tenant(db)
    request_id = create(api, tenant)
    document = upload(api, tenant, request_id, form("text"))
    assert document["reading"] == {"status": "done", "legible": True, "confidence": 100, "pages_read": 1,
                                   "findings": []}
    supporting = upload(api, tenant, request_id, form("text"), kind="supporting")
    assert supporting["reading"] is None  # only signed forms are read
    assert resource(api, tenant, request_id)["deficiencies"] == []
    assert read_events(db, request_id) == [{"document_id": document["id"], "reading": "done", "legible": True,
                                            "codes": []}]


@pytest.mark.one_database
def test_findings_are_advisory_shown_on_the_document_and_never_block(api, db):
    tenant = make_tenant(db)
    request_id = create(api, tenant)
    document = upload(api, tenant, request_id, form("text-other-patient"))
    assert [(f["code"], f["field"]) for f in document["reading"]["findings"]] == [
        ("FORM_PATIENT_NAME_NOT_FOUND", "patient"), ("FORM_DOB_NOT_FOUND", "patient.date_of_birth")]
    shown = resource(api, tenant, request_id)
    assert shown["documents"][0]["reading"]["findings"] == document["reading"]["findings"]
    assert shown["deficiencies"] == []
    submitted = api.post(f"/v1/requests/{request_id}/submit", headers=bearer(tenant.api_key))
    assert submitted.status_code == 202, submitted.get_json()


@pytest.mark.one_database
def test_a_scan_is_read_by_the_worker_and_a_blurred_one_is_unreadable_until_a_legible_copy(api, db, settings,
                                                                                          worker):
    tenant = make_tenant(db)
    request_id = create(api, tenant)
    blurred = upload(api, tenant, request_id, form("blurred"))
    assert blurred["reading"]["status"] == "pending"
    job = Job.fetch(f"read-{blurred['id']}", connection=build_redis(settings), serializer=JSONSerializer)
    assert (job.func_name, list(job.args)) == ("gateway.intake.jobs.read_document", [blurred["id"]])  # an id only
    assert wait_read(db, blurred["id"]) == "done"
    shown = resource(api, tenant, request_id)
    assert shown["documents"][0]["reading"]["status"] == "done"
    assert shown["documents"][0]["reading"]["legible"] is False
    assert [d["code"] for d in shown["deficiencies"]] == ["DOC_UNREADABLE"]
    refused = api.post(f"/v1/requests/{request_id}/submit", headers=bearer(tenant.api_key))
    assert refused.status_code == 422
    assert [e["code"] for e in refused.get_json()["errors"]] == ["DOC_UNREADABLE"]

    scan = upload(api, tenant, request_id, form("scan"))
    assert scan["reading"]["status"] == "pending"
    assert wait_read(db, scan["id"]) == "done"
    shown = resource(api, tenant, request_id)
    reading = next(d for d in shown["documents"] if d["id"] == scan["id"])["reading"]
    assert reading["status"] == "done" and reading["legible"] is True and reading["findings"] == []
    assert reading["confidence"] >= 60 and reading["pages_read"] == 1
    assert shown["deficiencies"] == []  # the legible copy cures it


def test_submit_right_after_upload_is_not_refused_while_the_reading_is_pending(settings, db):
    """No worker listens (the app queues on another Redis database): submit waits its (here short) while, then
    proceeds on what is known: the reading is still pending, so the form counts as not read, not unreadable."""
    elsewhere = settings.redis_url.rsplit("/", 1)[0] + "/7"
    application = create_app(dataclasses.replace(settings, reading_enabled=True, reading_submit_wait=0.5,
                                                 redis_url=elsewhere))
    application.config["TESTING"] = False
    try:
        api = application.test_client()
        tenant = make_tenant(db)
        request_id = create(api, tenant)
        document = upload(api, tenant, request_id, corpus.image_pdf(corpus.render(form("text"), 50), 50))
        assert document["reading"]["status"] == "pending"
        submitted = api.post(f"/v1/requests/{request_id}/submit", headers=bearer(tenant.api_key))
        assert submitted.status_code == 202, submitted.get_json()
        assert submitted.get_json()["documents"][0]["reading"]["status"] == "pending"  # not read: not unreadable
    finally:
        application.extensions["gateway"].db.dispose()


@pytest.mark.one_database
def test_upload_then_submit_at_once_waits_for_the_reading_in_progress(api, db, worker):
    tenant = make_tenant(db)
    request_id = create(api, tenant)
    document = upload(api, tenant, request_id, form("scan"))
    assert document["reading"]["status"] == "pending"
    submitted = api.post(f"/v1/requests/{request_id}/submit", headers=bearer(tenant.api_key))
    assert submitted.status_code == 202, submitted.get_json()
    # The submission waited: the reading was recorded, and before the request was submitted.
    assert submitted.get_json()["documents"][0]["reading"]["status"] == "done"
    with db.sessions() as session:
        events = [(e.type, e.status) for e in session.scalars(
            select(RequestEvent).where(RequestEvent.request_id == request_id).order_by(RequestEvent.id))]
    assert events.index(("document_read", "draft")) < [status for _, status in events].index("submitted")


@pytest.mark.one_database
def test_a_reading_job_killed_mid_run_is_retried_and_records_once(api, db, worker):
    tenant = make_tenant(db)
    request_id = create(api, tenant)
    document = upload(api, tenant, request_id, form("scan"))
    # Kill the work horse while Tesseract runs in it (its child): mid-run, nothing recorded yet.
    deadline, horse = time.monotonic() + 60, None
    while horse is None and time.monotonic() < deadline:
        horse = next((h for h in worker.children() - worker.scheduler if worker.children(h)), None)
        time.sleep(0.02)
    assert horse is not None, "the reading job never started Tesseract"
    ocr = worker.children(horse)
    os.kill(horse, signal.SIGKILL)
    for pid in ocr:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert reading_status(db, document["id"]) == "pending"  # killed before it recorded anything
    assert wait_read(db, document["id"]) == "done"  # retried by the worker's scheduler
    assert read_events(db, request_id) == [{"document_id": document["id"], "reading": "done", "legible": True,
                                            "codes": []}]


@pytest.mark.one_database
def test_the_portal_shows_findings_beside_the_document_to_the_requester_and_to_staff(api, db, reading_app,
                                                                                     settings):
    from gateway.routing import relay
    from gateway.routing.dispatch import RqDispatcher
    from tests.factories import make_user
    from tests.portal.helpers import portal_client, portal_sign_in

    tenant = make_tenant(db)
    request_id = create(api, tenant)
    upload(api, tenant, request_id, form("text-other-patient"))
    requester = portal_client(reading_app)
    portal_sign_in(requester, tenant.requester_email)
    page = requester.get(f"/portal/requests/{request_id}").get_data(as_text=True)
    assert 'data-code="FORM_PATIENT_NAME_NOT_FOUND"' in page and 'data-code="FORM_DOB_NOT_FOUND"' in page
    assert "2 things to check" in page
    assert api.post(f"/v1/requests/{request_id}/submit", headers=bearer(tenant.api_key)).status_code == 202
    while relay.publish_due(db, RqDispatcher(build_redis(settings)), batch=100).done:  # routed: staff see it
        pass
    staff = portal_client(reading_app)
    portal_sign_in(staff, make_user(db, ["facility_staff"], ["tufts-mc"]))
    page = staff.get(f"/portal/requests/{request_id}").get_data(as_text=True)
    assert 'id="authorization-reading"' in page and 'data-code="FORM_PATIENT_NAME_NOT_FOUND"' in page
    assert "Maria" not in page  # what the form says is never shown: only what was not found
