"""`/v1/requests/{id}/documents`: streaming upload, metadata, download, and withdrawal of released records."""

from __future__ import annotations

from flask import redirect, request, url_for
from flask_smorest import Blueprint

from gateway.auth.tenancy import get_visible
from gateway.auth.web import audit_context, current_principal, requires
from gateway.errors import NotFound
from gateway.intake import documents, service
from gateway.intake.models import Document
from gateway.intake.schemas import DocumentSchema
from gateway.intake.upload_web import receive_upload
from gateway.intake.views import READERS, visible_request
from gateway.web import IDEMPOTENCY_HEADER, adapters, db_session

blp = Blueprint("documents", __name__, url_prefix="/v1/requests", description="Request documents.")

UPLOAD_BODY = {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["kind", "file"], "additionalProperties": False, "properties": {
        "kind": {"type": "string", "enum": list(documents.DOCUMENT_KINDS),
                 "description": "A text field (not a file); `release` is for records staff only."},
        "file": {"type": "string", "format": "binary",
                 "description": "The document, sent as a file: PDF, TIFF, PNG or JPEG, judged by its content."}}},
    "encoding": {"kind": {"contentType": "text/plain"},
                 "file": {"contentType": "application/pdf, image/tiff, image/png, image/jpeg"}}}}}


@blp.route("/<request_id>/documents", methods=["POST"])
@requires("requester", "requester_admin", "facility_staff", scope="requests:write")
@blp.doc(parameters=[IDEMPOTENCY_HEADER], requestBody=UPLOAD_BODY)
@blp.response(201, DocumentSchema, headers={"Location": {"$ref": "#/components/headers/Location"}})
def upload_document(request_id):
    """Upload one document; it is virus-scanned and checked while it streams, and stored only if clean."""
    received = receive_upload(request_id)
    if not isinstance(received, tuple):
        return received  # the replay of an earlier answer under the same Idempotency-Key
    document, _body = received
    return document, 201, {"Location": url_for("documents.get_document", request_id=request_id,
                                               document_id=document.id)}


def visible_document(request_id: str, document_id: str) -> Document:
    """A document of a request the caller may see; anything else is the same 404."""
    req = visible_request(request_id)
    document = get_visible(db_session(), current_principal(), Document, document_id, db=adapters().db,
                           audit_context=audit_context())
    if document.request_id != req.id:  # documents are addressed under their own request
        raise NotFound()
    return document


@blp.route("/<request_id>/documents/<document_id>", methods=["DELETE"])
@requires("facility_staff", scope="requests:write")
@blp.response(204)
@blp.alt_response(409, description="ALREADY_RELEASED: the request was fulfilled and the records released")
@blp.alt_response(403, description="FORBIDDEN: only records staff withdraw, and only documents of kind `release`")
def withdraw_document(request_id, document_id):
    """Withdraw a released-records document uploaded by mistake, before the request is fulfilled (bytes deleted)."""
    documents.withdraw_release(adapters().db, store=adapters().store, principal=current_principal(),
                               request_id=request_id, document_id=document_id, audit_ctx=audit_context(),
                               if_match=request.headers.get("If-Match"))


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
                                         "with Content-Disposition: attachment.",
                          "headers": {"Location": {"$ref": "#/components/headers/Location"}}}})
def download_document(request_id, document_id):
    """Download a document: a redirect to a short-lived URL. Every download is audited."""
    document = visible_document(request_id, document_id)
    service.audit_read(adapters().db, current_principal(), "document.download", "document", document.id,
                       audit_context())
    response = redirect(documents.download_url(adapters().store, document), code=302)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
