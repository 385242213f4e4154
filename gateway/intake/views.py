"""`/v1/requests`: create, read, list, edit, cancel, validate, submit, timeline.

Views parse, call one service function (which owns its transaction), and
render.  Every response about one request carries `ETag: "<version>"`, and
every change accepts `If-Match` (412 PRECONDITION_FAILED when stale).
"""

from __future__ import annotations

from flask import jsonify, request, url_for
from flask_smorest import Blueprint
from marshmallow import Schema

from gateway.auth.models import Organization
from gateway.auth.web import audit_context, current_principal, requires
from gateway.errors import BadRequest
from gateway.intake import assessment, caseload, groups, lifecycle, one_shot, service, submission
from gateway.intake.documents import REQUESTER_KINDS
from gateway.intake.rules import CATALOGUE
from gateway.intake.schemas import (
    EventPageSchema,
    RequestCreateSchema,
    RequestGroupCreatedSchema,
    RequestGroupCreateSchema,
    RequestListArgsSchema,
    RequestPageSchema,
    RequestSchema,
    RequestSearchSchema,
    Text,
    ValidationSchema,
)
from gateway.pagination import PageArgsSchema
from gateway.web import (
    IDEMPOTENCY_HEADER,
    IF_MATCH_HEADER,
    adapters,
    clock,
    db_session,
    has_body,
    idempotent,
    query_flag,
    run_idempotently,
    settings,
)

blp = Blueprint("requests", __name__, url_prefix="/v1/requests", description="Records requests.")

REQUESTERS = ("requester", "requester_admin")
READERS = (*REQUESTERS, "facility_staff")
load_create_body = service.load_create_body


def raw_json():
    """The request's decoded JSON: 400 BODY_NOT_JSON without a JSON body, MALFORMED_JSON when it does not parse."""
    if not request.is_json or not has_body():
        raise BadRequest("Send a JSON body with Content-Type: application/json.", code="BODY_NOT_JSON")
    return request.get_json()


def json_body() -> dict:
    """The request's JSON body as a validated create body."""
    return load_create_body(raw_json())


def present(req) -> dict:
    """The request resource as the caller may see it (every read returns it)."""
    return assessment.resource(db_session(), req, on=clock().today(), viewer=current_principal())


def render(request_id: str, status: int = 200, headers: dict | None = None):
    """A changed request, read again after its service committed: (resource, status, headers with its ETag)."""
    req = visible_request(request_id)
    return present(req), status, {"ETag": lifecycle.etag(req), **(headers or {})}


def if_match() -> str | None:
    """The If-Match header, for the services to compare with the locked row's version."""
    return request.headers.get("If-Match")


ONE_SHOT_FORM = {
    "schema": {"type": "object", "required": ["request"], "additionalProperties": False, "properties": {
        "request": {"allOf": [{"$ref": "#/components/schemas/RequestCreate"}],
                    "description": "The create body as JSON; the first part, without a file name."},
        **{kind: {"type": "string", "format": "binary",
                  "description": f"A `{kind}` document (PDF, TIFF, PNG or JPEG), sent as a file."}
           for kind in REQUESTER_KINDS}}},
    "encoding": {"request": {"contentType": "application/json"},
                 **{kind: {"contentType": "application/pdf, image/tiff, image/png, image/jpeg"}
                    for kind in REQUESTER_KINDS}},
}
NOT_AN_ID = ("METHOD_NOT_ALLOWED: `validate` and `search` are not request ids (POST /v1/requests/validate and "
             "POST /v1/requests/search are operations of their own).")
# A JSON merge patch of the create body (gateway.openapi makes `RequestCreatePatch` from `RequestCreate`).
MERGE_PATCH = {"schema": {"$ref": "#/components/schemas/RequestCreatePatch"}}


