"""`/v1/request-groups`: the requests created together for several facilities, and documents for all of them."""

from __future__ import annotations

from flask_smorest import Blueprint

from gateway.auth.web import audit_context, current_principal, requires
from gateway.intake import groups, service
from gateway.intake.document_views import UPLOAD_BODY
from gateway.intake.schemas import GroupDocumentsSchema, RequestGroupSchema
from gateway.intake.upload_web import receive_upload
from gateway.intake.views import REQUESTERS, present
from gateway.web import IDEMPOTENCY_HEADER, adapters, db_session

blp = Blueprint("request_groups", __name__, url_prefix="/v1/request-groups",
                description="Several facilities in one request: the group of requests created together.")


@blp.route("/<group_id>", methods=["GET"])
@requires(*REQUESTERS, scope="requests:read")
@blp.response(200, RequestGroupSchema)
def get_group(group_id):
    """The group and each of its requests (one per facility, in facility order), as GET /v1/requests/{id}."""
    principal, session = current_principal(), db_session()
    group, requests = groups.get_group(session, principal, group_id, db=adapters().db, audit_ctx=audit_context())
    service.audit_read(adapters().db, principal, "request_group.read", "request_group", group.id, audit_context())
    return {"id": group.id, "reference": group.reference, "created_at": group.created_at,
            "requests": [present(req) for req in requests]}


def _items(documents) -> dict:
    return {"items": [{"request_id": d.request_id, "document": d} for d in documents]}


def _present_group_documents(group_id: str, documents) -> tuple[dict, str]:
    from flask import url_for

    return GroupDocumentsSchema().dump(_items(documents)), url_for("request_groups.get_group", group_id=group_id)


@blp.route("/<group_id>/documents", methods=["POST"])
@requires(*REQUESTERS, scope="requests:write")
@blp.doc(parameters=[IDEMPOTENCY_HEADER], requestBody=UPLOAD_BODY)
@blp.response(201, GroupDocumentsSchema, headers={"Location": {"$ref": "#/components/headers/Location"}})
@blp.alt_response(409, description="REQUEST_NOT_EDITABLE: no request of the group is a draft or returned")
def upload_group_document(group_id):
    """Upload one document for every draft or returned request of the group: scanned and stored once, it
    becomes a document of each (one entry per request in `items`); `Location` is the group."""
    received = receive_upload(group_id, upload_class=groups.GroupDocumentUpload, present=_present_group_documents)
    if not isinstance(received, tuple):
        return received  # the replay of an earlier answer under the same Idempotency-Key
    documents, _body = received
    from flask import url_for

    return _items(documents), 201, {"Location": url_for("request_groups.get_group", group_id=group_id)}
