"""Records staff: the facility queue, claim, assign and transitions."""

from __future__ import annotations

from flask import request
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from gateway.auth.web import audit_context, current_principal, requires
from gateway.intake.schemas import RequestSchema, Text
from gateway.intake.views import render
from gateway.pagination import MAX_CURSOR_LENGTH, cursor_field
from gateway.routing import dashboard, staff
from gateway.routing import queue as queues
from gateway.schemas import PlainText, Timestamp
from gateway.web import IDEMPOTENCY_HEADER, IF_MATCH_HEADER, adapters, clock, db_session, idempotent

blp = Blueprint("staff", __name__, description="Facility records teams: queue, claim, transitions.")


class QueueFilterFields(Schema):
    """The queue's filters, as query parameters (GET) or in a search body (POST)."""

    status = fields.String(validate=validate.OneOf(queues.OPEN_STATUSES))
    queue = fields.String(validate=validate.OneOf(queues.QUEUES))
    assigned = fields.String(validate=validate.OneOf(queues.ASSIGNED), metadata={
        "description": "`me`: assigned to the caller; `nobody`: not claimed yet"})
    due = fields.String(validate=validate.OneOf(queues.DUE), metadata={
        "description": "`today`: due today; `overdue`: due before today (the facilities' calendar)"})


class QueueArgsSchema(QueueFilterFields):
    limit = fields.Integer(load_default=25, validate=validate.Range(1, 100))
    cursor = cursor_field()
    sort = fields.String(load_default="due_on", validate=validate.OneOf(tuple(queues.SORTS)), metadata={
        "description": "`due_on`: oldest due date first (default); `-updated_at`: last updated first"})


class QueueFiltersSchema(QueueFilterFields):
    class Meta:
        unknown = "raise"


class QueueSearchSchema(Schema):
    """The body of `POST /v1/facilities/{code}/queue/search`: the terms never travel in a URL."""

    class Meta:
        unknown = "raise"

    text = Text(queues.SEARCH_MAX_LENGTH, required=True,
                validate_also=validate.Length(min=queues.SEARCH_MIN_LENGTH), metadata={
                    "description": "Part of the request's reference, or words starting the patient's name or a "
                                   "former name (case and accents ignored, any order)"})
    filters = fields.Nested(QueueFiltersSchema, load_default=dict)
    sort = fields.String(load_default="due_on", validate=validate.OneOf(tuple(queues.SORTS)))
    limit = fields.Integer(load_default=25, validate=validate.Range(1, 100))
    cursor = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=MAX_CURSOR_LENGTH),
                           metadata={"description": "`next_cursor` of the previous page of the same search"})


class QueueItemSchema(Schema):
    id = fields.String()
    reference = fields.String()
    status = fields.String()
    queue = fields.String()
    pathway = fields.String()
    purpose = fields.String()
    due_on = fields.Date(allow_none=True)
    overdue = fields.Boolean(metadata={"description": "past due_on"})
    due_today = fields.Boolean(metadata={"description": "due_on is today"})
    routed_at = Timestamp()
    updated_at = Timestamp()
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
    """The facility's open work, oldest due first (or last updated first), filtered; overdue requests flagged."""
    principal = current_principal()
    items, next_cursor = queues.queue_page(
        db_session(), principal, code, status=args.get("status"), queue=args.get("queue"),
        assigned=args.get("assigned"), due=args.get("due"), sort=args["sort"], limit=args["limit"],
        cursor=args["cursor"], today=clock().today())
    from gateway.intake.service import audit_read

    audit_read(adapters().db, principal, "queue.read", "facility", code, audit_context())
    return {"items": items, "next_cursor": next_cursor}


@blp.route("/v1/facilities/<code>/queue/search", methods=["POST"])
@requires("facility_staff")
@blp.arguments(QueueSearchSchema)
@blp.response(200, QueuePageSchema)
def search_queue(body, code):
    """The queue searched by reference or patient name (terms in the body, never a URL), filtered and sorted.

    A call reads at most 5,000 of the facility's open requests: a page may hold fewer than `limit` items
    and still have a `next_cursor`, which continues the search where it stopped."""
    principal = current_principal()
    filters = body["filters"]
    items, next_cursor = queues.queue_page(
        db_session(), principal, code, status=filters.get("status"), queue=filters.get("queue"),
        assigned=filters.get("assigned"), due=filters.get("due"), sort=body["sort"], text=body["text"],
        limit=body["limit"], cursor=body["cursor"], today=clock().today())
    from gateway.intake.service import audit_read

    audit_read(adapters().db, principal, "queue.search", "facility", code, audit_context())
    return {"items": items, "next_cursor": next_cursor}


class DayFiguresSchema(Schema):
    date = fields.Date()
    arrivals = fields.Integer(metadata={"description": "requests submitted that day"})
    releases = fields.Integer(metadata={"description": "requests fulfilled that day"})


class TurnaroundSchema(Schema):
    from_ = fields.Date(data_key="from", attribute="from", metadata={"description": "the window's first day"})
    to = fields.Date()
    released = fields.Integer(metadata={"description": "requests fulfilled in the window"})
    median_days = fields.Float(allow_none=True, metadata={
        "description": "median calendar days from first submission to release; null when none was released"})


class DashboardSchema(Schema):
    facility = fields.String()
    as_of = fields.Date(metadata={"description": "today in the facilities' calendar"})
    timezone = fields.String(metadata={"example": "America/New_York"})
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(),
                         metadata={"description": "requests by current status (every status but draft)"})
    open = fields.Integer(metadata={"description": "routed, in_progress, on_hold and awaiting_payment"})
    due_today = fields.Integer(metadata={"description": "open requests due today"})
    overdue = fields.Integer(metadata={"description": "open requests past their due date"})
    turnaround = fields.Nested(TurnaroundSchema)
    daily = fields.List(fields.Nested(DayFiguresSchema), metadata={"description": "the last 30 days, oldest first"})


@blp.route("/v1/facilities/<code>/dashboard")
@requires("facility_staff")
@blp.response(200, DashboardSchema)
def facility_dashboard(code):
    """The facility's figures: requests by status, due today, overdue, median turnaround and daily arrivals
    against releases over the last 30 days (days of the facilities' calendar)."""
    principal = current_principal()
    figures = dashboard.facility_dashboard(db_session(), principal, code, today=clock().today(),
                                           timezone=clock().timezone)
    from gateway.intake.service import audit_read

    audit_read(adapters().db, principal, "dashboard.read", "facility", code, audit_context())
    return figures


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
