"""Reading the signed authorization (API.md "Reading the authorization"): at upload, in a job, before submit.

After a clean scan every `authorization` and `representative_authority`
document is read.  Its text layer is read during the upload itself (pypdf,
milliseconds); when every page read carries enough words the reading is done
there and then.  Otherwise (a scanned PDF, a picture) the document is recorded
with its reading `pending` and `jobs.read_document(id)` OCRs it on the
maintenance queue, never in the request thread.

The job is idempotent: it works only a reading still pending, and records the
outcome, its findings and one `document_read` timeline event in one
transaction on the locked request, so a job killed mid-run and retried
records them once.  Only findings are kept: the text read lives in the job's
memory and is never logged, queued or stored.  `submit` waits a bounded time
for pending readings (`wait_for_readings`) before it takes the request's lock.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from gateway.db import Database
from gateway.intake import lifecycle
from gateway.intake.models import Document, RecordsRequest
from gateway.intake.rules.facts import day, text, words
from gateway.reading import PageText, Reader, ReadingFailed, Thresholds, Typed, check_form, legible_pages

log = logging.getLogger("gateway.intake.readings")
READ_KINDS = ("authorization", "representative_authority")
PDF = "application/pdf"
JOB = "gateway.intake.jobs.read_document"
PENDING, DONE, FAILED = "pending", "done", "failed"
# A document larger than this is not fetched into a worker's memory to be read (forms are a few MB at most).
MAX_READ_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ReadingService:
    """What the upload needs to read a form: the reader, the thresholds, and a way to start the job."""

    reader: Reader
    thresholds: Thresholds
    start_job: object  # callable(document_id) -> bool (False: the queue could not be reached)

    @staticmethod
    def thresholds_of(settings) -> Thresholds:
        """The legibility thresholds of the settings."""
        return Thresholds(min_words=settings.reading_min_words, min_confidence=settings.reading_min_confidence)


def first_look(reader: Reader, thresholds: Thresholds, content_type: str | None,
               spool_path: Path | None) -> list[PageText] | None:
    """The pages, when the text layer alone makes every page read legible; None when OCR must follow."""
    if content_type != PDF or spool_path is None:
        return None
    try:
        pages = reader.text_layer(spool_path)
    except ReadingFailed:
        return None  # the job tries again with OCR, and fails the reading if that cannot read it either
    if pages and all(thresholds.legible(page) for page in pages):
        return pages
    return None


def typed_facts(session, req: RecordsRequest) -> Typed:
    """The typed request's facts the form is checked against; organization names as the rules accept them."""
    from gateway.intake.assessment import facility_policy
    from gateway.intake.service import body_of

    body = body_of(req)
    first, last = text(body, "patient.first_name"), text(body, "patient.last_name")
    patient = tuple(pair for pair in ((first, last), *((other, "") for other in words(body, "patient.other_names")))
                    if pair[0] or pair[1])
    discloser = text(body, "authorization.discloser")
    disclosers: tuple[str, ...] = ()
    if discloser:
        facility = facility_policy(session, body.get("facility"))
        extra = (facility.name, *facility.aliases, *facility.system_names) if facility else ()
        practice = text(body, "practice.name")
        disclosers = (discloser, *extra, *([practice] if practice else ()))
    recipient = text(body, "authorization.recipient")
    delivery = text(body, "delivery.recipient.name")
    recipients = tuple(n for n in (recipient, delivery) if n) if recipient else ()
    statements = tuple(name for name in ("right_to_revoke", "no_conditioning", "redisclosure")
                       if (body.get("authorization") or {}).get("statements", {}).get(name) is True)
    return Typed(patient_names=patient, date_of_birth=day(body, "patient.date_of_birth"),
                 discloser_names=disclosers, recipient_names=recipients,
                 signed_on=day(body, "authorization.signed_on"), expires_on=day(body, "authorization.expires_on"),
                 statements=statements)


def apply(session, req: RecordsRequest, document: Document, pages: list[PageText], thresholds: Thresholds) -> None:
    """Record a finished reading on the document: legible, confidence, pages read, findings (never the text)."""
    legible = legible_pages(pages, thresholds)
    confidences = [p.confidence if p.confidence is not None else 100.0 for p in (legible or pages)]
    document.reading_status = DONE
    document.reading_legible = bool(legible)
    document.reading_confidence = round(sum(confidences) / len(confidences)) if confidences else 0
    document.reading_pages = len(pages)
    # Only a legible form is checked against the request: an unreadable one is DOC_UNREADABLE, not six findings.
    document.reading_findings = check_form(legible, typed_facts(session, req)) if legible else []


def record_event(session, req: RecordsRequest, document: Document) -> None:
    """The timeline entry of a finished reading: codes only."""
    lifecycle.add_event(session, req, "document_read", "gateway", document_id=document.id,
                        reading=document.reading_status, legible=document.reading_legible,
                        codes=[f["code"] for f in document.reading_findings or []])


def read_document(db: Database, *, store, reader: Reader, thresholds: Thresholds, document_id: str) -> str | None:
    """The job's work: OCR a pending reading and record it once; returns the status written (None: nothing to do)."""
    with db.sessions() as session:
        document = session.get(Document, document_id)
        if document is None or document.reading_status != PENDING:
            return None
        request_id, key, content_type, size = (document.request_id, document.storage_key, document.content_type,
                                               document.size)
    try:
        if size > MAX_READ_BYTES:
            raise ReadingFailed("too large to read")
        pages = _read(store, reader, thresholds, key, content_type)
        status = DONE
    except ReadingFailed as error:
        log.warning("document could not be read", extra={"document_id": document_id, "reason": str(error)[:80]})
        pages, status = [], FAILED
    with lifecycle.locked_for_system(db, request_id) as (session, req):
        document = session.get(Document, document_id)
        if req is None or document is None or document.reading_status != PENDING:
            return None  # read already (a retried job after the first one committed), or the document is gone
        if status == DONE:
            apply(session, req, document, pages, thresholds)
        else:
            document.reading_status = FAILED
        record_event(session, req, document)
        lifecycle.touch(req)
    return status


def _read(store, reader: Reader, thresholds: Thresholds, key: str, content_type: str) -> list[PageText]:
    data = b"".join(store.open(key))
    text_pages: list[PageText] = []
    if content_type == PDF:
        with tempfile.NamedTemporaryFile(suffix=".pdf") as spool:
            spool.write(data)
            spool.flush()
            try:
                text_pages = [p for p in reader.text_layer(Path(spool.name)) if thresholds.legible(p)]
            except ReadingFailed:
                text_pages = []
    ocr_pages = reader.ocr(data, content_type, skip=frozenset(p.number for p in text_pages))
    return sorted([*text_pages, *ocr_pages], key=lambda page: page.number)


def mark_failed(db: Database, document_id: str) -> None:
    """A reading whose job could not be started: not read (neither legible nor unreadable)."""
    with db.write_transaction() as session:
        document = session.get(Document, document_id)
        if document is not None and document.reading_status == PENDING:
            document.reading_status = FAILED


def wait_for_readings(db: Database, request_id: str, *, timeout: float, poll: float = 0.25) -> bool:
    """Wait (at most `timeout` seconds, wall time) while a document of the request is still being read.

    Returns True when nothing is pending any more.  Called before submit takes the request's lock, so a
    reading job can record its outcome meanwhile; what is still pending afterwards counts as not read.
    """
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        with db.sessions() as session:
            pending = session.scalars(select(Document.id).where(Document.request_id == request_id,
                                                                Document.reading_status == PENDING).limit(1)).first()
        if pending is None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
