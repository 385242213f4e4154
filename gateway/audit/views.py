"""`GET /v1/audit`: the audit trail, for auditors only."""

from __future__ import annotations

from flask_smorest import Blueprint
from marshmallow import Schema, fields

from gateway.audit.models import AuditEvent
from gateway.auth.tenancy import visible_select
from gateway.auth.web import current_principal, requires
from gateway.pagination import PageArgsSchema, keyset_page
from gateway.schemas import PlainText, Timestamp
from gateway.web import db_session

blp = Blueprint("audit", __name__, url_prefix="/v1/audit", description="The append-only audit trail.")


class AuditQuerySchema(PageArgsSchema):
    request_id = PlainText(128, metadata={"description": "HTTP request id (X-Request-ID) the entry was written for"})
    object = PlainText(64, metadata={"description": "id of the object acted on (a records request, document, key...)"})
    actor = PlainText(80, metadata={"example": "user:6f0c..."})
    since = fields.AwareDateTime(default_timezone=None)


class AuditEntrySchema(Schema):
    seq = fields.Integer()
    at = Timestamp()
    actor = fields.String()
    org = fields.String(attribute="org_id", allow_none=True)
    action = fields.String(metadata={"example": "document.download"})
    object = fields.Function(lambda e: f"{e.object_type}:{e.object_id}" if e.object_id else e.object_type)
    result = fields.String(metadata={"example": "success"})
    ip = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    hash = fields.String()


class AuditPageSchema(Schema):
    items = fields.List(fields.Nested(AuditEntrySchema))
    next_cursor = fields.String(allow_none=True)


@blp.route("")
@requires("auditor")
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, AuditPageSchema)
def list_audit(args):
    """Audit entries, newest first, filtered by request id, object, actor and time."""
    query = visible_select(current_principal(), AuditEvent)
    if args.get("request_id"):
        query = query.where(AuditEvent.request_id == args["request_id"])
    if args.get("object"):
        query = query.where(AuditEvent.object_id == args["object"].rpartition(":")[2])
    if args.get("actor"):
        query = query.where(AuditEvent.actor == args["actor"])
    if args.get("since"):
        query = query.where(AuditEvent.at >= args["since"])
    items, next_cursor = keyset_page(db_session(), query, columns=[AuditEvent.seq],
                                     limit=args["limit"], cursor=args["cursor"])
    return {"items": items, "next_cursor": next_cursor}
