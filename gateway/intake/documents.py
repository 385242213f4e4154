"""Deciding what an ingested file is, and recording clean documents; downloads.

Only a file that clamd called clean, of an accepted type, and (for PDFs) free
of encryption, active content, truncation and appended payloads becomes a
document: its staged object is promoted (tagged `scan-status=clean`) and a row
is written with its audit entry.  Everything else is removed from storage; a
malware hit is kept as a RejectedUpload (hash, signature, uploader) and audited.
"""

from __future__ import annotations

import contextlib

from sqlalchemy.orm import Session

from gateway.audit.service import record
from gateway.auth.principal import Principal
from gateway.db import Database, utcnow
from gateway.errors import Conflict, Forbidden, Unprocessable, UnsupportedMediaType
from gateway.intake.models import DOCUMENT_KINDS, Document, RecordsRequest, RejectedUpload
from gateway.intake.service import add_event, ensure_editable
from gateway.intake.uploads import FileTooLarge, Ingested, StorageDown
from gateway.scanning import PdfProblem, ScanStatus, inspect_pdf
from gateway.storage import StorageUnavailable, sanitise_filename

REQUESTER_KINDS = tuple(kind for kind in DOCUMENT_KINDS if kind != "release")
STAFF_KINDS = ("release",)


class MalwareDetected(Unprocessable):
    code, title = "MALWARE_DETECTED", "Malware detected"


class DocumentRejected(Unprocessable):
    """A clean file that still cannot be accepted (encrypted, active content, corrupt, polyglot)."""


def check_kind(principal: Principal, req: RecordsRequest, kind: str | None) -> str:
    """The document kind if this caller may upload it to this request now."""
    if kind not in DOCUMENT_KINDS:
        raise Unprocessable("`kind` must be one of " + ", ".join(DOCUMENT_KINDS) + ".", code="VALIDATION_FAILED",
                            errors=[_field_error("INVALID_FIELD" if kind else "FIELD_REQUIRED", "kind",
                                                 "unknown document kind" if kind else "required")])
    if principal.is_requester:
        if kind not in REQUESTER_KINDS:
            raise Forbidden("Only records staff upload released records.")
        ensure_editable(req)
    elif principal.has_role("facility_staff"):
        if kind not in STAFF_KINDS:
            raise Forbidden("Records staff upload documents of kind `release` only.")
        if req.status != "in_progress":
            raise Conflict("Released records are uploaded while the request is in progress.",
                           code="REQUEST_NOT_EDITABLE")
    else:
        raise Forbidden("Your role does not upload documents.")
    return kind


def _field_error(code: str, field: str, message: str):
    from gateway.errors import FieldError

    return FieldError(code, field, message)


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


def record_malware(db: Database, *, principal: Principal, req: RecordsRequest, kind: str | None,
                   ingested: Ingested, audit_ctx: dict) -> None:
    """Keep the evidence of a malware upload (never the file) and audit it, in its own transaction."""
    with db.transaction() as session:
        rejected = RejectedUpload(request_id=req.id, kind=kind, sha256=ingested.sha256, size=ingested.size,
                                  signature=(ingested.verdict.signature or "unknown")[:200],
                                  uploaded_by=principal.audit_actor)
        session.add(rejected)
        session.flush()
        record(session, actor=principal.audit_actor, org_id=principal.org_id, action="document.upload",
               result="blocked", object_type="rejected_upload", object_id=rejected.id, **audit_ctx)
        # On the timeline too, so the requester and the records team both see what happened (no file name:
        # names can carry PHI; the kind and the reason are enough).
        add_event(session, session.get(RecordsRequest, req.id), "upload_blocked", principal.audit_actor,
                  kind=kind, reason="malware")


def discard(store, ingested: Ingested) -> None:
    """Remove a staged object and the spool after a refusal."""
    ingested.discard_spool()
    if ingested.storage_key:
        with contextlib.suppress(StorageUnavailable):  # the sweeper removes it later if this fails
            store.delete(ingested.storage_key)


def accept(session: Session, *, store, principal: Principal, req: RecordsRequest, kind: str, filename: str | None,
           ingested: Ingested, pages: int | None, audit_ctx: dict) -> Document:
    """Promote the clean object and record the document with its audit entry (caller commits)."""
    verdict = ingested.verdict
    document = Document(
        request_id=req.id, kind=kind, filename=sanitise_filename(filename or ""), content_type=ingested.content_type,
        size=ingested.size, sha256=ingested.sha256, pages=pages, storage_key=ingested.storage_key,
        scan_status="clean", scan_engine=verdict.engine, scan_signature_version=verdict.signature_version,
        scanned_at=verdict.scanned_at, uploaded_at=utcnow(), uploaded_by=principal.audit_actor)
    session.add(document)
    session.flush()
    record(session, actor=principal.audit_actor, org_id=principal.org_id, action="document.upload",
           object_type="document", object_id=document.id, **audit_ctx)
    add_event(session, req, "document_added", principal.audit_actor, document_id=document.id, kind=kind)
    try:
        store.promote(ingested.storage_key)
    except StorageUnavailable:
        raise StorageDown("Document storage is unavailable; nothing was stored. Retry shortly.") from None
    req.updated_at = utcnow()
    if kind == "release":  # the requester's systems learn that records are ready to download
        from gateway.webhooks.service import emit

        emit(session, org_id=req.org_id, event_type="request.document_added",
             data={"request_id": req.id, "document_id": document.id, "kind": kind})
    return document


def download_url(store, document: Document) -> str:
    """A presigned GET (≤ 5 minutes, attachment) for a clean document; its name is stored, not in the URL."""
    try:
        return store.download_url(document.storage_key, content_type=document.content_type, expires_in=300)
    except StorageUnavailable:
        raise StorageDown("Document storage is unavailable. Retry shortly.") from None
