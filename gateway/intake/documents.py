"""Documents of a request: the one upload flow every entry point uses, withdrawal of releases, downloads.

An upload (`DocumentUpload`) goes in three steps, whatever brings the bytes —
the API's multipart form, the one-shot create, the portal, and next batches
and FHIR:

1. `check(kind)`: may this caller add this kind to this request now?  Decided
   before a byte of the file is read, so a wrong kind costs nothing.
2. `receive(chunks, filename)`: the bytes stream once through clamd, SHA-256
   and S3 staging (`uploads.ingest`), outside any transaction.
3. `accept(kind)`: only a file clamd called clean, of an accepted type, and
   (for PDFs) free of encryption, active content, truncation and appended
   payloads becomes a document.  Its staged object is promoted (tagged
   `scan-status=clean`) first — network I/O never happens under the request's
   lock or the audit trail's — and then, under the request's lock, the kind
   and status are checked again (the request may have moved on during a long
   upload), the row is written with its timeline event and audit entry, and
   the request's version goes up.  Anything refused is removed from storage;
   a malware hit is kept as a RejectedUpload (hash, signature, uploader) and
   audited, never stored.

Released records (kind `release`, staff only) are invisible to the requester
until the request is fulfilled (see `access.py`); before that, staff may
withdraw one (`withdraw_release`), and its bytes are deleted.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import metrics
from gateway.audit.service import record
from gateway.auth.principal import Principal
from gateway.db import Database, new_id, utcnow
from gateway.errors import Conflict, FieldError, Forbidden, NotFound, Unprocessable, UnsupportedMediaType
from gateway.intake import lifecycle, readings
from gateway.intake.models import DOCUMENT_KINDS, Document, RecordsRequest, RejectedUpload
from gateway.intake.service import get_request
from gateway.intake.uploads import FileTooLarge, Ingested, StorageDown, ingest
from gateway.scanning import PdfProblem, ScanStatus, inspect_pdf
from gateway.storage import StorageUnavailable, sanitise_filename

log = logging.getLogger("gateway.intake.documents")
RELEASE = "release"
REQUESTER_KINDS = tuple(kind for kind in DOCUMENT_KINDS if kind != RELEASE)
STAFF_KINDS = (RELEASE,)
REQUESTER_EDITABLE = ("draft", "returned")
# Staff upload released records while they work the request (and while an invoice waits to be paid).
RELEASE_UPLOADABLE = ("in_progress", "awaiting_payment")


class MalwareDetected(Unprocessable):
    code, title = "MALWARE_DETECTED", "Malware detected"


class DocumentRejected(Unprocessable):
    """A clean file that still cannot be accepted (encrypted, active content, corrupt, polyglot)."""


class AlreadyReleased(Conflict):
    code, title = "ALREADY_RELEASED", "Already released"


def check_kind(principal: Principal, req: RecordsRequest, kind: str | None) -> str:
    """The document kind if this caller may add it to this request in its present status."""
    if kind not in DOCUMENT_KINDS:
        raise Unprocessable("`kind` must be one of " + ", ".join(DOCUMENT_KINDS) + ".", code="VALIDATION_FAILED",
                            errors=[FieldError("INVALID_FIELD" if kind else "FIELD_REQUIRED", "kind",
                                               "unknown document kind" if kind else "required")])
    if principal.is_requester:
        if kind not in REQUESTER_KINDS:
            raise Forbidden("Only records staff upload released records.")
        if req.status not in REQUESTER_EDITABLE:
            raise Conflict(f"Documents cannot be added to a {req.status} request.", code="REQUEST_NOT_EDITABLE")
    elif principal.has_role("facility_staff"):
        if kind not in STAFF_KINDS:
            raise Forbidden("Records staff upload documents of kind `release` only.")
        if principal.facilities and req.facility not in principal.facilities:
            raise Forbidden("Only records staff of this facility work this request.")
        if req.status not in RELEASE_UPLOADABLE:
            raise Conflict("Released records are uploaded while the request is in progress.",
                           code="REQUEST_NOT_EDITABLE")
    else:
        raise Forbidden("Your role does not upload documents.")
    return kind


def judge(ingested: Ingested) -> tuple[int | None, str | None]:
    """Raise the right error for anything but an acceptable clean file; returns (pages, pdf version)."""
    verdict = ingested.verdict
    if verdict.status is ScanStatus.INFECTED:
        raise MalwareDetected("The file contains malware and was not stored.", signature=verdict.signature)
    if ingested.content_type is None:
        raise UnsupportedMediaType("Only PDF, TIFF, PNG and JPEG files are accepted (judged by content).",
                                   code="FILE_TYPE_NOT_ALLOWED")
    if verdict.status is ScanStatus.INCOMPLETE:
        raise FileTooLarge("The file could not be scanned in full, so it was not stored.")
    if verdict.status is ScanStatus.SUSPICIOUS:
        signature = verdict.signature or ""
        if signature.startswith("Heuristics.Encrypted.PDF"):
            raise DocumentRejected("The PDF is encrypted or password-protected; send it without a password.",
                                   code="PDF_ENCRYPTED")
        if signature.startswith("Heuristics.PDF."):  # e.g. ObfuscatedNameObject: hex-escaped /JavaScript
            raise DocumentRejected("The PDF hides names the way active content does; send a plain scan.",
                                   code="PDF_ACTIVE_CONTENT")
        if signature.startswith("Heuristics.Limits.Exceeded"):  # clamd could not look at all of it
            raise FileTooLarge("The file could not be scanned in full, so it was not stored.")
        if signature.startswith("Heuristics.Broken.Media"):
            raise DocumentRejected("The file is damaged and cannot be read.", code="FILE_CORRUPT")
        raise MalwareDetected("The file was flagged by the virus scanner and was not stored.", signature=signature)
    if not verdict.is_clean:  # belt and braces: nothing but an explicit clean passes
        raise MalwareDetected("The file was not confirmed clean and was not stored.")
    if ingested.spool_path is not None:
        try:
            report = inspect_pdf(ingested.spool_path)
        except PdfProblem as problem:
            raise DocumentRejected(str(problem), code=problem.code) from None
        return report.pages, report.version
    return None, None


@dataclass
class DocumentUpload:
    """One file into one request, in three steps: check the kind, receive the bytes, accept the document."""

    db: Database
    store: object
    scanner: object
    principal: Principal
    request_id: str
    max_bytes: int
    audit_ctx: dict = field(default_factory=dict)
    filename: str | None = None
    ingested: Ingested | None = None
    # Reads signed authorizations after the clean scan (None: not read, e.g. reading turned off).
    reading: readings.ReadingService | None = None
    _first_look: list | None = None
    # The request as `admit` (or the first `check`) read it: the early checks' view, detached.
    _admitted: RecordsRequest | None = None

    def admit(self) -> None:
        """Before the form names a kind: is the request there for this caller, and open to uploads now?"""
        req = self._read_request()
        staff_only = self.principal.has_role("facility_staff") and not self.principal.is_requester
        check_kind(self.principal, req, RELEASE if staff_only else "supporting")

    def check(self, kind: str | None) -> str:
        """Refuse a kind this caller may not add to this request now (before any byte is read).

        Early refusals judge the request as `admit` read it (one read per upload, not one per check): what
        counts is `_record`, which checks the kind again on the locked row."""
        return check_kind(self.principal, self._admitted or self._read_request(), kind)

    def _read_request(self) -> RecordsRequest:
        with self.db.sessions() as session:
            self._admitted = get_request(session, self.principal, self.request_id, db=self.db,
                                         audit_ctx=self.audit_ctx)
        return self._admitted

    def receive(self, chunks: Iterable[bytes], filename: str | None) -> Ingested:
        """Stream the bytes through the scanner, the hasher and S3 staging (nothing is a document yet)."""
        if self.ingested is not None:
            raise Unprocessable("Send one file per upload.", code="VALIDATION_FAILED")
        self.filename = filename
        # The name goes with the object (served as Content-Disposition), never into its key or a URL.
        with metrics.UPLOAD_SECONDS.time():  # a refused or broken upload is timed too: it held a thread as long
            self.ingested = ingest(chunks, scanner=self.scanner, store=self.store, max_bytes=self.max_bytes,
                                   filename=filename)
        metrics.UPLOAD_BYTES.inc(self.ingested.size)
        return self.ingested

    def accept(self, kind: str | None) -> Document:
        """Judge the received file and record it as a document of `kind`; anything refused is removed."""
        if self.ingested is None:
            raise Unprocessable("The form has no `file` part.", code="FILE_REQUIRED")
        try:
            kind = self.check(kind)
            try:
                pages, _version = judge(self.ingested)
            except MalwareDetected:
                self._record_malware(kind)
                raise
            try:
                self.ingested.store_clean(self.store)
            except StorageUnavailable:
                raise StorageDown("Document storage is unavailable; nothing was stored. Retry shortly.") from None
            if self._reads(kind):  # the text layer, from the spool, before the row is written (no lock held)
                self._first_look = readings.first_look(self.reading.reader, self.reading.thresholds,
                                                       self.ingested.content_type, self.ingested.spool_path)
            document = self._record(kind, pages)
        except BaseException:
            self.discard()
            raise
        self.ingested.discard_spool()
        self.ingested = None  # recorded: nothing to undo any more
        if isinstance(document, Document) and document.reading_status == readings.PENDING:
            # After the commit, so the job finds the row; a broker outage leaves the document not read.
            if not self.reading.start_job(document.id):
                readings.mark_failed(self.db, document.id)
                document.reading_status = readings.FAILED
        return document

    def _reads(self, kind: str) -> bool:
        return self.reading is not None and kind in readings.READ_KINDS

    def discard(self) -> None:
        """Remove what was staged (after a refusal, or when the rest of the form is bad)."""
        if self.ingested is not None:
            self.ingested.discard_spool()
            if self.ingested.unwritten is not None:  # held back, never written: nothing to remove
                with contextlib.suppress(Exception):
                    self.ingested.unwritten.abort()
            elif self.ingested.storage_key:
                with contextlib.suppress(StorageUnavailable):  # the sweeper removes it later if this fails
                    self.store.delete(self.ingested.storage_key)
            self.ingested = None

    def _record(self, kind: str, pages: int | None) -> Document:
        ingested, principal = self.ingested, self.principal
        with lifecycle.locked_request(self.db, principal, self.request_id, audit_ctx=self.audit_ctx) as (session, req):
            check_kind(principal, req, kind)  # the request may have moved on while the file streamed
            verdict = ingested.verdict
            # Its id given here, not by the flush: the event and the audit entry name it, and the row goes in
            # with them at the commit (one flush, while every other SQLite writer waits).
            document = Document(
                id=new_id(), request_id=req.id, kind=kind, filename=sanitise_filename(self.filename or ""),
                content_type=ingested.content_type, size=ingested.size, sha256=ingested.sha256, pages=pages,
                storage_key=ingested.storage_key, scan_status="clean", scan_engine=verdict.engine,
                scan_signature_version=verdict.signature_version, scanned_at=verdict.scanned_at,
                uploaded_at=utcnow(), uploaded_by=principal.audit_actor)
            session.add(document)
            if self._reads(kind):
                if self._first_look is not None:
                    readings.apply(session, req, document, self._first_look, self.reading.thresholds)
                else:
                    document.reading_status = readings.PENDING
            record(session, actor=principal.audit_actor, org_id=principal.org_id, action="document.upload",
                   object_type="document", object_id=document.id, **self.audit_ctx)
            if document.reading_status == readings.DONE:
                readings.record_event(session, req, document)
            # A release stays between staff until the request is fulfilled (then `lifecycle.fulfil` announces it).
            lifecycle.add_event(session, req, "document_added", principal.audit_actor, staff_only=kind == RELEASE,
                                document_id=document.id, kind=kind)
            lifecycle.touch(req)
            return document

    def _record_malware(self, kind: str) -> None:
        """Keep the evidence of a malware upload (never the file) and audit it, in its own transaction."""
        ingested, principal = self.ingested, self.principal
        with self.db.write_transaction() as session:
            rejected = RejectedUpload(request_id=self.request_id, kind=kind, sha256=ingested.sha256,
                                      size=ingested.size, signature=(ingested.verdict.signature or "unknown")[:200],
                                      uploaded_by=principal.audit_actor)
            session.add(rejected)
            session.flush()
            record(session, actor=principal.audit_actor, org_id=principal.org_id, action="document.upload",
                   result="blocked", object_type="rejected_upload", object_id=rejected.id, **self.audit_ctx)
            # On the timeline too, so the requester and the records team both see what happened (no file
            # name: names can carry PHI; the kind and the reason are enough).
            req = session.get(RecordsRequest, self.request_id)
            lifecycle.add_event(session, req, "upload_blocked", principal.audit_actor, kind=kind, reason="malware",
                                staff_only=kind == RELEASE)


def receive_document(*, db: Database, store, scanner, principal: Principal, request_id: str, kind: str,
                     filename: str | None, chunks: Iterable[bytes], max_bytes: int, audit_ctx: dict,
                     reading: readings.ReadingService | None = None) -> Document:
    """One document whose kind is known before its bytes (one-shot forms, batches, FHIR attachments)."""
    upload = DocumentUpload(db=db, store=store, scanner=scanner, principal=principal, request_id=request_id,
                            max_bytes=max_bytes, audit_ctx=audit_ctx, reading=reading)
    upload.check(kind)
    try:
        upload.receive(chunks, filename)
    except BaseException:
        upload.discard()
        raise
    return upload.accept(kind)


def withdraw_release(db: Database, *, store, principal: Principal, request_id: str, document_id: str,
                     audit_ctx: dict, if_match: str | None = None) -> None:
    """Staff take back a release uploaded by mistake, before fulfilment: the bytes are deleted, the act audited."""
    if not principal.has_role("facility_staff"):
        raise Forbidden("Records staff withdraw released records.")
    with lifecycle.locked_request(db, principal, request_id, audit_ctx=audit_ctx, if_match=if_match) as (session, req):
        document = _document_of(session, principal, req, document_id)
        if document.kind != RELEASE:
            raise Forbidden("Only released records (kind `release`) are withdrawn.")
        if req.status == lifecycle.RELEASED:
            raise AlreadyReleased("These records were released when the request was fulfilled; they cannot be "
                                  "withdrawn.")
        key = document.storage_key
        # One stored object may back several rows (a group's document): the bytes go with the last of them.
        shared = session.scalars(select(Document.id).where(Document.storage_key == key,
                                                           Document.id != document.id).limit(1)).first()
        session.delete(document)
        lifecycle.touch(req)
        lifecycle.add_event(session, req, "document_withdrawn", principal.audit_actor, staff_only=True,
                            document_id=document_id, kind=RELEASE, sha256=document.sha256)
        record(session, actor=principal.audit_actor, org_id=principal.org_id, action="document.withdraw",
               object_type="document", object_id=document_id, **audit_ctx)
    # After the commit, so a failure never leaves a row without its bytes; an object left behind is logged
    # (its key is random, never PHI) for the operator to remove.
    if shared is not None:
        return
    try:
        store.delete(key)
    except StorageUnavailable:
        log.warning("withdrawn document's object not deleted", extra={"storage_key": key})


def _document_of(session: Session, principal: Principal, req: RecordsRequest, document_id: str) -> Document:
    document = session.get(Document, document_id)
    if document is None or document.request_id != req.id:
        raise NotFound()
    return document


def download_url(store, document: Document) -> str:
    """A presigned GET (≤ 5 minutes, attachment) for a clean document; its name is stored, not in the URL."""
    try:
        return store.download_url(document.storage_key, content_type=document.content_type, expires_in=300)
    except StorageUnavailable:
        raise StorageDown("Document storage is unavailable. Retry shortly.") from None
