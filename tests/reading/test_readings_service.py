"""The reading job's bookkeeping on both databases, with the fake reader: once only, failures, the submit wait."""

from __future__ import annotations

import io
from datetime import date

from sqlalchemy import select, update

from gateway.intake import readings
from gateway.intake.models import Document, RequestEvent
from gateway.reading import Thresholds
from gateway.reading.fake import FakeReader
from tests import samples
from tests.factories import bearer, make_tenant, request_body
from tests.reading import corpus


class OneObjectStore:
    """The stored bytes of one document (the job only opens objects)."""

    def __init__(self, data: bytes):
        self.data = data

    def open(self, key: str):
        return iter([self.data])


def us(day: str) -> str:
    d = date.fromisoformat(day)
    return f"{d.month:02d}/{d.day:02d}/{d.year}"


def pending_document(client, db) -> tuple[str, str, dict, str]:
    """A request with an authorization whose reading is pending (the session app does not read: set it so)."""
    tenant = make_tenant(db)
    body = request_body()
    request_id = client.post("/v1/requests", json=body, headers=bearer(tenant.api_key)).get_json()["id"]
    document = client.post(f"/v1/requests/{request_id}/documents", headers=bearer(tenant.api_key),
                           content_type="multipart/form-data",
                           data={"kind": "authorization", "file": (io.BytesIO(samples.minimal_pdf()), "a.pdf")})
    document_id = document.get_json()["id"]
    with db.transaction() as session:
        session.execute(update(Document).where(Document.id == document_id).values(reading_status="pending"))
    return request_id, document_id, body, tenant.api_key


def ocr_text(body: dict, name: str = "Ana Silva") -> str:
    auth = body["authorization"]
    return "\n".join([f"Patient name: {name}", "Date of birth: 02/29/1980", f"I authorize: {auth['discloser']}",
                      f"to release my health information to: {auth['recipient']}",
                      f"This authorization expires on: {us(auth['expires_on'])}", corpus.REVOCATION,
                      corpus.CONDITIONING, corpus.REDISCLOSURE, f"Date signed: {us(auth['signed_on'])}"])


def events(db, request_id) -> list[dict]:
    with db.sessions() as session:
        return [e.detail for e in session.scalars(select(RequestEvent).where(
            RequestEvent.request_id == request_id, RequestEvent.type == "document_read"))]


def test_a_job_run_twice_records_its_findings_once(client, db):
    request_id, document_id, body, _key = pending_document(client, db)
    reader = FakeReader(ocr_pages=[(ocr_text(body, name="Maria Oliveira"), 91.0)])
    kwargs = dict(store=OneObjectStore(b"%PDF-"), reader=reader, thresholds=Thresholds(), document_id=document_id)
    assert readings.read_document(db, **kwargs) == "done"
    assert readings.read_document(db, **kwargs) is None  # a retry after the first committed does nothing
    assert reader.ocr_calls == 1
    assert events(db, request_id) == [{"document_id": document_id, "reading": "done", "legible": True,
                                       "codes": ["FORM_PATIENT_NAME_NOT_FOUND"]}]
    with db.sessions() as session:
        document = session.get(Document, document_id)
        assert document.reading["confidence"] == 91 and document.reading["pages_read"] == 1
        assert "Maria" not in str(document.reading)  # findings only, never the form's text


def test_a_form_that_cannot_be_read_is_failed_not_unreadable(client, db):
    request_id, document_id, _body, key = pending_document(client, db)
    assert readings.read_document(db, store=OneObjectStore(b"%PDF-"), reader=FakeReader(ocr_pages=None),
                                  thresholds=Thresholds(), document_id=document_id) == "failed"
    assert events(db, request_id)[0]["reading"] == "failed"
    shown = client.get(f"/v1/requests/{request_id}", headers=bearer(key)).get_json()
    assert shown["documents"][0]["reading"]["status"] == "failed"
    assert shown["deficiencies"] == []  # not read is neither legible nor unreadable


def test_an_illegible_ocr_makes_the_request_unreadable(client, db):
    request_id, document_id, body, key = pending_document(client, db)
    reader = FakeReader(ocr_pages=[(ocr_text(body), 30.0)])  # words enough, confidence too low
    readings.read_document(db, store=OneObjectStore(b"%PDF-"), reader=reader, thresholds=Thresholds(),
                           document_id=document_id)
    shown = client.get(f"/v1/requests/{request_id}", headers=bearer(key)).get_json()
    assert shown["documents"][0]["reading"]["legible"] is False
    assert shown["documents"][0]["reading"]["findings"] == []
    assert [d["code"] for d in shown["deficiencies"]] == ["DOC_UNREADABLE"]


def test_the_submit_wait_ends_when_nothing_is_pending_or_at_its_bound(client, db):
    request_id, document_id, _body, _key = pending_document(client, db)
    assert readings.wait_for_readings(db, request_id, timeout=0.3, poll=0.05) is False
    with db.transaction() as session:
        session.execute(update(Document).where(Document.id == document_id).values(reading_status="done"))
    assert readings.wait_for_readings(db, request_id, timeout=5, poll=0.05) is True

