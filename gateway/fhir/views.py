"""/fhir/r4 (CapabilityStatement, Task create/read/search), SMART configuration and `POST /oauth/token`.

These routes are not in the OpenAPI document (docs/api.md): FHIR clients read the
CapabilityStatement instead.  They authenticate with this module's own guard —
only access tokens from `POST /oauth/token` open /fhir/r4, never an API key or a
person's token — and every error below /fhir/r4 is an OperationOutcome
(gateway.fhir.outcome).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import urlencode

from flask import Blueprint, current_app, g, jsonify, request
from pydantic import ValidationError
from redis.exceptions import RedisError

from gateway.audit.service import AuditUnavailable, record_now
from gateway.auth.web import _CREDENTIAL_PARAMS as CREDENTIAL_PARAMS
from gateway.auth.web import audit_context, audit_denied, current_principal
from gateway.errors import BadRequest, FieldError, Forbidden, Unauthenticated, Unprocessable, UnsupportedMediaType
from gateway.fhir import smart, tasks
from gateway.fhir.outcome import FHIR_JSON, PREFIX, convert_problems, fhir_response
from gateway.web import adapters, clock, settings

log = logging.getLogger("gateway.fhir")

blp = Blueprint("fhir", __name__)
PUBLIC_RULES = frozenset({f"{PREFIX}/metadata", f"{PREFIX}/.well-known/smart-configuration",
                          "/.well-known/smart-configuration", "/oauth/token"})
# A Task carries its authorization PDF as base64 (4/3 of its size): the body is capped accordingly.
MAX_TASK_BODY = 32 * 1024 * 1024
MAX_COUNT = 100
# A search page's position, opaque to the client, which only follows the Bundle's `next` link.
PAGE_CURSOR = "_cursor"
JSON_PATCH = "application/json-patch+json"
MAX_REASON = 500  # as the JSON API's cancel reason


def install(app) -> None:
    """Register the routes, the guard and the OperationOutcome conversion."""
    from gateway.fhir.jwks import cached_loader

    a = app.extensions["gateway"]
    app.extensions["gateway.fhir"] = smart.Smart(
        a.db, a.redis, a.settings.secret_key,
        jwks_loader=cached_loader(a.db, allow_private=a.settings.webhook_allow_private))
    app.register_blueprint(blp)
    app.after_request(lambda response: convert_problems(response, request.path))


def _smart() -> smart.Smart:
    return current_app.extensions["gateway.fhir"]


@blp.before_request
def _authenticate():
    """Only this module's access tokens open /fhir/r4 (besides its public documents)."""
    g.principal = None
    if request.url_rule is None or request.url_rule.rule in PUBLIC_RULES:
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    in_url = CREDENTIAL_PARAMS & {name.lower() for name in request.args}  # a token in a URL is refused, as elsewhere
    principal = (_smart().principal(token.strip()) if scheme.lower() == "bearer" and token.strip() and not in_url
                 else None)
    if principal is None:
        try:
            record_now(adapters().db, actor="anonymous", action="auth.credential", result="denied",
                       object_type="route", object_id=request.url_rule.rule[:64], **audit_context())
        except AuditUnavailable:
            pass  # refusing needs no audit to stay safe
        raise Unauthenticated()
    g.principal = principal
    return None


def _needs(resource: str, action: str) -> None:
    if not smart.allows(current_principal().scopes, resource, action):
        audit_denied(current_principal())
        raise Forbidden(f"The access token's scopes do not allow this on {resource}.")


def _base_url() -> str:
    return request.url_root.rstrip("/")


