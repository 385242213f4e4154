"""`/v1/requests/{id}/documents`: streaming upload, metadata and download."""

from __future__ import annotations

import hashlib

from flask import redirect, request, url_for
from flask_smorest import Blueprint

from gateway import idempotency
from gateway.auth.tenancy import get_visible
from gateway.auth.web import audit_context, current_principal, requires
from gateway.errors import GatewayError, NotFound, Unprocessable, error_body
from gateway.intake import documents, service
from gateway.intake.models import Document
from gateway.intake.multipart import MultipartReader, boundary_of
from gateway.intake.schemas import DocumentSchema
from gateway.intake.uploads import FileTooLarge, ingest
from gateway.intake.views import READERS, visible_request
from gateway.web import IDEMPOTENCY_HEADER, adapters, db_session, replay_response, settings

blp = Blueprint("documents", __name__, url_prefix="/v1/requests", description="Request documents.")

UPLOAD_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["kind", "file"],
    "properties": {"kind": {"type": "string", "enum": list(documents.DOCUMENT_KINDS)},
                   "file": {"type": "string", "format": "binary"}}}}}}
UPLOAD_ERRORS = ("413 FILE_TOO_LARGE; 415 FILE_TYPE_NOT_ALLOWED; 422 FILE_EMPTY, FILE_CORRUPT, PDF_ENCRYPTED, "
                 "PDF_ACTIVE_CONTENT, FILE_POLYGLOT, MALWARE_DETECTED; 503 SCANNER_UNAVAILABLE, "
                 "STORAGE_UNAVAILABLE (with Retry-After; nothing stored, retry is safe)")


class _Upload:
    """One upload attempt: what was read from the form, and what must be undone if it fails."""

    def __init__(self):
        self.kind: str | None = None
        self.filename: str | None = None
        self.ingested = None
        self.replay_sha256: str | None = None


def _read_form(reader: MultipartReader, upload: _Upload, *, req, principal, replaying: bool) -> None:
    a, s = adapters(), settings()
    for part in reader.parts():
        if part.name == "kind" and not part.is_file:
            upload.kind = part.text(limit=100).strip()
        elif part.name == "file" and part.is_file:
            if upload.ingested is not None or upload.replay_sha256 is not None:
                raise Unprocessable("Send one file per upload.", code="VALIDATION_FAILED")
            upload.filename = part.filename
            if replaying:  # same key again: hash the body only, to compare with the first attempt
                digest = hashlib.sha256()
                for chunk in part.chunks():
                    digest.update(chunk)
                upload.replay_sha256 = digest.hexdigest()
                continue
            if upload.kind is not None:  # refuse a wrong kind before reading megabytes
                documents.check_kind(principal, req, upload.kind)
            upload.ingested = ingest(part.chunks(), scanner=a.scanner, store=a.store,
                                     max_bytes=s.max_upload_bytes, filename=part.filename)
        else:
            raise Unprocessable(f"Unexpected form field `{part.name[:40]}`; send `kind` and `file`.",
                                code="VALIDATION_FAILED")
    if upload.ingested is None and upload.replay_sha256 is None:
        raise Unprocessable("The form has no `file` part.", code="FILE_REQUIRED")


def _fingerprint(upload: _Upload, sha256: str) -> str:
    return idempotency.fingerprint(request.method, request.path, upload.kind or "", upload.filename or "", sha256)


@blp.route("/<request_id>/documents", methods=["POST"])
@requires("requester", "requester_admin", "facility_staff", scope="requests:write")
@blp.doc(parameters=[IDEMPOTENCY_HEADER], requestBody=UPLOAD_BODY, description=UPLOAD_ERRORS)
@blp.response(201, DocumentSchema)
def upload_document(request_id):
    """Upload one document; it is virus-scanned and checked while it streams, and stored only if clean."""
    received = receive_upload(request_id)
    if not isinstance(received, tuple):
        return received  # the replay of an earlier answer under the same Idempotency-Key
    document, location = received
    return document, 201, {"Location": location}


