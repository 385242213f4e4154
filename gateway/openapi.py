"""The OpenAPI document, exact: every response an operation really sends, in one place.

The views declare what is theirs: their success schema and, with
`alt_response`, the codes of the conflicts only they raise.  Everything the
gateway does around a view is the same for every view, so it is documented
here, by `ExactResponses` (an apispec plugin that flask-smorest runs for each
route as it is registered), from facts about the route:

- a route outside `PUBLIC_RULES` answers 401 (and 429 to an address sending
  bad credentials); one with `@requires` answers 403, and so does every one
  but enrolment to a person who must set up two-step sign-in first;
- a path parameter means 404; a query schema, 422;
- a JSON body means 400, 408, 413 and 422; a multipart body the upload's
  refusals (400, 408, 413, 415, 422 and 503);
- `Idempotency-Key` means 409 (in flight) and 422 (reused, invalid);
  `If-Match` means 412;
- every route but the rate-limit-exempt ones can answer 429, and every route
  that reads the database 503, both with `Retry-After`.

Every error is `application/problem+json` with the Problem schema; every
response carries `X-Request-ID`; a response with the request resource carries
its `ETag`.  Operations get their view's name as operationId, and the create
operations link to what a client does next with what they created.
"""

from __future__ import annotations

import copy
import re

from apispec import BasePlugin

PROBLEM_CONTENT_TYPE = "application/problem+json"
SECURITY_SCHEME = "bearer"

# Visible ASCII, as gateway.idempotency.KEY_PATTERN checks it.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
ETAG_PATTERN = r'^"[0-9]+"$'

IDEMPOTENCY_HEADER = {
    "in": "header", "name": "Idempotency-Key", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": IDEMPOTENCY_KEY_PATTERN},
    "description": "1 to 255 visible ASCII characters (else 422 IDEMPOTENCY_KEY_INVALID), kept 24 h per "
                   "principal. The same key and request again replays the first answer (with "
                   "`Idempotent-Replayed: true`); a different request is 422 IDEMPOTENCY_KEY_REUSED; while the "
                   "first is still running, 409 IDEMPOTENCY_KEY_IN_FLIGHT. 5xx answers are not kept.",
}
IF_MATCH_HEADER = {
    "in": "header", "name": "If-Match", "required": False,
    "schema": {"type": "string", "examples": ['"3"', '"2", "3"', "*"]},
    "description": "The request's ETag (its `version`, quoted, as the ETag header gives it), a comma-separated "
                   "list of them, or `*`. When it names no current version (whatever else it says) the change "
                   "is refused with 412 PRECONDITION_FAILED and nothing changes.",
}
CURSOR_DESCRIPTION = ("Opaque: the `next_cursor` of the previous page of the same list, passed back unchanged. "
                      "A string the list did not issue is 400 INVALID_CURSOR.")

HEADERS = {
    "X-Request-ID": {"description": "The request id: the client's X-Request-ID when it is 1-128 characters of "
                                    "`A-Za-z0-9._:-`, else a generated one. Quoted in problem bodies and logs.",
                     "required": True, "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$"}},
    "Retry-After": {"description": "Seconds to wait before retrying.", "required": True,
                    "schema": {"type": "integer", "minimum": 1}},
    "WWW-Authenticate": {"description": "`Bearer realm=\"records-gateway\"`", "required": True,
                         "schema": {"type": "string"}},
    "Allow": {"description": "The methods this URL supports.", "required": True, "schema": {"type": "string"}},
    "Location": {"description": "The URL of what was created.", "required": True,
                 "schema": {"type": "string", "format": "uri-reference"}},
    "ETag": {"description": "The request's version, quoted; send it back in If-Match.", "required": True,
             "schema": {"type": "string", "pattern": ETAG_PATTERN}},
    "OptionalETag": {"description": "The request's version, quoted, when one request was created (not for a "
                                    "group); send it back in If-Match.", "required": False,
                     "schema": {"type": "string", "pattern": ETAG_PATTERN}},
    "Idempotent-Replayed": {"description": "`true` when this is the stored first answer to the same "
                                           "Idempotency-Key.", "required": False,
                            "schema": {"type": "string", "enum": ["true"]}},
}