@blp.route(f"{PREFIX}/metadata", methods=["GET"])
def capability_statement():
    """What this server implements (R4 4.0.1), no token needed."""
    return fhir_response({
        "resourceType": "CapabilityStatement", "status": "active", "date": "2026-11-30", "kind": "instance",
        "fhirVersion": "4.0.1", "format": ["json"], "publisher": "Records Request Gateway",
        "implementation": {"description": "Records requests (HL7 Da Vinci CDex task-based approach)",
                           "url": _base_url() + PREFIX},
        "instantiates": ["http://hl7.org/fhir/us/davinci-cdex/CapabilityStatement/data-source-server"],
        "rest": [{"mode": "server",
                  "security": {"service": [{"coding": [{
                      "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                      "code": "SMART-on-FHIR"}]}],
                      "description": "SMART Backend Services (client_credentials with a private_key_jwt assertion)",
                      "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                                     "extension": [{"url": "token", "valueUri": _base_url() + "/oauth/token"}]}]},
                  "resource": [{"type": "Task", "supportedProfile": list(tasks.translate.PROFILES.values()),
                                "interaction": [{"code": "create"}, {"code": "read"}, {"code": "patch"},
                                                {"code": "search-type"}],
                                "searchParam": [{"name": "_lastUpdated", "type": "date"},
                                                {"name": "identifier", "type": "token"},
                                                {"name": "status", "type": "token"}]},
                               {"type": "Consent", "interaction": [{"code": "read"}]},
                               {"type": "AuditEvent", "interaction": [{"code": "read"}]}]}],
    })


def _smart_configuration():
    token_url = _base_url() + "/oauth/token"
    response = jsonify({
        "token_endpoint": token_url, "grant_types_supported": [smart.GRANT_TYPE],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": sorted(smart.ALGORITHMS),
        "scopes_supported": list(smart.SCOPES), "capabilities": ["client-confidential-asymmetric"],
    })
    return response


blp.add_url_rule(f"{PREFIX}/.well-known/smart-configuration", "smart_configuration_fhir", _smart_configuration)
blp.add_url_rule("/.well-known/smart-configuration", "smart_configuration", _smart_configuration)


@blp.route("/oauth/token", methods=["POST"])
def issue_token():
    """SMART Backend Services: a client assertion in, a short-lived access token out (OAuth JSON errors)."""
    try:
        if request.mimetype != "application/x-www-form-urlencoded":
            raise smart.OAuthError(400, "invalid_request", "The body must be application/x-www-form-urlencoded.")
        client, token = _smart().issue(request.form, token_url=_base_url() + "/oauth/token")
    except smart.OAuthError as error:
        _audit_token(None, "denied")
        response = jsonify({"error": error.error, "error_description": error.description})
        response.status_code = error.status
        if error.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="records-gateway"'
        return response
    except RedisError:
        response = jsonify({"error": "temporarily_unavailable",
                            "error_description": "Token service temporarily unavailable; retry shortly."})
        response.status_code = 503
        return response
    _audit_token(client, "success")
    response = jsonify({"access_token": token.access_token, "token_type": "bearer",
                        "expires_in": token.expires_in, "scope": token.scope})
    response.headers["Pragma"] = "no-cache"
    return response


def _audit_token(client, result: str) -> None:
    try:
        record_now(adapters().db, actor=f"fhir_client:{client.id}" if client else "anonymous",
                   org_id=client.org_id if client else None, action="fhir.token", result=result,
                   object_type="fhir_client", object_id=client.id if client else None, **audit_context())
    except AuditUnavailable:
        if result == "success":
            raise


@blp.route(f"{PREFIX}/Task", methods=["POST"])
def create_task():
    """Create a CDex Task: 201 `requested`, or 201 `rejected` with the rules' codes."""
    _needs("Task", "c")
    from fhir.resources.R4B.task import Task

    data = request.get_json(silent=True) if request.mimetype in (FHIR_JSON, "application/json") else None
    if not isinstance(data, dict) or data.get("resourceType") != "Task":
        raise BadRequest("The body must be a FHIR Task (application/fhir+json).", code="FHIR_RESOURCE_INVALID")
    try:
        Task.model_validate(data)
    except ValidationError as error:
        raise Unprocessable("The Task is not a valid R4 Task; see the issues.", code="FHIR_RESOURCE_INVALID",
                            errors=[FieldError("INVALID_FIELD", "Task." + ".".join(str(p) for p in e["loc"])[:200],
                                               e["msg"][:200]) for e in error.errors()[:20]]) from None
    a = adapters()
    task_id = tasks.create_task(a.db, store=a.store, scanner=a.scanner, clock=clock(), principal=current_principal(),
                                task=data, max_bytes=settings().max_upload_bytes, audit_ctx=audit_context())
    resource = tasks.read_task(a.db, store=a.store, principal=current_principal(), task_id=task_id,
                               audit_ctx=audit_context())
    return fhir_response(resource, 201, {"Location": f"{_base_url()}{PREFIX}/Task/{task_id}/_history/"
                                                     f"{resource['meta']['versionId']}"})


@blp.route(f"{PREFIX}/Task/<task_id>", methods=["GET"])
def read_task(task_id):
    """One Task of the caller's organization (404 for anyone else's)."""
    _needs("Task", "r")
    a = adapters()
    return fhir_response(tasks.read_task(a.db, store=a.store, principal=current_principal(), task_id=task_id,
                                         audit_ctx=audit_context()))


@blp.route(f"{PREFIX}/Task/<task_id>", methods=["PATCH"])
def update_task(task_id):
    """Cancel a Task: a JSON Patch (RFC 6902) replacing `status` with `cancelled`, and optionally
    `statusReason` (its `text` is recorded as the reason); `If-Match: W/"<versionId>"` guards it."""
    _needs("Task", "u")
    if request.mimetype not in (JSON_PATCH, "application/json"):
        raise UnsupportedMediaType(f"Send the update as a JSON Patch ({JSON_PATCH}).",
                                   code="UNSUPPORTED_MEDIA_TYPE")
    reason = _cancellation(request.get_json(silent=True))
    a = adapters()
    task = tasks.cancel_task(a.db, store=a.store, principal=current_principal(), task_id=task_id, reason=reason,
                             if_match=request.headers.get("If-Match"), audit_ctx=audit_context())
    return fhir_response(task, 200, {"ETag": f'W/"{task["meta"]["versionId"]}"'})


def _cancellation(patch) -> str | None:
    """The reason a cancelling JSON Patch gives (None for none); anything else it asks is refused (422), never
    partly applied: this server changes a Task's status to `cancelled` and nothing else."""
    if not isinstance(patch, list) or not patch or not all(isinstance(op, dict) for op in patch):
        raise BadRequest("The body must be a JSON Patch: a non-empty array of operations.",
                         code="FHIR_PATCH_INVALID")
    errors, status, reason = [], None, None
    for n, op in enumerate(patch[:20]):
        where = f"[{n}]"
        if op.get("op") not in ("replace", "add") or op.get("path") not in ("/status", "/statusReason"):
            errors.append(FieldError("FHIR_PATCH_UNSUPPORTED", where, "only replacing /status (with cancelled) "
                                                                     "and /statusReason is supported"))
        elif op["path"] == "/status":
            status = op.get("value")
            if status != "cancelled":
                errors.append(FieldError("FHIR_PATCH_UNSUPPORTED", f"{where}.value",
                                         "a Task's status can only be changed to cancelled"))
        else:
            text = op.get("value", {}).get("text") if isinstance(op.get("value"), dict) else None
            if not isinstance(text, str) or not text.strip() or len(text) > MAX_REASON:
                errors.append(FieldError("INVALID_FIELD", f"{where}.value.text",
                                         f"a CodeableConcept with text of 1 to {MAX_REASON} characters"))
            else:
                reason = text.strip()
    if len(patch) > 20:
        errors.append(FieldError("FHIR_PATCH_UNSUPPORTED", "[20]", "at most 20 operations"))
    if status is None and not errors:
        errors.append(FieldError("FHIR_PATCH_UNSUPPORTED", "", "the patch must set /status to cancelled"))
    if errors:
        raise Unprocessable("This server only cancels Tasks; see the issues.", code="FHIR_PATCH_UNSUPPORTED",
                            errors=errors)
    return reason


@blp.route(f"{PREFIX}/Consent/<consent_id>", methods=["GET"])
def read_consent(consent_id):
    """The authorization of one of the caller's Tasks (the Consent's id is the Task's)."""
    _needs("Consent", "r")
    return fhir_response(tasks.read_consent(adapters().db, principal=current_principal(), consent_id=consent_id,
                                            audit_ctx=audit_context()))


@blp.route(f"{PREFIX}/AuditEvent/<event_id>", methods=["GET"])
def read_disclosure(event_id):
    """The release of one of the caller's Tasks' records (IHE BALP PrivacyDisclosure), linked from the Task."""
    _needs("AuditEvent", "r")
    return fhir_response(tasks.read_disclosure(adapters().db, principal=current_principal(), event_id=event_id,
                                               audit_ctx=audit_context()))


@blp.route(f"{PREFIX}/Task", methods=["GET"])
def search_tasks():
    """`_lastUpdated` (gt/ge/lt/le), `identifier` ([system|]value), `status`, `_count` → a searchset Bundle
    whose `total` counts every match and whose `next` link (while more remain) fetches the following page."""
    _needs("Task", "s")
    errors = []
    allowed = {"_lastUpdated", "identifier", "status", "_count", "_format", PAGE_CURSOR}
    errors += [FieldError("INVALID_FIELD", name[:40], "unsupported search parameter") for name in request.args
               if name not in allowed]
    updated = []
    for value in request.args.getlist("_lastUpdated"):
        prefix, moment = value[:2], value[2:]
        when = _instant(moment) if prefix in ("gt", "ge", "lt", "le") else None
        if when is None:
            errors.append(FieldError("INVALID_FIELD", "_lastUpdated", "use gt, ge, lt or le and an instant"))
        else:
            updated.append((prefix, when))
    status = request.args.get("status")
    if status is not None and status not in tasks.REQUEST_STATUSES_OF:
        errors.append(FieldError("INVALID_FIELD", "status", "not a Task status this server uses"))
    count = request.args.get("_count", "50")
    if not count.isdigit() or not 1 <= int(count) <= MAX_COUNT:
        errors.append(FieldError("INVALID_FIELD", "_count", f"1 to {MAX_COUNT}"))
    if errors:
        raise BadRequest("The search has unsupported or invalid parameters; see the issues.", errors=errors,
                         code="FHIR_SEARCH_INVALID")
    a = adapters()
    page = tasks.search_tasks(a.db, store=a.store, principal=current_principal(), status=status,
                              identifier=request.args.get("identifier"), updated=updated, count=int(count),
                              cursor=request.args.get(PAGE_CURSOR) or None, audit_ctx=audit_context())
    links = [{"relation": "self", "url": request.url}]
    if page.next_cursor:
        links.append({"relation": "next", "url": _page_url(page.next_cursor)})
    return fhir_response({"resourceType": "Bundle", "type": "searchset", "total": page.total, "link": links,
                          "entry": [{"fullUrl": f"{_base_url()}{PREFIX}/Task/{t['id']}", "resource": t,
                                     "search": {"mode": "match"}} for t in page.tasks]})


def _page_url(cursor: str) -> str:
    """This search's URL with the same parameters, resuming at `cursor`."""
    kept = [(name, value) for name, value in request.args.items(multi=True) if name != PAGE_CURSOR]
    return f"{_base_url()}{request.path}?{urlencode([*kept, (PAGE_CURSOR, cursor)])}"


def _instant(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)



