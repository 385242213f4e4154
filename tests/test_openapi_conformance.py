"""The OpenAPI document is exact: schemathesis, every check and every phase, against a live gateway.

A real gunicorn serves the app (tests/fixtures/live.py); schemathesis reads its
/openapi.json and sends the generated cases with real credentials: a requester
organization's API key for the requests and documents, a records clerk's token
for the staff operations, the organization's admin for keys and users, an
auditor for the audit trail.  All checks run (status codes, content types,
response headers and schemas, negative data rejected, positive data accepted,
authentication not ignored, resources available after creation and gone after
deletion), in the four phases, the stateful one following the document's
links.  The run is bounded (a fixed number of examples per operation) and
seeded, so CI sees the same cases every time; it must end with 0 failures.

Configured exceptions, each for a reason the document cannot express:
- schemathesis' positive-data check is replaced by the same check less the
  refusals of valid data for reasons of state or content, named by their
  problem code (tests/schemathesis_hooks.py: a cursor the API did not issue, an
  idempotency key used before, a file's bytes...).
- A document uploaded by the requester is not found by the records clerk who
  may withdraw documents (a draft is not the clerk's to see): that one
  resource-availability failure is dropped (the hooks' filter_failure).
- Negative data may also be refused with 412 (a precondition is judged before
  the body, RFC 9110 13.2.2) or by the HTTP layer with 413, 414 or 431.
- No undeclared query parameters are generated (the API ignores unknown ones,
  which OpenAPI cannot state), and the Authorization header is the configured
  credential (the ignored-auth check still sends requests without it).
- `POST /v1/webhooks` is not fuzzed: checking a generated URL makes the gateway
  resolve a random host name through the machine's resolver, off this
  machine (tests/webhooks covers it).

About 4,600 cases per database (examples, coverage, fuzzing, stateful), one to
two minutes each; the counts are printed (`pytest -s`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.factories import PASSWORD, forget_address_lockouts, make_tenant, make_user

# One database (tests/conftest.py): HTTP contract fuzzing; the queries under it run on both
# databases in their own tests.
pytestmark = pytest.mark.one_database

SEED = 20261130
MAX_EXAMPLES = 25
STATEFUL_SCENARIOS = 60
STATEFUL_STEPS = 12
FACILITY = "tufts-mc"

REQUESTER_OPERATIONS = ["create_request", "list_requests", "get_request", "update_request", "cancel_request",
                        "list_events", "validate_request", "submit_request", "upload_document", "get_document",
                        "download_document", "me", "create_batch", "get_batch", "get_group",
                        "upload_group_document", "search_requests"]
STAFF_OPERATIONS = ["facility_queue", "claim_request", "assign_request", "transition_request", "withdraw_document",
                    "create_revocation"]
ORG_OPERATIONS = ["create_api_key", "list_api_keys", "get_api_key", "revoke_api_key", "create_org_user",
                  "list_org_users"]
WEBHOOK_OPERATIONS = ["list_webhooks", "get_webhook", "delete_webhook", "list_deliveries"]
AUDITOR_OPERATIONS = ["list_audit"]
# Issue 15: the admin manages the organization's requester (its id fills the path); every person has a password
# and sessions. The password-reset pair is public (no credential).
ACCOUNT_OPERATIONS = ["deactivate_user", "reactivate_user", "update_user"]
PERSON_OPERATIONS = ["change_password", "list_my_sessions", "end_my_session"]
# The credential's own second factor, with a requester of its own: a generated code never enables it (1 in a
# million per guess, and none is sent while it is off), and turning it off, refused while it is off, never
# reaches the code check and so never counts toward a lockout; nothing another group uses is touched.
MFA_OPERATIONS = ["enrol_totp", "confirm_totp", "disable_totp"]
# schemathesis' list, with the refusals of the HTTP layer (a request line, headers or body too large) and 412: a
# precondition is judged before the body (RFC 9110 13.2.2), and a failed one refuses the request as well.
NEGATIVE_EXPECTED = ["400", "401", "403", "404", "405", "406", "409", "412", "413", "414", "415", "422", "428",
                     "429", "431", "5xx"]
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")


def sign_in(url: str, email: str) -> str:
    """An access token from the live gateway."""
    body = json.dumps({"email": email, "password": PASSWORD}).encode()
    request = urllib.request.Request(f"{url}/v1/auth/token", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["access_token"]


def toml_list(values) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def write_config(path: Path, url: str, org_id: str, user_id: str) -> None:
    """schemathesis.toml: bounded, seeded, every check; credentials come from the environment."""
    lines = [
        f'base-url = "{url}"',
        f'hooks = "{HOOKS}"',
        f"seed = {SEED}",
        "workers = 1",
        "[auth]",
        "auto-signup = false",  # the credentials below are real; no sign-up flow is needed
        "[generation]",
        f"max-examples = {MAX_EXAMPLES}",
        'database = "none"',
        # The API ignores query parameters it does not know (docs/api.md), which OpenAPI cannot state.
        "allow-extra-parameters = false",
        # Credentials are the configured ones; the ignored_auth check sends requests without them.
        "with-security-parameters = false",
        "[phases.stateful]",
        f"max-steps = {STATEFUL_STEPS}",
        "[phases.stateful.generation]",
        f"max-examples = {STATEFUL_SCENARIOS}",
        "[checks.negative_data_rejection]",
        f"expected-statuses = {toml_list(NEGATIVE_EXPECTED)}",
    ]
    # Path parameters naming the caller's own organization and facility reach past the 404.
    groups = [("REQUESTER", REQUESTER_OPERATIONS, ""), ("STAFF", STAFF_OPERATIONS, ""),
              ("ADMIN", ORG_OPERATIONS, f'parameters = {{ "path.org_id" = "{org_id}" }}'),
              ("ADMIN", WEBHOOK_OPERATIONS, ""), ("AUDITOR", AUDITOR_OPERATIONS, ""),
              ("ADMIN", ACCOUNT_OPERATIONS, f'parameters = {{ "path.user_id" = "{user_id}" }}'),
              ("ADMIN", PERSON_OPERATIONS, ""), ("PERSON", MFA_OPERATIONS, "")]
    for name, operations, extra in groups:
        lines += ["[[operations]]", f"include-operation-id = {toml_list(operations)}",
                  f'headers = {{ Authorization = "Bearer ${{ST_{name}}}" }}', extra]
    lines += ["[[operations]]", 'include-operation-id = "create_webhook"', "enabled = false"]
    lines += ["[[operations]]", 'include-operation-id = "facility_queue"',
              f'parameters = {{ "path.code" = "{FACILITY}" }}']
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_schemathesis_finds_no_failure(start_gateway, db, tmp_path):
    gateway = start_gateway(workers=2, api_rate_limit="1000000 per minute")
    tenant = make_tenant(db)
    staff = make_user(db, ["facility_staff"], [FACILITY])
    auditor = make_user(db, ["auditor"])
    credentials = {"ST_REQUESTER": tenant.api_key, "ST_STAFF": sign_in(gateway.url, staff),
                   "ST_ADMIN": sign_in(gateway.url, tenant.admin_email), "ST_AUDITOR": sign_in(gateway.url, auditor),
                   # A requester of another organization: the admin's account operations above may deactivate
                   # this tenant's requester, which would end a token it held.
                   "ST_PERSON": sign_in(gateway.url, make_tenant(db).requester_email)}
    config = tmp_path / "schemathesis.toml"
    write_config(config, gateway.url, tenant.org_id, tenant.requester_id)
    report = tmp_path / "report"
    st = str(Path(sys.executable).parent / "st")
    command = [st, "--config-file", str(config), "--no-color", "run", f"{gateway.url}/openapi.json",
               "--checks", "all", "--exclude-checks", "positive_data_acceptance",
               "--phases", "examples,coverage,fuzzing,stateful",
               "--report", "ndjson", "--report-dir", str(report), "--request-timeout", "30"]
    try:
        run = subprocess.run(command, env={**os.environ, **credentials}, capture_output=True, text=True,
                             timeout=1200, cwd=tmp_path)
    finally:  # its random passwords lock loopback out of sign-in for the tests that follow
        forget_address_lockouts(db)
    print(run.stdout[-20000:])
    print(run.stderr[-5000:])
    assert run.returncode == 0, "schemathesis found failures; see the output above"
    cases, checks = tally(next(report.glob("ndjson-*.ndjson")))
    print(f"schemathesis: {sum(cases.values())} cases ({', '.join(f'{p} {n}' for p, n in cases.items())}), "
          f"{sum(checks.values())} checks: {dict(checks)}")
    assert set(cases) == {"examples", "coverage", "fuzzing", "stateful"} and all(cases.values())
    assert set(checks) == {"success"}


def tally(events: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Cases per phase and check results by status, from schemathesis' NDJSON event stream."""
    cases: dict[str, int] = {}
    checks: dict[str, int] = {}
    for line in events.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished.get("recorder") or {}
        cases[finished["phase"]] = cases.get(finished["phase"], 0) + len(recorder.get("cases", {}))
        for results in recorder.get("checks", {}).values():
            for result in results:
                checks[result["status"]] = checks.get(result["status"], 0) + 1
    return cases, checks