@blp.route("", methods=["POST"])
@requires(*REQUESTERS, scope="requests:write")
@blp.doc(parameters=[IDEMPOTENCY_HEADER, {"in": "query", "name": "submit", "schema": {"type": "boolean"},
                                          "description": "One-shot form only: submit once the documents are in."}],
         requestBody={"required": True, "content": {
             "application/json": {"schema": {"oneOf": [RequestCreateSchema, RequestGroupCreateSchema]}},
             "multipart/form-data": ONE_SHOT_FORM},
             "description": "The create body as JSON, naming one `facility` or several `facilities` (a group: one "
                            "request per facility); or the one-shot form (one facility): the `request` part "
                            "first, then one file part per document, named by its kind."},
         responses={"201": {"description": "The new draft; with `facilities`, the group and its drafts, one per "
                                           "facility in the order given (`Location` is then the group).",
                            "content": {"application/json": {"schema": {
                                "oneOf": [RequestSchema, RequestGroupCreatedSchema]}}},
                            "headers": {"Location": {"$ref": "#/components/headers/Location"},
                                        "ETag": {"$ref": "#/components/headers/OptionalETag"}}}})
@blp.response(201, RequestSchema, headers={"Location": {"$ref": "#/components/headers/Location"}})
@blp.alt_response(409, description="DUPLICATE_REFERENCE: an open request already has this reference (for this "
                                   "facility, or for one of the `facilities`: then nothing is created)")
def create_request():
    """Create a draft (JSON), a group of drafts for several `facilities`, or in one shot with its documents
    (multipart, `?submit=true` to submit)."""
    query_flag("submit")  # `true` or `false` (only the one-shot form acts on it)
    if request.mimetype == "multipart/form-data":
        return one_shot.create_one_shot(load_create_body, _created)
    return run_idempotently(_create_from_json)


_REQUEST = RequestSchema()  # built once: a schema is costly to build, cheap to reuse


def _created(request_id: str):
    resource, _status, headers = render(request_id, 201)
    return _created_response(request_id, resource, headers["ETag"])


def _created_response(request_id: str, resource: dict, etag: str):
    response = jsonify(_REQUEST.dump(resource))
    response.status_code = 201
    response.headers["ETag"] = etag
    response.headers["Location"] = url_for("requests.get_request", request_id=request_id)
    return response


def _presented(principal, today):
    """What a service that changed a request hands back from inside its transaction: the resource as
    `principal` sees it and its ETag (the response then needs no second read)."""
    def present_in_transaction(session, req) -> tuple[str, dict, str]:
        return req.id, assessment.resource(session, req, on=today, viewer=principal), lifecycle.etag(req)
    return present_in_transaction


def _create_from_json():
    data = raw_json()
    if isinstance(data, dict) and "facilities" in data:  # several facilities: a group (API.md v1.1)
        group_id, request_ids = groups.create_group(adapters().db, principal=current_principal(),
                                                    body=service.load_group_body(data), audit_ctx=audit_context())
        return _group_created(group_id, request_ids)
    principal = current_principal()
    request_id, resource, etag = service.create_request(adapters().db, principal=principal,
                                                        body=load_create_body(data), audit_ctx=audit_context(),
                                                        present=_presented(principal, clock().today()))
    return _created_response(request_id, resource, etag)


def _group_created(group_id: str, request_ids: list[str]):
    session, principal = db_session(), current_principal()
    found = {req.id: req for req in groups.group_requests(session, principal, group_id)}
    body = {"group_id": group_id, "requests": [present(found[request_id]) for request_id in request_ids]}
    response = jsonify(RequestGroupCreatedSchema().dump(body))
    response.status_code = 201
    response.headers["Location"] = url_for("request_groups.get_group", group_id=group_id)
    return response


CSV_LIST = {"200": {"description": "A page of requests (JSON); with `Accept: text/csv`, every request the "
                                   "filters select (`limit` and `cursor` ignored), in the `sort` order, streamed as "
                                   "CSV: no date of birth, no MRN; cells a spreadsheet would run as formulas are "
                                   "prefixed with `'`.",
                    "content": {"application/json": {"schema": RequestPageSchema},
                                "text/csv": {"schema": {"type": "string"}}}}}


def wants_csv() -> bool:
    """Whether the client prefers CSV to JSON (`Accept: text/csv`)."""
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"], default="application/json")
    return best == "text/csv" and request.accept_mimetypes["text/csv"] > request.accept_mimetypes["application/json"]


