"""Runs last (tests/conftest.py puts it there): every log the suite's gateway processes wrote holds no PHI
and no secret.

The logs are the session's log directory (tests/fixtures/logs.py): gunicorn's
output for every live gateway, outbox relays and workers the tests started,
and a copy of every record the in-process apps logged.  (The stand-in
services' own logs, moto's, Redis' and clamd's, are not the gateway's and are
not read: moto's access log records presigned URLs as any S3 would.)

Looked for, case-insensitively:
- the patients' names and MRNs the tests use, gathered from the tests' own
  source (every `first_name`, `last_name`, `signer_name`, `other_names` and
  `mrn` value), so a new test's patient is covered without editing this file;
- dates of birth: any ISO date from 1880 to 2009 (the gateway logs
  timestamps of now, never such a date);
- access tokens (JWTs, `eyJ...`), API keys (`rgw_<id>_<secret>`), presigned
  URL signatures (`X-Amz-Signature`, `X-Amz-Credential`).

So that the check means something even when this module runs alone, it first
files a request for Ana Silva (born 1980-02-29) through a live gateway: sign
in, create, upload, submit, download (a presigned URL), a bad credential.
`test_the_scanner_finds_what_is_planted` shows every pattern firing on a
planted line.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests import samples
from tests.factories import PASSWORD, make_tenant, request_body
from tests.fixtures.logs import log_directory

# One database (tests/conftest.py): reads the whole session's logs once.
pytestmark = pytest.mark.one_database

TESTS = Path(__file__).parent
_KEY = r"""["']?(?:first_name|last_name|signer_name|mrn)["']?\s*[:=]\s*"""
_NAME_VALUE = re.compile(_KEY + r"""(?:"([^"\\]{3,})"|'([^'\\]{3,})')""")
_OTHER_NAMES = re.compile(r"""["']?other_names["']?\s*[:=]\s*\[([^\]]*)\]""")
_WORD = re.compile(r"^[A-Za-z][A-Za-z' -]*[A-Za-z]$")

SECRETS = {
    "date of birth": re.compile(r"\b(?:18[89]\d|19\d\d|200\d)-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])\b"),
    "access token": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    "API key": re.compile(r"\brgw_[A-Za-z0-9]+_[A-Za-z0-9]{12,}"),
    "presigned signature": re.compile(r"X-Amz-(?:Signature|Credential)", re.I),
}


def patient_values() -> set[str]:
    """Every patient name and MRN the tests send, from their source."""
    values: set[str] = set()
    for path in TESTS.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        values.update(m.group(1) or m.group(2) for m in _NAME_VALUE.finditer(text))
        for names in _OTHER_NAMES.finditer(text):
            values.update(re.findall(r"""["']([^"']{3,})["']""", names.group(1)))
    # Real words only: the tests also send deliberately broken values (control characters, bidi overrides).
    return {v for v in values if _WORD.match(v) or re.fullmatch(r"[A-Z0-9]{5,}", v)}


def patterns() -> dict[str, re.Pattern]:
    """What must never be in a log: the patients' names and MRNs, and SECRETS."""
    names = sorted({v.lower(): v for v in sorted(patient_values())}.values(), key=len, reverse=True)  # once each
    # Bounded by anything that cannot be part of a random token (ids, key ids, nonces are [A-Za-z0-9_-]):
    # "Ana" inside a signing key's id `x9Ana-…` is chance, not a patient; `"Ana Silva"` or `name=Ana,` is not.
    found = {f"patient name or MRN {name!r}": re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])", re.I)
             for name in names}
    return {**found, **SECRETS}


def scan(paths, checks: dict[str, re.Pattern]) -> list[str]:
    """One finding per (file, line, what): where, and what kind, never the matched text itself."""
    findings = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as log:
            for number, line in enumerate(log, 1):
                findings += [f"{path.name}:{number}: {what}" for what, pattern in checks.items()
                             if pattern.search(line)]
    return findings


