"""The HTTP side of one document upload, shared by the API and the portal.

It reads the multipart form as it streams (`kind` and `file`, in either
order), honours `Idempotency-Key` (a replay is fingerprinted by the file's
hash without storing it again), and drives the one upload flow of
`documents.DocumentUpload`; everything about what is accepted lives there.
"""

from __future__ import annotations

import hashlib

from flask import request

from gateway import idempotency
from gateway.auth.web import audit_context, current_principal
from gateway.errors import GatewayError, PayloadTooLarge, Unprocessable, error_body
from gateway.intake.documents import DocumentUpload
from gateway.intake.multipart import MultipartReader, boundary_of
from gateway.intake.schemas import DocumentSchema
from gateway.web import adapters, replay_response, settings


class _Form:
    """What was read from the form so far."""

    def __init__(self):
        self.kind: str | None = None
        self.filename: str | None = None
        self.replay_sha256: str | None = None
        self.received = False


def _read_form(reader: MultipartReader, form: _Form, upload: DocumentUpload, *, replaying: bool) -> None:
    for part in reader.parts():
        if part.name == "kind" and not part.is_file:
            form.kind = part.text(limit=100).strip()
        elif part.name == "file" and part.is_file:
            if form.received:
                raise Unprocessable("Send one file per upload.", code="VALIDATION_FAILED")
            form.received, form.filename = True, part.filename
            if replaying:  # same key again: hash the body only, to compare with the first attempt
                digest = hashlib.sha256()
                for chunk in part.chunks():
                    digest.update(chunk)
                form.replay_sha256 = digest.hexdigest()
                continue
            if form.kind is not None:  # refuse a wrong kind before reading megabytes
                upload.check(form.kind)
            upload.receive(part.chunks(), part.filename)
        else:
            raise Unprocessable(f"Unexpected form field `{part.name[:40]}`; send `kind` and `file`.",
                                code="VALIDATION_FAILED")
    if not form.received:
        raise Unprocessable("The form has no `file` part.", code="FILE_REQUIRED")


def _fingerprint(form: _Form, sha256: str) -> str:
    return idempotency.fingerprint(request.method, request.path, form.kind or "", form.filename or "", sha256)


_DOCUMENT = DocumentSchema()  # built once: a schema is costly to build, cheap to reuse


def _present_document(request_id: str, document) -> tuple[dict, str]:
    from flask import url_for

    return _DOCUMENT.dump(document), url_for("documents.get_document", request_id=request_id,
                                                    document_id=document.id)


def reading_service():
    """How this app reads signed authorizations (None when reading is off): its reader, thresholds, job."""
    from gateway.intake.readings import JOB, ReadingService
    from gateway.routing.dispatch import DispatchUnavailable, RqDispatcher
    from gateway.routing.queues import MAINTENANCE

    a = adapters()
    if a.reader is None:
        return None

    def start_job(document_id: str) -> bool:
        try:  # the payload is the document's id: never a name, never text
            RqDispatcher(a.redis).enqueue(MAINTENANCE, JOB, [document_id], job_id=f"read-{document_id}")
        except DispatchUnavailable:
            return False
        return True

    return ReadingService(reader=a.reader, thresholds=ReadingService.thresholds_of(settings()), start_job=start_job)


def receive_upload(request_id: str, *, upload_class: type[DocumentUpload] = DocumentUpload,
                   present=_present_document):
    """Read one multipart upload for the caller; returns (document, body) or, for a replay, the first response.

    `upload_class` and `present` (what was accepted → (body, Location)) let a request group reuse the flow.
    """
    principal, a, s = current_principal(), adapters(), settings()
    reader = MultipartReader(request.stream, boundary_of(request.content_type))
    key = request.headers.get("Idempotency-Key")
    prior = idempotency.begin_streamed(a.db, principal=principal.audit_actor, key=key)
    upload = upload_class(db=a.db, store=a.store, scanner=a.scanner, principal=principal, request_id=request_id,
                          max_bytes=s.max_upload_bytes, audit_ctx=audit_context(), reading=reading_service())
    # Before a byte of the body is read: a foreign request is a 404, a closed one a 409 (the kind itself is
    # checked as soon as the form gives it).
    upload.admit()
    form = _Form()
    try:
        _read_form(reader, form, upload, replaying=prior is not None)
        if prior is not None:
            idempotency.compare(prior[0], _fingerprint(form, form.replay_sha256))
            return replay_response(prior[1])
        sha256 = upload.ingested.sha256
        document = upload.accept(form.kind)
    except GatewayError as error:
        sha256 = upload.ingested.sha256 if upload.ingested is not None else None
        upload.discard()
        if not isinstance(error, PayloadTooLarge):  # past a cap: answer now, never read the rest
            reader.drain(s.max_upload_bytes)  # let the client finish sending so it can read our answer
        if key is not None and prior is None:
            _settle(key, form, error, sha256)
        raise
    except BaseException:
        upload.discard()
        if key is not None and prior is None:
            idempotency.release(a.db, principal=principal.audit_actor, key=key)
        raise
    body, location = present(request_id, document)
    if key is not None:
        idempotency.complete(a.db, principal=principal.audit_actor, key=key, print_=_fingerprint(form, sha256),
                             response=idempotency.StoredResponse(201, body, location))
    return document, body


def _settle(key: str, form: _Form, error: GatewayError, sha256: str | None) -> None:
    """A judged file's refusal is the first answer and replays; outages (and bodies we could not
    fingerprint, such as one cut off by the size limit) release the key so a retry runs again."""
    db, principal = adapters().db, current_principal().audit_actor
    if error.status >= 500 or sha256 is None:
        idempotency.release(db, principal=principal, key=key)
        return
    idempotency.complete(db, principal=principal, key=key, print_=_fingerprint(form, sha256),
                         response=idempotency.StoredResponse(error.status, error_body(error), None))