@blp.route("", methods=["GET"])
@requires(*READERS, scope="requests:read")
@blp.arguments(RequestListArgsSchema, location="query")
@blp.doc(responses=CSV_LIST)
@blp.response(200, RequestPageSchema)
def list_requests(args):
    """The requests you may see, newest first (or by due date, or last updated first), filtered by status,
    facility, reference, creation or change time and lateness; `Accept: text/csv` exports them all."""
    principal = current_principal()
    today = clock().today()
    if wants_csv():
        return export(caseload.filtered(principal, today=today, **_filters(args)), sort=args["sort"], today=today)
    items, next_cursor = service.list_requests(db_session(), principal, today=today, **args)
    service.audit_read(adapters().db, principal, "request.list", "request", None, audit_context())
    return {"items": [present(req) for req in items], "next_cursor": next_cursor}


def _filters(args: dict) -> dict:
    return {name: args.get(name) for name in ("status", "facility", "reference", "created_after", "updated_after")} \
        | {"overdue": bool(args.get("overdue"))}


def export(query, *, sort: str, today):
    """The streamed CSV export of `query` (audited before the first byte leaves)."""
    from flask import Response, stream_with_context

    service.audit_read(adapters().db, current_principal(), "request.export", "request", None, audit_context())
    response = Response(stream_with_context(caseload.export_csv(adapters().db, query, sort=sort, today=today)),
                        mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="requests.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response


@blp.route("/search", methods=["POST"])
@requires(*READERS, scope="requests:read")
@blp.arguments(RequestSearchSchema)
@blp.response(200, RequestPageSchema)
def search_requests(body):
    """The request list searched by reference or patient name (terms in the body, never a URL), filtered and
    sorted as `GET /v1/requests`.

    A call reads at most 5,000 requests: a page may hold fewer than `limit` items and still have a
    `next_cursor`, which continues the search where it stopped."""
    principal = current_principal()
    today = clock().today()
    query = caseload.filtered(principal, today=today, **_filters(body["filters"]))
    items, next_cursor = caseload.search(db_session(), query, text=body["text"], sort=body["sort"],
                                         limit=body["limit"], cursor=body["cursor"])
    service.audit_read(adapters().db, principal, "request.search", "request", None, audit_context())
    return {"items": [present(req) for req in items], "next_cursor": next_cursor}


def visible_request(request_id: str):
    """The request if the caller may see it, else 404 (audited when it exists but is someone else's)."""
    return service.get_request(db_session(), current_principal(), request_id, db=adapters().db,
                               audit_ctx=audit_context())


@blp.route("/<request_id:request_id>", methods=["GET"])
@requires(*READERS, scope="requests:read")
@blp.response(200, RequestSchema)
@blp.alt_response(405, description=NOT_AN_ID)
def get_request(request_id):
    """One request with its documents, status, deficiencies, fee estimate and due date; ETag is its version."""
    req = visible_request(request_id)
    service.audit_read(adapters().db, current_principal(), "request.read", "request", req.id, audit_context())
    return present(req), 200, {"ETag": lifecycle.etag(req)}


@blp.route("/<request_id:request_id>", methods=["PATCH"])
@requires(*REQUESTERS, scope="requests:write")
@blp.doc(parameters=[IF_MATCH_HEADER],
         requestBody={"required": True, "description": "A JSON merge patch (RFC 7396) of the create body; "
                      "the result must be a valid create body.",
                      "content": {"application/merge-patch+json": MERGE_PATCH, "application/json": MERGE_PATCH}})
@blp.response(200, RequestSchema)
@blp.alt_response(409, description="REQUEST_NOT_EDITABLE: only draft and returned requests change; FIELD_LOCKED: "
                                   "facility and pathway are fixed once submitted")
@blp.alt_response(412, description="PRECONDITION_FAILED: If-Match names an older version; nothing changed")
@blp.alt_response(405, description=NOT_AN_ID)
def update_request(request_id):
    """Correct a draft or returned request (for instance a new authorization's dates) before submitting."""
    service.ensure_editable(visible_request(request_id))  # a closed request answers 409 whatever the patch says
    patch = request.get_json(force=True) if has_body() else None  # malformed: 400 MALFORMED_JSON
    if not isinstance(patch, dict):
        raise BadRequest("Send a JSON merge patch object.", code="BODY_NOT_JSON")
    service.update_request(adapters().db, principal=current_principal(), request_id=request_id, patch=patch,
                           if_match=if_match(), audit_ctx=audit_context())
    return render(request_id)


class CancelSchema(Schema):
    class Meta:
        unknown = "raise"

    reason = Text(500, multiline=True, metadata={"description": "Why (optional; recorded on the timeline)."})


@blp.route("/<request_id>/cancel", methods=["POST"])
@requires(*REQUESTERS, scope="requests:write")
@idempotent
@blp.doc(parameters=[IDEMPOTENCY_HEADER, IF_MATCH_HEADER],
         requestBody={"required": False, "content": {"application/json": {"schema": CancelSchema}}})
@blp.response(200, RequestSchema)
@blp.alt_response(409, description="INVALID_TRANSITION: only draft, submitted, routed or returned requests can be "
                                   "cancelled")
@blp.alt_response(412, description="PRECONDITION_FAILED: If-Match names an older version; nothing changed")
def cancel_request(request_id):
    """Cancel a draft, submitted, routed or returned request, with an optional reason."""
    reason = None
    if request.content_length or request.mimetype == "application/json":
        reason = load_optional(CancelSchema).get("reason")
    service.cancel_request(adapters().db, principal=current_principal(), request_id=request_id, reason=reason,
                           if_match=if_match(), audit_ctx=audit_context())
    return render(request_id)


def load_optional(schema: type[Schema]) -> dict:
    """An optional small JSON body validated by `schema` (an empty body is {})."""
    from marshmallow import ValidationError

    from gateway.errors import Unprocessable, flatten_messages

    data = request.get_json(silent=True)
    if data is None:
        if request.get_data():
            raise BadRequest("Send a JSON object, or no body.", code="BODY_NOT_JSON")
        return {}
    if not isinstance(data, dict):
        raise BadRequest("Send a JSON object, or no body.", code="BODY_NOT_JSON")
    try:
        return schema().load(data)
    except ValidationError as error:
        raise Unprocessable("The body has invalid fields; see errors.", errors=flatten_messages(error.messages)) \
            from None


@blp.route("/<request_id>/events", methods=["GET"])
@requires(*READERS, scope="requests:read")
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, EventPageSchema)
def list_events(page, request_id):
    """The request's timeline, oldest first: every status change and what happened to it."""
    req = visible_request(request_id)
    items, next_cursor = service.list_events(db_session(), current_principal(), req, **page)
    service.audit_read(adapters().db, current_principal(), "request.events.read", "request", req.id,
                       audit_context())
    return {"items": items, "next_cursor": next_cursor}