def receive_upload(request_id: str):
    """Read one multipart upload for the caller (API or portal); (document, location), or a replay response."""
    principal, a, s = current_principal(), adapters(), settings()
    req = visible_request(request_id)
    reader = MultipartReader(request.stream, boundary_of(request.content_type))
    key = request.headers.get("Idempotency-Key")
    prior = idempotency.begin_streamed(a.db, principal=principal.audit_actor, key=key)
    upload = _Upload()
    try:
        _read_form(reader, upload, req=req, principal=principal, replaying=prior is not None)
        if prior is not None:
            idempotency.compare(prior[0], _fingerprint(upload, upload.replay_sha256))
            return replay_response(prior[1])
        document, body, location = _accept(upload, req=req, principal=principal)
    except GatewayError as error:
        sha256 = upload.ingested.sha256 if upload.ingested is not None else None
        _undo(upload)
        if not isinstance(error, FileTooLarge):
            reader.drain(s.max_upload_bytes)  # let the client finish sending so it can read our answer
        if key is not None and prior is None:
            _settle(key, upload, error, sha256)
        raise
    except BaseException:
        _undo(upload)
        if key is not None and prior is None:
            idempotency.release(a.db, principal=principal.audit_actor, key=key)
        raise
    if key is not None:
        idempotency.complete(a.db, principal=principal.audit_actor, key=key,
                             print_=_fingerprint(upload, body["sha256"]),
                             response=idempotency.StoredResponse(201, body, location))
    return document, location


def _accept(upload: _Upload, *, req, principal):
    a, session = adapters(), db_session()
    kind = documents.check_kind(principal, req, upload.kind)
    try:
        pages, _version = documents.judge(upload.ingested)
    except documents.MalwareDetected:
        documents.record_malware(a.db, principal=principal, req=req, kind=kind, ingested=upload.ingested,
                                 audit_ctx=audit_context())
        raise
    document = documents.accept(session, store=a.store, principal=principal, req=req, kind=kind,
                                filename=upload.filename, ingested=upload.ingested, pages=pages,
                                audit_ctx=audit_context())
    session.commit()
    upload.ingested.discard_spool()
    upload.ingested = None  # committed: nothing to undo any more
    location = url_for("documents.get_document", request_id=req.id, document_id=document.id)
    return document, DocumentSchema().dump(document), location


def _undo(upload: _Upload) -> None:
    if upload.ingested is not None:
        documents.discard(adapters().store, upload.ingested)
        upload.ingested = None


def _settle(key: str, upload: _Upload, error: GatewayError, sha256: str | None) -> None:
    """A judged file's refusal is the first answer and replays; outages (and bodies we could not
    fingerprint, such as one cut off by the size limit) release the key so a retry runs again."""
    db, principal = adapters().db, current_principal().audit_actor
    if error.status >= 500 or sha256 is None:
        idempotency.release(db, principal=principal, key=key)
        return
    idempotency.complete(db, principal=principal, key=key, print_=_fingerprint(upload, sha256),
                         response=idempotency.StoredResponse(error.status, error_body(error), None))


def visible_document(request_id: str, document_id: str) -> Document:
    """A document of a request the caller may see; anything else is the same 404."""
    req = visible_request(request_id)
    document = get_visible(db_session(), current_principal(), Document, document_id, db=adapters().db,
                           audit_context=audit_context())
    if document.request_id != req.id:  # documents are addressed under their own request
        raise NotFound()
    return document


@blp.route("/<request_id>/documents/<document_id>", methods=["GET"])
@requires(*READERS, scope="documents:read")
@blp.response(200, DocumentSchema)
def get_document(request_id, document_id):
    """A document's metadata (name, type, size, SHA-256, pages, scan result)."""
    document = visible_document(request_id, document_id)
    service.audit_read(adapters().db, current_principal(), "document.read", "document", document.id,
                       audit_context())
    return document


@blp.route("/<request_id>/documents/<document_id>/content", methods=["GET"])
@requires(*READERS, scope="documents:read")
@blp.doc(responses={302: {"description": "Redirect to a download URL valid for at most 5 minutes, served "
                                         "with Content-Disposition: attachment."}})
def download_document(request_id, document_id):
    """Download a document: a redirect to a short-lived URL. Every download is audited."""
    document = visible_document(request_id, document_id)
    service.audit_read(adapters().db, current_principal(), "document.download", "document", document.id,
                       audit_context())
    response = redirect(documents.download_url(adapters().store, document), code=302)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
