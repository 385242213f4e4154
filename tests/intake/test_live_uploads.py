"""Uploads through real gunicorn: chunked bodies over the limit, clamd killed mid-upload, the orphan sweeper."""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from gateway.intake.jobs import sweep_orphans
from gateway.intake.models import Document
from tests import samples
from tests.factories import make_tenant, request_body

MIB = 1024 * 1024
BOUNDARY = "gateway-test-boundary-7d3f"


def _multipart(file_chunks, *, kind="authorization", filename="big.pdf"):
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\n{kind}\r\n"
           f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
           f"Content-Type: application/pdf\r\n\r\n").encode()
    yield from file_chunks
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def post_upload(gateway, api_key, request_id, body_chunks, *, chunked=False, content_length=None, key=None):
    """Send a multipart upload with http.client (streamed, optionally chunked); returns (status, json)."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=120)
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    if key:
        headers["Idempotency-Key"] = key
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
    else:
        headers["Content-Length"] = str(content_length)
    try:
        connection.request("POST", f"/v1/requests/{request_id}/documents", body=body_chunks, headers=headers,
                           encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def _draft(gateway, api_key) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    connection.request("POST", "/v1/requests", body=json.dumps(request_body()),
                       headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 201
    return json.loads(response.read())["id"]


def _document_count(db, request_id) -> int:
    with db.transaction() as session:
        return session.scalar(select(func.count()).select_from(Document).where(Document.request_id == request_id))


def _objects(session_bucket) -> set[str]:
    versions = session_bucket.s3_client.list_object_versions(Bucket=session_bucket.bucket).get("Versions", [])
    return {f"{v['Key']}@{v['VersionId']}" for v in versions}


def test_chunked_body_over_the_limit_is_413(start_gateway, db, session_bucket):
    gateway = start_gateway(max_upload_bytes=2 * MIB)
    tenant = make_tenant(db)
    request_id = _draft(gateway, tenant.api_key)
    before = _objects(session_bucket)
    pdf_head = samples.minimal_pdf()

    def chunks():
        yield pdf_head
        for _ in range(6):  # 6 MiB more, well past the 2 MiB limit, with no Content-Length to go by
            yield b"\0" * MIB

    try:
        status, body = post_upload(gateway, tenant.api_key, request_id, _multipart(chunks()), chunked=True)
    except (BrokenPipeError, ConnectionResetError):
        pytest.fail("the gateway closed the connection without answering")
    assert (status, body["code"]) == (413, "FILE_TOO_LARGE")
    assert _document_count(db, request_id) == 0
    assert _objects(session_bucket) == before


def test_clamd_killed_during_a_100_mb_upload(live_gateway, db, clamd_service, session_bucket, tmp_path):
    tenant = make_tenant(db)
    request_id = _draft(live_gateway, tenant.api_key)
    path = tmp_path / "big.pdf"
    size = samples.write_large_pdf(path, 100)
    key = f"upload-{uuid.uuid4()}"
    before = _objects(session_bucket)
    sent = {"bytes": 0}

    def file_chunks():
        with path.open("rb") as handle:
            while chunk := handle.read(MIB):
                sent["bytes"] += len(chunk)
                if sent["bytes"] > 10 * MIB:
                    time.sleep(0.01)  # keep the upload going long enough to pull the plug
                yield chunk

    def killer():
        while sent["bytes"] < 30 * MIB:
            time.sleep(0.01)
        clamd_service.kill()

    thread = threading.Thread(target=killer)
    thread.start()
    preamble_len = sum(len(p) for p in _multipart([]))
    try:
        status, body = post_upload(live_gateway, tenant.api_key, request_id, _multipart(file_chunks()),
                                   content_length=preamble_len + size, key=key)
    finally:
        thread.join()
        clamd_service.start()
    assert (status, body["code"]) == (503, "SCANNER_UNAVAILABLE")
    assert _document_count(db, request_id) == 0
    assert _objects(session_bucket) == before

    def retry():
        with path.open("rb") as handle:
            return post_upload(live_gateway, tenant.api_key, request_id,
                               _multipart(iter(lambda: handle.read(MIB), b"")),
                               content_length=preamble_len + size, key=key)

    status, first = retry()
    assert status == 201, first
    status, again = retry()
    assert status == 201 and again["id"] == first["id"]
    assert _document_count(db, request_id) == 1


def test_sweeper_removes_what_a_killed_upload_left(settings, db, session_bucket):
    from gateway.adapters import build_store

    store = build_store(settings)
    orphan = store.begin_upload(f"documents/{uuid.uuid4()}", content_type="application/pdf")
    orphan.write(samples.minimal_pdf())
    orphan.complete(sha256_hex=__import__("hashlib").sha256(samples.minimal_pdf()).hexdigest())
    abandoned = store.begin_upload(f"documents/{uuid.uuid4()}", content_type="application/pdf")
    abandoned.write(b"%PDF-1.7\n" + b"\0" * (17 * MIB))  # past two 8 MiB parts: a multipart upload is open
    keep_key = f"documents/{uuid.uuid4()}"
    kept = store.begin_upload(keep_key, content_type="application/pdf")
    kept.write(samples.minimal_pdf())
    kept.complete(sha256_hex=__import__("hashlib").sha256(samples.minimal_pdf()).hexdigest())
    store.promote(keep_key)
    time.sleep(1.1)  # S3 timestamps have one-second resolution

    result = sweep_orphans(settings, store=store, db=db, older_than=timedelta(seconds=1))
    assert result["staging_removed"] >= 2
    s3 = session_bucket.s3_client
    assert s3.list_multipart_uploads(Bucket=session_bucket.bucket).get("Uploads", []) == []
    remaining = {v["Key"] for v in s3.list_object_versions(Bucket=session_bucket.bucket).get("Versions", [])}
    assert keep_key in remaining
    for key in remaining:
        tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=session_bucket.bucket, Key=key)["TagSet"]}
        assert tags.get("scan-status") == "clean", key
