"""Body limits through real gunicorn (API.md v1.1, "Bodies"): 200 MiB of junk as a multipart preamble,
a part header and a field value, each refused with 413 BODY_TOO_LARGE while it streams, with every worker's
memory measured; the part count; JSON nesting, syntax and size on plain and webargs endpoints."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tests.factories import make_tenant, request_body
from tests.http_raw import stream

MIB = 1024 * 1024
JUNK_BYTES = 200 * MIB
PIECE = 64 * 1024
BOUNDARY = "limits-live-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def junk():
    return itertools.repeat(b"x" * PIECE, JUNK_BYTES // PIECE)


def field_head(name: str, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()


BODIES = {
    "preamble": junk,
    "part header": lambda: itertools.chain([field_head("kind") + b"X-Junk: "], junk()),
    "field value": lambda: itertools.chain([field_head("kind") + b"\r\n"], junk()),
    "one-shot request part": lambda: itertools.chain([field_head("request") + b"\r\n"], junk()),
}


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}


@pytest.fixture(scope="module")
def two_workers(start_gateway):
    return start_gateway(workers=2)


@pytest.fixture(scope="module")
def tenant(db):
    return make_tenant(db)


@pytest.fixture(scope="module")
def draft_id(two_workers, tenant):
    answer = stream(two_workers.port, "POST", "/v1/requests", [json.dumps(request_body()).encode()],
                    headers={"Authorization": f"Bearer {tenant.api_key}", "Content-Type": "application/json"})
    assert answer.status == 201, answer.body
    return answer.body["id"]


def auth(tenant) -> dict:
    return {"Authorization": f"Bearer {tenant.api_key}"}


def target(case: str, draft_id: str) -> str:
    return "/v1/requests" if case.startswith("one-shot") else f"/v1/requests/{draft_id}/documents"


@pytest.mark.slow
def test_200_mib_of_junk_is_refused_while_streaming_and_memory_stays_flat(two_workers, tenant, draft_id):
    workers = two_workers.worker_pids()
    assert len(workers) == 2
    for case, body in BODIES.items():  # warm every code path in both workers before measuring
        for _ in range(4):
            small = itertools.islice(body(), 40)  # 2.5 MiB: past every cap, far from 200 MiB
            assert stream(two_workers.port, "POST", target(case, draft_id), small,
                          headers={**auth(tenant), **MULTIPART}).status == 413
    baseline = {}
    for pid in workers:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS, so the peak is this test's
        baseline[pid] = memory(pid)["VmRSS"]
    for case, body in BODIES.items():
        answer = stream(two_workers.port, "POST", target(case, draft_id), body(),
                        headers={**auth(tenant), **MULTIPART})
        assert (answer.status, answer.body["code"]) == (413, "BODY_TOO_LARGE"), (case, answer.body)
        assert answer.body["type"] and answer.body["request_id"]
        # Answered early: long before the 200 MiB were sent (the client stops when the answer comes).
        assert answer.sent < 32 * MIB, (case, answer.sent)
        print(f"{case}: answered after {answer.sent / MIB:.1f} MiB of {JUNK_BYTES // MIB} MiB sent")
    for pid in workers:
        growth_mib = (memory(pid)["VmHWM"] - baseline[pid]) / 1024
        print(f"worker {pid}: peak RSS grew by {growth_mib:.1f} MiB")
        assert growth_mib <= 64, (pid, growth_mib)


def test_more_than_ten_parts_is_413(two_workers, tenant, draft_id):
    def form(parts: int):
        yield b"".join(field_head("kind") + b"\r\nauthorization\r\n" for _ in range(parts))
        yield f"--{BOUNDARY}--\r\n".encode()

    ten = stream(two_workers.port, "POST", f"/v1/requests/{draft_id}/documents", form(10),
                 headers={**auth(tenant), **MULTIPART})
    assert (ten.status, ten.body["code"]) == (422, "FILE_REQUIRED")  # read whole; only the file is missing
    eleven = stream(two_workers.port, "POST", f"/v1/requests/{draft_id}/documents", form(11),
                    headers={**auth(tenant), **MULTIPART})
    assert (eleven.status, eleven.body["code"]) == (413, "BODY_TOO_LARGE")
    assert eleven.body["errors"][0]["code"] == "BODY_TOO_LARGE"


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(("body", "status", "code"), [
    ('{"reference": ' + nested(32) + "}", 400, "MALFORMED_JSON"),  # 33 levels with the object
    ('{"reference": ' + nested(31) + "}", 422, "VALIDATION_FAILED"),  # 32 levels: parsed, then validated
    ("[" * 100_000, 400, "MALFORMED_JSON"),
    ('{"reference": "R-1", ', 400, "MALFORMED_JSON"),
    ("[1, 2]", 400, "BODY_NOT_JSON"),  # valid JSON, not an object
])
def test_json_bodies_on_a_plain_json_endpoint(two_workers, tenant, body, status, code):
    answer = stream(two_workers.port, "POST", "/v1/requests", [body.encode()], headers={**auth(tenant), **JSON})
    assert (answer.status, answer.body["code"]) == (status, code), answer.body


@pytest.mark.parametrize(("body", "status", "code"), [
    ('{"email": ' + nested(32) + "}", 400, "MALFORMED_JSON"),
    ('{"email": ' + nested(31) + "}", 422, "VALIDATION_FAILED"),  # webargs parsed it; the schema refuses it
    ("[" * 100_000, 400, "MALFORMED_JSON"),
    ('{"email": "a@example.test", "password": ', 400, "MALFORMED_JSON"),
])
def test_json_bodies_through_webargs(two_workers, body, status, code):
    answer = stream(two_workers.port, "POST", "/v1/auth/token", [body.encode()], headers=JSON)
    assert (answer.status, answer.body["code"]) == (status, code), answer.body


def test_the_one_shot_request_part_is_parsed_by_the_same_parser(two_workers, tenant):
    form = [field_head("request") + b"\r\n" + ("[" * 100_000).encode() + f"\r\n--{BOUNDARY}--\r\n".encode()]
    answer = stream(two_workers.port, "POST", "/v1/requests", form, headers={**auth(tenant), **MULTIPART})
    assert (answer.status, answer.body["code"]) == (400, "MALFORMED_JSON"), answer.body


@pytest.mark.parametrize("path", ["/v1/requests", "/v1/auth/token", "/healthz"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_1_mib_is_413_with_or_without_content_length(two_workers, tenant, path, chunked):
    body = json.dumps(request_body(instructions="x" * (2 * MIB))).encode()
    pieces = [body[i:i + PIECE] for i in range(0, len(body), PIECE)]
    answer = stream(two_workers.port, "POST", path, pieces, headers={**auth(tenant), **JSON},
                    chunked=chunked, content_length=len(body))
    assert (answer.status, answer.body["code"]) == (413, "BODY_TOO_LARGE"), answer.body
    assert answer.body["status"] == 413