@blp.route("/validate", methods=["POST"])
@requires(*REQUESTERS, scope="requests:write")
@blp.doc(requestBody={"required": True, "content": {"application/json": {"schema": RequestCreateSchema}}})
@blp.response(200, ValidationSchema)
def validate_request():
    """Check a create body against every rule without storing anything (documents count as not yet sent)."""
    body = json_body()
    session, principal = db_session(), current_principal()
    on = clock().today()
    org = session.get(Organization, principal.org_id)
    result = assessment.assess(session, body, org=org, documents=(), on=on, submitted_on=on)
    return {"valid": result.valid, "deficiencies": result.deficiencies,
            "required_documents": result.required_documents, "fee_estimate": result.fee_estimate,
            "due_on": result.due_on, "due_basis": result.due_basis.basis if result.due_basis else None}


@blp.route("/<request_id>/submit", methods=["POST"])
@requires(*REQUESTERS, scope="requests:write")
@idempotent
@blp.doc(parameters=[IDEMPOTENCY_HEADER, IF_MATCH_HEADER])
@blp.response(202, RequestSchema)
@blp.alt_response(422, description="REQUEST_DEFICIENT: every deficiency at once in `errors`; the request "
                                   "stays as it was. Codes: " + ", ".join(CATALOGUE))
@blp.alt_response(409, description="INVALID_TRANSITION: cancelled or closed requests cannot be submitted")
@blp.alt_response(412, description="PRECONDITION_FAILED: If-Match names an older version; nothing changed")
def submit_request(request_id):
    """Submit for release: all rules are checked on the locked request; a clean one is submitted and routed."""
    principal = current_principal()
    submitted = submission.submit(adapters().db, principal=principal, request_id=request_id, clock=clock(),
                                  if_match=if_match(), audit_ctx=audit_context(),
                                  reading_wait=settings().reading_submit_wait,
                                  present=_presented(principal, clock().today()))
    if submitted is None:  # submitted already: nothing changed, the request as it is now
        return render(request_id, 202)
    _request_id, resource, etag = submitted
    return resource, 202, {"ETag": etag}