# status: (component name, what it means, headers besides X-Request-ID)
ERRORS = {
    400: ("BadRequest", "BAD_REQUEST: the HTTP request could not be parsed.", ()),
    401: ("Unauthenticated", "UNAUTHENTICATED: no valid bearer credential (one identical body whatever the "
                             "reason; a credential in the query string is refused too).", ("WWW-Authenticate",)),
    403: ("Forbidden", "FORBIDDEN: the caller's role or API-key scope does not allow this operation (audited).", ()),
    404: ("NotFound", "NOT_FOUND: no such object, or one the caller may not see (an identical body).", ()),
    405: ("MethodNotAllowed", "METHOD_NOT_ALLOWED: see the Allow header.", ("Allow",)),
    408: ("RequestTimeout", "REQUEST_TIMEOUT: the body stopped arriving, or arrived too slowly.", ()),
    409: ("Conflict", "The object's state does not allow this now.", ()),
    412: ("PreconditionFailed", "PRECONDITION_FAILED: If-Match names a version the request no longer has; "
                                "nothing changed.", ()),
    413: ("PayloadTooLarge", "BODY_TOO_LARGE: the body is larger than this endpoint accepts.", ()),
    414: ("UriTooLong", "URI_TOO_LONG: the request line (method, path and query string) is longer than 4 KiB.",
          ()),
    415: ("UnsupportedMediaType", "The body's media type or content is not accepted.", ()),
    422: ("Unprocessable", "VALIDATION_FAILED: invalid fields, one entry per field in `errors` (codes "
                           "UNKNOWN_FIELD, FIELD_REQUIRED, INVALID_FIELD).", ()),
    429: ("TooManyRequests", "RATE_LIMITED: too many requests (or too many failed credentials from this "
                             "address); retry after the delay given.", ("Retry-After",)),
    431: ("HeadersTooLarge", "HEADERS_TOO_LARGE: the request's header fields are too large (64 KiB in all).", ()),
    503: ("ServiceUnavailable", "A dependency is unavailable (DATABASE_UNAVAILABLE, AUDIT_UNAVAILABLE); "
                                "nothing was done, and retrying after the delay given is safe.", ("Retry-After",)),
}

# What each fact adds (status: the codes it contributes to that status's description).
_IDEMPOTENCY_ERRORS = {409: "IDEMPOTENCY_KEY_IN_FLIGHT: the first request with this Idempotency-Key is still "
                            "running.",
                       422: "IDEMPOTENCY_KEY_REUSED: this Idempotency-Key was used with another request; "
                            "IDEMPOTENCY_KEY_INVALID: not 1-255 visible ASCII characters."}
_JSON_BODY_ERRORS = {
    400: "MALFORMED_JSON: the body is not JSON, or nests deeper than 32 levels; BODY_NOT_JSON: no JSON object "
         "where one is needed.",
    408: ERRORS[408][1], 413: ERRORS[413][1], 422: ERRORS[422][1]}
_MULTIPART_ERRORS = {
    400: "MULTIPART_INVALID: the multipart body is malformed.",
    408: ERRORS[408][1],
    413: "FILE_TOO_LARGE: a file past the upload limit; BODY_TOO_LARGE: a preamble, part headers or a text "
         "field past its fixed cap, or more than 10 parts.",
    415: "FILE_TYPE_NOT_ALLOWED: the file's content (its first bytes, not its name or declared type) is not PDF, "
         "TIFF, PNG or JPEG; MULTIPART_REQUIRED: the body is not multipart/form-data.",
    422: "FILE_EMPTY, FILE_CORRUPT, PDF_ENCRYPTED, PDF_ACTIVE_CONTENT, FILE_POLYGLOT, MALWARE_DETECTED (the file "
         "is not stored; audited), FILE_REQUIRED, VALIDATION_FAILED (a missing, unexpected or misplaced part, or "
         "an invalid `kind`).",
    503: "SCANNER_UNAVAILABLE, STORAGE_UNAVAILABLE, DATABASE_UNAVAILABLE: nothing was stored; retrying after "
         "the delay given is safe.",
}
# A person whose role needs a second factor (GATEWAY_MFA_REQUIRED) and who has none yet may call only these
# (gateway.auth.mfa_views uses this set); every other route refuses them with 403.
MFA_ENROLMENT_RULES = frozenset({("GET", "/v1/me"), ("POST", "/v1/me/mfa/totp"),
                                 ("POST", "/v1/me/mfa/totp/confirm")})
