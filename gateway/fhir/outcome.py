"""Errors under /fhir/r4 as OperationOutcome (application/fhir+json), never problem+json.

Services and the framework raise the gateway's ordinary errors; an after-request
hook turns each problem+json answer under /fhir/r4 into the same OperationOutcome,
so the status, the stable `code` (as `details.coding`) and each field error
(as its own issue, with `expression`) survive, whoever raised them (the rate
limiter, the body cap, werkzeug's 404/405, or a view).
"""

from __future__ import annotations

import json

from flask import Response

from gateway.errors import PROBLEM_CONTENT_TYPE

FHIR_JSON = "application/fhir+json"
PREFIX = "/fhir/r4"
# The gateway's own codes (RULES.md and the API's error codes) as a FHIR code system.
CODE_SYSTEM = "https://records-gateway.invalid/fhir/CodeSystem/gateway-code"
_ISSUE_TYPE = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
               406: "not-supported", 408: "timeout", 409: "conflict", 412: "conflict", 413: "too-long",
               415: "not-supported", 422: "processing", 429: "throttled", 503: "transient"}


def issue(code: str, message: str, *, field: str | None = None, issue_type: str = "processing",
          severity: str = "error") -> dict:
    """One OperationOutcome issue carrying a gateway code."""
    entry = {"severity": severity, "code": issue_type,
             "details": {"coding": [{"system": CODE_SYSTEM, "code": code}], "text": message},
             "diagnostics": message}
    if field:
        entry["expression"] = [field]
    return entry


def outcome(issues: list[dict], *, resource_id: str | None = None) -> dict:
    body = {"resourceType": "OperationOutcome", "issue": issues}
    if resource_id:
        body = {"resourceType": "OperationOutcome", "id": resource_id, "issue": issues}
    return body


def from_problem(problem: dict, status: int) -> dict:
    """The OperationOutcome of a problem+json body."""
    issue_type = _ISSUE_TYPE.get(status, "exception")
    code = problem.get("code") or "ERROR"
    issues = [issue(code, problem.get("detail") or problem.get("title") or code, issue_type=issue_type)]
    for error in problem.get("errors") or []:
        issues.append(issue(error.get("code") or code, error.get("message") or "", field=error.get("field"),
                            issue_type=issue_type))
    return outcome(issues)


def fhir_response(resource: dict, status: int = 200, headers: dict | None = None) -> Response:
    response = Response(json.dumps(resource, separators=(",", ":"), default=str), status=status,
                        mimetype=FHIR_JSON, headers=headers or {})
    return response


def convert_problems(response: Response, path: str) -> Response:
    """after_request: a problem+json answer under /fhir/r4 becomes an OperationOutcome (same status, headers)."""
    if not (path == PREFIX or path.startswith(PREFIX + "/")) or response.mimetype != PROBLEM_CONTENT_TYPE:
        return response
    try:
        problem = json.loads(response.get_data())
    except ValueError:
        problem = {}
    response.set_data(json.dumps(from_problem(problem, response.status_code), separators=(",", ":")))
    response.mimetype = FHIR_JSON
    return response
