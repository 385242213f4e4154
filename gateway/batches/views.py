"""`/v1/batches`: bulk submission of create bodies, processed by a job (API.md v1.1, "Bulk submission")."""

from __future__ import annotations

from flask import request, url_for
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from gateway.auth.web import audit_context, current_principal, requires
from gateway.batches import service
from gateway.batches.models import STATUSES
from gateway.errors import BadRequest, ServiceUnavailable
from gateway.jsonbody import MAX_BATCH_BODY
from gateway.schemas import FieldErrorSchema, WholeNumber
from gateway.web import IDEMPOTENCY_HEADER, adapters, db_session, has_body, idempotent, settings

blp = Blueprint("batches", __name__, url_prefix="/v1/batches",
                description="Bulk submission: up to 1,000 create bodies at once, each created as a draft.")

REQUESTERS = ("requester", "requester_admin")


class CountsSchema(Schema):
    created = WholeNumber(required=True, metadata={"minimum": 0})
    rejected = WholeNumber(required=True, metadata={"minimum": 0})


class BatchItemSchema(Schema):
    index = WholeNumber(required=True, metadata={"minimum": 0, "maximum": service.MAX_ITEMS - 1,
                                                 "description": "The item's position in `requests`, from 0."})
    request_id = fields.String(required=True, allow_none=True,
                               metadata={"description": "The draft created, or null when the item was rejected."})
    errors = fields.List(fields.Nested(FieldErrorSchema), required=True, metadata={
        "description": "Why the item was rejected: one entry per field, as a 422 of POST /v1/requests gives "
                       "them, or DUPLICATE_REFERENCE (`reference` repeats an earlier item or an open request)."})


class BatchSchema(Schema):
    id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES), metadata={
        "description": "`processing` until every item has been handled, then `done`."})
    total = WholeNumber(required=True, metadata={"minimum": 1, "maximum": service.MAX_ITEMS,
                                                 "description": "How many items the batch holds."})
    created_at = fields.DateTime(required=True, format="iso")
    counts = fields.Nested(CountsSchema, required=True)
    items = fields.List(fields.Nested(BatchItemSchema), required=True, metadata={
        "description": "The items handled so far, by index (all of them once `done`)."})


BATCH_BODY = {"schema": {
    "type": "object", "required": ["requests"], "additionalProperties": False,
    "properties": {"requests": {
        "type": "array", "minItems": 1, "maxItems": service.MAX_ITEMS,
        "items": {"type": "object", "description": "A create body, exactly as POST /v1/requests takes it "
                                                   "(`RequestCreate`). Each item is checked on its own: an "
                                                   "invalid one is reported in the batch's `items`, not "
                                                   "refused with the batch."}}}}}


@blp.route("", methods=["POST"])
@requires(*REQUESTERS, scope="requests:write")
@idempotent
@blp.doc(parameters=[IDEMPOTENCY_HEADER],
         requestBody={"required": True, "content": {"application/json": BATCH_BODY},
                      "description": f"`{{\"requests\": [create body, ...]}}`: 1 to {service.MAX_ITEMS:,} items, "
                                     f"at most {MAX_BATCH_BODY // 2**20} MiB in all."})
@blp.response(202, BatchSchema, headers={"Location": {"$ref": "#/components/headers/Location"}})
@blp.alt_response(400, description="BATCH_EMPTY: `requests` holds no item.")
@blp.alt_response(413, description="BATCH_TOO_LARGE: more than 1,000 items.")
@blp.alt_response(503, description="QUEUE_UNAVAILABLE: the job queue could not be reached; nothing was stored.")
def create_batch():
    """Store a batch of create bodies and start its job; poll GET /v1/batches/{id} until `done`."""
    if not request.is_json or not has_body():
        raise BadRequest("Send a JSON body with Content-Type: application/json.", code="BODY_NOT_JSON")
    items = service.check_items(request.get_json())
    principal, a = current_principal(), adapters()
    batch_id = service.create_batch(a.db, principal=principal, items=items, secret_key=settings().secret_key,
                                    audit_ctx=audit_context())
    enqueue(batch_id)
    return service.resource(db_session(), service.read(db_session(), batch_id)), 202, {
        "Location": url_for("batches.get_batch", batch_id=batch_id)}


def start_job(batch_id: str) -> bool:
    """Enqueue the batch's job (after the batch is committed); False when the queue cannot be reached."""
    from gateway.routing.dispatch import DispatchUnavailable, RqDispatcher
    from gateway.routing.queues import MAINTENANCE

    try:
        RqDispatcher(adapters().redis).enqueue(MAINTENANCE, service.JOB, [batch_id], job_id=f"batch-{batch_id}")
    except DispatchUnavailable:
        return False
    return True


def enqueue(batch_id: str) -> None:
    """Start the batch's job; Redis down: the batch is removed and the answer is 503."""
    if not start_job(batch_id):
        service.forget_batch(adapters().db, batch_id)
        raise ServiceUnavailable("The job queue is unavailable; nothing was stored. Try again shortly.",
                                 code="QUEUE_UNAVAILABLE") from None


@blp.route("/<batch_id>", methods=["GET"])
@requires(*REQUESTERS, scope="requests:read")
@blp.response(200, BatchSchema)
def get_batch(batch_id):
    """A batch: `processing` or `done`, its counts and each item's outcome (its draft's id, or its errors)."""
    session = db_session()
    batch = service.get_batch(session, current_principal(), batch_id, db=adapters().db, audit_ctx=audit_context())
    return service.resource(session, batch)