_MFA_ENROLMENT_ERROR = ("MFA_ENROLMENT_REQUIRED: your role needs two-step sign-in and you have not set it up yet "
                        "(POST /v1/me/mfa/totp); until then only enrolment is open to you.")
# Routes that never reach the database (or answer 503 for their own reason, documented by their view).
NO_DATABASE = frozenset({"/healthz", "/metrics", "/readyz"})

# What a client does next with what it created: operationId -> status -> link name -> (target, parameters).
_REQUEST_ID = {"request_id": "$response.body#/id"}
LINKS = {
    "create_request": {"201": {
        "GetRequest": ("get_request", _REQUEST_ID), "UpdateRequest": ("update_request", _REQUEST_ID),
        "UploadDocument": ("upload_document", _REQUEST_ID), "SubmitRequest": ("submit_request", _REQUEST_ID),
        "CancelRequest": ("cancel_request", _REQUEST_ID), "ListEvents": ("list_events", _REQUEST_ID),
        "ClaimRequest": ("claim_request", _REQUEST_ID), "AssignRequest": ("assign_request", _REQUEST_ID),
        "TransitionRequest": ("transition_request", _REQUEST_ID),
        # With `facilities` the answer is a group instead (only the links its body resolves apply).
        "GetGroup": ("get_group", {"group_id": "$response.body#/group_id"}),
        "UploadGroupDocument": ("upload_group_document", {"group_id": "$response.body#/group_id"})}},
    "upload_document": {"201": {
        "GetDocument": ("get_document", {"request_id": "$request.path.request_id",
                                         "document_id": "$response.body#/id"}),
        "DownloadDocument": ("download_document", {"request_id": "$request.path.request_id",
                                                   "document_id": "$response.body#/id"})}},
    "create_batch": {"202": {"GetBatch": ("get_batch", {"batch_id": "$response.body#/id"})}},
    "create_api_key": {"201": {
        "GetApiKey": ("get_api_key", {"org_id": "$request.path.org_id", "key_id": "$response.body#/id"}),
        "RevokeApiKey": ("revoke_api_key", {"org_id": "$request.path.org_id", "key_id": "$response.body#/id"})}},
    "create_webhook": {"201": {
        "GetWebhook": ("get_webhook", {"webhook_id": "$response.body#/id"}),
        "ListDeliveries": ("list_deliveries", {"webhook_id": "$response.body#/id"}),
        "DeleteWebhook": ("delete_webhook", {"webhook_id": "$response.body#/id"})}},
}


