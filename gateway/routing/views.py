"""Records staff: the facility queue, claim, assign and transitions."""

from __future__ import annotations

from flask import request
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from gateway.auth.web import audit_context, current_principal, requires
from gateway.intake.schemas import RequestSchema, Text
from gateway.intake.views import render
from gateway.pagination import cursor_field
from gateway.routing import staff
from gateway.schemas import PlainText, Timestamp
from gateway.web import IDEMPOTENCY_HEADER, IF_MATCH_HEADER, adapters, clock, db_session, idempotent

blp = Blueprint("staff", __name__, description="Facility records teams: queue, claim, transitions.")


class QueueArgsSchema(Schema):
    limit = fields.Integer(load_default=25, validate=validate.Range(1, 100))
    cursor = cursor_field()
    status = fields.String(validate=validate.OneOf(("routed", "in_progress", "on_hold", "awaiting_payment")))
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
    version = fields.Integer()
    hold_reason = fields.String(allow_none=True)
    invoice_status = fields.String(allow_none=True, metadata={"description": "due, paid, waived, no_charge; null "
                                                                             "before an invoice is issued"})
    disputed = fields.Boolean(metadata={"description": "the requester disputes the invoice"})


class QueuePageSchema(Schema):
    items = fields.List(fields.Nested(QueueItemSchema))
    next_cursor = fields.String(allow_none=True)


class TransitionSchema(Schema):
    class Meta:
        unknown = "raise"

    to = fields.String(required=True, validate=validate.OneOf(staff.TARGETS),
                       metadata={"description": "`routed` passes a reviewed request to the next queue on its route "
                                                "(or, in the facility queue, unclaims it)"})
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
@blp.doc(parameters=[IDEMPOTENCY_HEADER, IF_MATCH_HEADER])
@blp.response(200, RequestSchema)
@blp.alt_response(409, description="INVALID_TRANSITION: another clerk holds it, or it is not routed")
@blp.alt_response(412, description="PRECONDITION_FAILED: If-Match names an older version; nothing changed")
def claim_request(request_id):
    """Take a routed request: it becomes in_progress, assigned to you (claiming it again yourself is a no-op)."""
    staff.claim(adapters().db, principal=current_principal(), request_id=request_id,
                if_match=request.headers.get("If-Match"), audit_ctx=audit_context())
    return render(request_id)


class AssignSchema(Schema):
    class Meta:
        unknown = "raise"

    user_id = PlainText(36, required=True, metadata={"description": "A records clerk of the request's facility"})


@blp.route("/v1/requests/<request_id>/assign", methods=["POST"])
@requires("facility_staff")
@idempotent
@blp.doc(parameters=[IDEMPOTENCY_HEADER, IF_MATCH_HEADER])
@blp.arguments(AssignSchema)
@blp.response(200, RequestSchema)
@blp.alt_response(412, description="PRECONDITION_FAILED: If-Match names an older version; nothing changed")
def assign_request(body, request_id):
    """Hand a request to a colleague of the same facility (a routed request becomes theirs, in progress)."""
    staff.assign(adapters().db, principal=current_principal(), request_id=request_id, user_id=body["user_id"],
                 if_match=request.headers.get("If-Match"), audit_ctx=audit_context())
    return render(request_id)


@blp.route("/v1/requests/<request_id>/transitions", methods=["POST"])
@requires("facility_staff")
@idempotent
@blp.doc(parameters=[IDEMPOTENCY_HEADER, IF_MATCH_HEADER])
@blp.arguments(TransitionSchema)
@blp.response(200, RequestSchema)
@blp.alt_response(409, description="INVALID_TRANSITION; RELEASE_REQUIRED before fulfilled; AUTH_REVOKED when the "
                                   "patient revoked the authorization")
@blp.alt_response(412, description="PRECONDITION_FAILED: If-Match names an older version; nothing changed")
def transition_request(body, request_id):
    """Move a request on: on_hold, in_progress, fulfilled, returned or denied (the last two need reasons), or
    `routed` to pass it on from a review queue (or to unclaim it)."""
    staff.change_status(adapters().db, principal=current_principal(), request_id=request_id, to=body["to"],
                        reasons=body["reasons"], note=body.get("note"), if_match=request.headers.get("If-Match"),
                        audit_ctx=audit_context())
    return render(request_id)


class ExtendDueDateSchema(Schema):
    class Meta:
        unknown = "raise"

    reason = Text(2000, multiline=True, required=True, validate_also=validate.Length(min=1), metadata={
        "description": "Why the records cannot be provided in time: shown to the requester (write no patient "
                       "details beyond what they already know)."})


@blp.route("/v1/requests/<request_id>/due-date/extend", methods=["POST"])
@requires("facility_staff")
@idempotent
@blp.doc(parameters=[IDEMPOTENCY_HEADER, IF_MATCH_HEADER])
@blp.arguments(ExtendDueDateSchema)
@blp.response(200, RequestSchema)
@blp.alt_response(409, description="ALREADY_EXTENDED: the clock was extended before; DUE_DATE_NOT_EXTENDABLE: the "
                                   "due date was not set by HIPAA's access clock, or the request is not open")
@blp.alt_response(412, description="PRECONDITION_FAILED: If-Match names an older version; nothing changed")
def extend_due_date(body, request_id):
    """Extend HIPAA's 30-day access clock once, by 30 days, with a written reason; the requester is notified."""
    staff.extend_due_date(adapters().db, principal=current_principal(), request_id=request_id,
                          reason=body["reason"], if_match=request.headers.get("If-Match"), audit_ctx=audit_context())
    return render(request_id)
