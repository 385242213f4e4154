"""What gunicorn refuses before the app sees it is answered like every other error: problem+json, with a
request id, never gunicorn's HTML page and never the offending input (gateway/serving.py)."""

from __future__ import annotations

import json
import socket

import pytest


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(("raw", "status", "code"), [
    (b"GET /v1/requests?reference=" + b"A" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "URI_TOO_LONG"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431, "HEADERS_TOO_LARGE"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: <secret-value>\r\n\r\n", 400, "BAD_REQUEST"),
])
def test_unparsable_requests_get_a_problem(live_gateway, raw, status, code):
    answered, headers, body = exchange(live_gateway.port, raw)
    assert answered == status
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == status and problem["code"] == code and problem["errors"] == []
    assert problem["request_id"] == headers["x-request-id"]
    assert b"<html" not in body and b"secret-value" not in body and b"AAAA" not in body