def problem_response(description: str, headers=()) -> dict:
    """An error response object: problem+json, the Problem schema, X-Request-ID and `headers`."""
    return {"description": description,
            "headers": {name: {"$ref": f"#/components/headers/{name}"} for name in ("X-Request-ID", *headers)},
            "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def openapi_path(rule: str) -> str:
    """A werkzeug rule as an OpenAPI path template (`/v1/requests/<request_id>` → `/v1/requests/{request_id}`)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


class ExactResponses(BasePlugin):
    """Completes every operation flask-smorest registers with the responses the gateway really sends."""

    def __init__(self, app, public_rules, rate_limit_exempt):
        self.app = app
        self.public_rules = frozenset(public_rules)
        self.rate_limit_exempt = frozenset(rate_limit_exempt)
        self.spec = None

    def init_spec(self, spec):
        """Register the shared headers, error responses and the bearer security scheme."""
        super().init_spec(spec)
        self.spec = spec
        for name, header in HEADERS.items():
            spec.components.header(name, header)
        for _status, (name, description, headers) in sorted(ERRORS.items()):
            spec.components.response(name, problem_response(description, headers))
        spec.components.security_scheme(SECURITY_SCHEME, {
            "type": "http", "scheme": "bearer",
            "description": "An API key (`rgw_<public id>_<secret>`) or an access token from POST /v1/auth/token; "
                           "never in the query string."})

    def operation_helper(self, path=None, operations=None, **kwargs):
        """Complete each method's operation of one route."""
        rule = kwargs.get("rule")
        if rule is None or not operations:
            return
        view = self.app.view_functions.get(rule.endpoint)
        for method, operation in operations.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                self._complete(rule.rule, method, operation, view)

    def _complete(self, rule: str, method: str, operation: dict, view) -> None:
        operation.setdefault("operationId", getattr(view, "__name__", None) or rule)
        responses = {str(status): response for status, response in operation.get("responses", {}).items()}
        operation["responses"] = responses
        public = rule in self.public_rules
        operation["security"] = [] if public else [{SECURITY_SCHEME: []}]
        parameters = operation.setdefault("parameters", [])
        names = {(p.get("in"), p.get("name")) for p in parameters if isinstance(p, dict)}
        for parameter in parameters:
            if isinstance(parameter, dict) and parameter.get("in") == "query" and parameter.get("name") == "cursor":
                parameter["description"] = CURSOR_DESCRIPTION
        body = operation.get("requestBody") or {}
        media = set(body.get("content") or {})

        codes: dict[int, list[str]] = {}

        def add(status: int, text: str | None = None) -> None:
            codes.setdefault(status, [])
            if text and text not in codes[status]:
                codes[status].append(text)

        # The HTTP layer (gateway.serving) refuses what it cannot parse, on any route.
        for status in (400, 414, 431):
            add(status, ERRORS[status][1])
        if not public:
            add(401, ERRORS[401][1])
        if getattr(view, "required_roles", None):
            add(403, ERRORS[403][1])
        if not public and (method.upper(), rule) not in MFA_ENROLMENT_RULES:
            add(403, _MFA_ENROLMENT_ERROR)
        if "{" in openapi_path(rule):
            add(404, ERRORS[404][1])
        if any(p.get("in") == "query" for p in parameters if isinstance(p, dict)):  # every one is validated
            add(422, "VALIDATION_FAILED: an invalid query parameter (one entry per parameter in `errors`).")
            if ("query", "cursor") in names:
                add(400, "INVALID_CURSOR: a cursor the list did not issue.")
        if media & {"application/json", "application/merge-patch+json"}:
            for status, text in _JSON_BODY_ERRORS.items():
                add(status, text)
        if "multipart/form-data" in media:
            for status, text in _MULTIPART_ERRORS.items():
                add(status, text)
        if ("header", "Idempotency-Key") in names:
            for status, text in _IDEMPOTENCY_ERRORS.items():
                add(status, text)
        if ("header", "If-Match") in names:
            add(412, ERRORS[412][1])
        if not public or rule not in self.rate_limit_exempt:
            add(429, ERRORS[429][1])
        if rule not in NO_DATABASE:
            add(503, ERRORS[503][1])

        responses.pop("default", None)
        for status, texts in sorted(codes.items()):
            declared = responses.pop(str(status), None)
            own = declared.get("description") if isinstance(declared, dict) and "content" not in declared else None
            if own is None and texts == [ERRORS[status][1]]:
                responses[str(status)] = ERRORS[status][0]
            else:
                parts = ([own] if own else []) + [text for text in texts if not own or not _said(text, own)]
                responses[str(status)] = problem_response(" ".join(parts), ERRORS[status][2])
        # Errors a view declared that no fact above covers (e.g. the 409 of a state machine): problem+json too.
        for status, response in list(responses.items()):
            code = int(status)
            if code >= 400 and isinstance(response, dict) and "content" not in response:
                headers = ERRORS[code][2] if code in ERRORS else ()
                responses[status] = problem_response(response.get("description", ""), headers)
        for status, response in responses.items():
            if int(status) < 400 and isinstance(response, dict):
                headers = response.setdefault("headers", {})
                headers.setdefault("X-Request-ID", {"$ref": "#/components/headers/X-Request-ID"})
                if ("header", "Idempotency-Key") in names:
                    headers.setdefault("Idempotent-Replayed", {"$ref": "#/components/headers/Idempotent-Replayed"})
                schema = (response.get("content") or {}).get("application/json", {}).get("schema")
                if _names_schema(schema, "Request"):
                    headers.setdefault("ETag", {"$ref": "#/components/headers/ETag"})
                for name, (target, parameters) in LINKS.get(operation["operationId"], {}).get(status, {}).items():
                    response.setdefault("links", {})[name] = {"operationId": target, "parameters": parameters}
        for content in (body.get("content") or {}).values():
            self._add_patch_schema(content.get("schema"))

    def _add_patch_schema(self, schema) -> None:
        """A request body naming `<Name>Patch` is a merge patch of `<Name>`: make that component."""
        if not isinstance(schema, dict) or not schema.get("$ref", "").endswith("Patch"):
            return
        components = self.spec.components.schemas
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in components:
            return
        made: dict[str, dict] = {}
        merge_patch_schema({"$ref": f"#/components/schemas/{name[:-len('Patch')]}"}, components, made)
        for new_name, component in made.items():
            self.spec.components.schema(new_name, component)


def _said(text: str, own: str) -> bool:
    """Whether a view's own description already names every code of a generic one."""
    return all(code in own for code in re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", text))


def _names_schema(schema, name: str) -> bool:
    """Whether a response schema (a marshmallow schema before apispec resolves it, or a $ref) is `name`."""
    if schema is None:
        return False
    if isinstance(schema, dict):
        return schema.get("$ref", "").rsplit("/", 1)[-1] == name
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__ in {name, f"{name}Schema"}


def merge_patch_schema(schema: dict, components: dict, made: dict, suffix: str = "Patch") -> dict:
    """The JSON schema of an RFC 7396 merge patch of a document valid under `schema`.

    Every member becomes optional; a member the document may lack (not required) may be `null` (removed);
    nested objects become patches of themselves (`<Name>Patch`, put in `made`).  Arrays and scalars are
    replaced whole, so they keep their schema.  A patch valid here leaves a valid document.
    """
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        patch_name = f"{name}{suffix}"
        if patch_name not in components and patch_name not in made:
            made[patch_name] = {}  # placeholder against cycles
            made[patch_name] = merge_patch_schema(components[name], components, made, suffix)
        return {"$ref": f"#/components/schemas/{patch_name}"}
    if "anyOf" in schema:
        return {**{k: v for k, v in schema.items() if k != "anyOf"},
                "anyOf": [merge_patch_schema(s, components, made, suffix) for s in schema["anyOf"]]}
    if schema.get("type") != "object" or "properties" not in schema:
        return copy.deepcopy(schema)
    required = set(schema.get("required", ()))
    properties = {}
    for name, member in schema["properties"].items():
        patched = merge_patch_schema(member, components, made, suffix)
        properties[name] = patched if name in required else _nullable(patched)
    out = {k: copy.deepcopy(v) for k, v in schema.items() if k not in {"properties", "required", "default"}}
    out["properties"] = properties
    return out


def _nullable(schema: dict) -> dict:
    schema = {k: v for k, v in schema.items() if k != "default"}
    kind = schema.get("type")
    if isinstance(kind, list):
        return schema if "null" in kind else {**schema, "type": [*kind, "null"]}
    if isinstance(kind, str):
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
        return {**schema, "type": [kind, "null"]}
    if "anyOf" in schema:
        if any(s.get("type") == "null" for s in schema["anyOf"]):
            return schema
        return {**schema, "anyOf": [*schema["anyOf"], {"type": "null"}]}
    return {"anyOf": [schema, {"type": "null"}]}
