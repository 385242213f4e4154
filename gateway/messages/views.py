"""`/v1/requests/{id}/messages`: the thread between the requester and the facility's records staff."""

from __future__ import annotations

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from gateway.auth.web import audit_context, current_principal, requires
from gateway.intake.schemas import Text
from gateway.intake.views import visible_request
from gateway.messages import service
from gateway.pagination import PageArgsSchema
from gateway.schemas import Flag, Timestamp
from gateway.web import IDEMPOTENCY_HEADER, adapters, db_session, idempotent

blp = Blueprint("messages", __name__, url_prefix="/v1/requests",
                description="Messages between the requester and the facility's records staff.")

WRITERS = ("requester", "requester_admin", "facility_staff")


class MessageCreateSchema(Schema):
    class Meta:
        unknown = "raise"

    body = Text(service.MAX_BODY, multiline=True, required=True, validate_also=validate.Length(min=1),
                metadata={"description": "Plain text, at most 5,000 characters. It may hold patient details: it "
                                         "is never e-mailed, logged or sent by webhook."})
    internal = Flag(load_default=False, metadata={
        "description": "Records staff only: a note for colleagues that the requester never sees."})


class AuthorSchema(Schema):
    kind = fields.String(validate=validate.OneOf(("requester", "staff")))
    name = fields.String(metadata={"description": "The organization's name, or the records team's "
                                                  "(\"Records team, Tufts Medical Center\")"})


class MessageSchema(Schema):
    id = fields.String()
    at = Timestamp()
    author = fields.Nested(AuthorSchema)
    body = fields.String()
    internal = Flag()


class MessagePageSchema(Schema):
    items = fields.List(fields.Nested(MessageSchema))
    next_cursor = fields.String(allow_none=True)


@blp.route("/<request_id>/messages", methods=["POST"])
@requires(*WRITERS, scope="requests:write")
@idempotent
@blp.doc(parameters=[IDEMPOTENCY_HEADER])
@blp.arguments(MessageCreateSchema)
@blp.response(201, MessageSchema)
@blp.alt_response(403, description="FORBIDDEN: `internal` from a requester, or staff of another facility")
@blp.alt_response(409, description="REQUEST_NOT_SUBMITTED: a draft has no thread yet")
def post_message(body, request_id):
    """Write to the request's thread (staff: or an internal note); a `request.message_posted` event follows."""
    principal = current_principal()
    message_id = service.post_message(adapters().db, principal=principal, request_id=request_id,
                                      body=body["body"], internal=body["internal"], audit_ctx=audit_context())
    return service.as_dict(service.get_message(db_session(), principal, message_id)), 201


@blp.route("/<request_id>/messages", methods=["GET"])
@requires(*WRITERS, scope="requests:read")
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, MessagePageSchema)
def list_messages(page, request_id):
    """The request's thread, oldest first (requesters never see internal notes)."""
    principal = current_principal()
    req = visible_request(request_id)
    items, next_cursor = service.list_messages(db_session(), principal, req, **page)
    service.audit_read(adapters().db, principal, req.id, audit_context())
    return {"items": [service.as_dict(m) for m in items], "next_cursor": next_cursor}
