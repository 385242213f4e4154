"""Records staff: the facility queue, claim and transitions."""

from __future__ import annotations

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from gateway.auth.web import audit_context, current_principal, requires
from gateway.intake.schemas import RequestSchema, Text
from gateway.intake.views import present, visible_request
from gateway.pagination import cursor_field
from gateway.routing import staff
from gateway.schemas import Timestamp
from gateway.web import IDEMPOTENCY_HEADER, adapters, clock, db_session, idempotent

blp = Blueprint("staff", __name__, description="Facility records teams: queue, claim, transitions.")


class QueueArgsSchema(Schema):
    limit = fields.Integer(load_default=25, validate=validate.Range(1, 100))
    cursor = cursor_field()
    status = fields.String(validate=validate.OneOf(("routed", "in_progress", "on_hold")))
    queue = fields.String(validate=validate.OneOf(("facility", "legal-review", "sensitive-review")))


class QueueItemSchema(Schema):
    id = fields.String()
    reference = fields.String()
    status = fields.String()
    queue = fields.String()
    pathway = fields.String()
    purpose = fields.String()
    due_on = fields.Date(allow_none=True)
    overdue = fields.Boolean(metadata={"description": "past due_on"})
    routed_at = Timestamp()
    assigned_to = fields.String(allow_none=True)
    documents = fields.Integer()


class QueuePageSchema(Schema):
    items = fields.List(fields.Nested(QueueItemSchema))
    next_cursor = fields.String(allow_none=True)


class TransitionSchema(Schema):
    class Meta:
        unknown = "raise"

    to = fields.String(required=True, validate=validate.OneOf(("on_hold", "in_progress", "fulfilled", "returned",
                                                                 "denied", "routed")),
                       metadata={"description": "`routed` forwards a reviewed request to its facility queue"})
    reasons = fields.List(fields.String(validate=validate.OneOf(staff.REASONS)), load_default=list,
                          validate=validate.Length(max=len(staff.REASONS)))
    note = Text(2000, multiline=True)


@blp.route("/v1/facilities/<code>/queue")
@requires("facility_staff")
@blp.arguments(QueueArgsSchema, location="query")
@blp.response(200, QueuePageSchema)
def facility_queue(args, code):
    """The facility's routed work, oldest due first; overdue requests are flagged."""
    principal = current_principal()
    items, next_cursor = staff.queue_page(db_session(), principal, code, status=args.get("status"),
                                          queue=args.get("queue"), limit=args["limit"], cursor=args["cursor"],
                                          today=clock().today())
    from gateway.intake.service import audit_read

    audit_read(adapters().db, principal, "queue.read", "facility", code, audit_context())
    return {"items": items, "next_cursor": next_cursor}


@blp.route("/v1/requests/<request_id>/claim", methods=["POST"])
@requires("facility_staff")
@idempotent
@blp.doc(parameters=[IDEMPOTENCY_HEADER])
@blp.response(200, RequestSchema)
def claim_request(request_id):
    """Take a routed request: it becomes in_progress, assigned to you."""
    req = visible_request(request_id)
    session = db_session()
    staff.claim(session, principal=current_principal(), req=req, audit_ctx=audit_context())
    session.commit()
    return present(req)


@blp.route("/v1/requests/<request_id>/transitions", methods=["POST"])
@requires("facility_staff")
@idempotent
@blp.doc(parameters=[IDEMPOTENCY_HEADER])
@blp.arguments(TransitionSchema)
@blp.response(200, RequestSchema)
@blp.alt_response(409, description="INVALID_TRANSITION; RELEASE_REQUIRED before fulfilled")
def transition_request(body, request_id):
    """Move a request on: on_hold, in_progress, fulfilled, returned or denied (the last two need reasons)."""
    req = visible_request(request_id)
    session = db_session()
    staff.change_status(session, principal=current_principal(), req=req, to=body["to"], reasons=body["reasons"],
                        note=body.get("note"), audit_ctx=audit_context())
    session.commit()
    return present(req)