def _call(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def file_a_request(url: str, db) -> None:
    """Everything that could leak, once, through a live gateway."""
    tenant = make_tenant(db)
    status, _, token = _call(f"{url}/v1/auth/token", "POST",
                             json.dumps({"email": tenant.requester_email, "password": PASSWORD}).encode(),
                             {"Content-Type": "application/json"})
    assert status == 200
    user = {"Authorization": f"Bearer {json.loads(token)['access_token']}"}
    key = {"Authorization": f"Bearer {tenant.api_key}"}
    body = request_body("tufts-mc", patient__mrn="A7781234")
    status, _, created = _call(f"{url}/v1/requests", "POST", json.dumps(body).encode(),
                               {**key, "Content-Type": "application/json"})
    assert status == 201, created
    request_id = json.loads(created)["id"]
    boundary = "----phi-check"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nauthorization\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"Ana Silva 1980-02-29.pdf\"\r\n"
            "Content-Type: application/pdf\r\n\r\n").encode() + samples.minimal_pdf()
    form += f"\r\n--{boundary}--\r\n".encode()
    status, _, uploaded = _call(f"{url}/v1/requests/{request_id}/documents", "POST", form,
                                {**key, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 201, uploaded
    status, _, _ = _call(f"{url}/v1/requests/{request_id}/submit", "POST", b"", user)
    assert status == 202
    document_id = json.loads(uploaded)["id"]
    status, headers, _ = _call(f"{url}/v1/requests/{request_id}/documents/{document_id}/content", headers=user)
    assert status == 302 and "X-Amz-Signature" in headers["Location"]
    status, _, _ = _call(f"{url}/v1/requests", headers={"Authorization": "Bearer rgw_notakey_" + "x" * 40})
    assert status == 401


def test_the_suites_logs_hold_no_phi_or_secrets(live_gateway, db, session_bucket):
    session_bucket.rebootstrap()  # tests before this one restart moto, which keeps no bucket
    file_a_request(live_gateway.url, db)
    directory = log_directory()
    logs = sorted(directory.glob("*.log"))
    assert any(p.name.startswith("gunicorn-") for p in logs) and (directory / "in-process.log") in logs
    assert sum(p.stat().st_size for p in logs) > 0
    findings = scan(logs, patterns())
    report = "\n".join(findings[:50])
    assert not findings, f"{len(findings)} log lines hold PHI or a secret (in {directory}):\n{report}"


def test_the_scanner_finds_what_is_planted(tmp_path):
    checks = patterns()
    assert {"Ana", "Silva", "Souza", "A7781234"} <= patient_values()
    planted = {
        "patient name or MRN 'Silva'": '{"message": "created", "patient": "ana SILVA"}',
        "patient name or MRN 'Ana'": "refused name=Ana, reason=mismatch",
        "date of birth": '{"message": "dob 1980-02-29"}',
        "access token": "Authorization: Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJl",
        "API key": "key=rgw_k3y1d_s3cr3tS3cr3tS3cr3t",
        "presigned signature": "GET /bucket/obj?X-Amz-Algorithm=AWS4&x-amz-signature=abc123",
    }
    for what, line in planted.items():
        log = tmp_path / f"{len(what)}.log"
        log.write_text(f'{{"at": "2026-11-30T06:00:00Z"}}\n{line}\n')
        findings = scan([log], checks)
        assert any(what.lower() in finding.lower() for finding in findings), (what, findings)
        assert all(finding.startswith(f"{log.name}:2:") for finding in findings)
    clean = tmp_path / "clean.log"
    clean.write_text('{"at": "2026-11-30T06:00:00.123+00:00", "logger": "gateway.access", "route": '
                     '"/v1/requests/<request_id>", "status": 200, "principal": "api_key:6f0c"}\n'
                     '{"message": "signing key created", "kid": "Ana-x9sILVa_7q2S"}\n')  # a random id, by chance
    assert scan([clean], checks) == []
