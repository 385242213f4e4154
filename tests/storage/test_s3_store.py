"""S3DocumentStore against a real moto server over HTTP (no in-process mocks)."""

from __future__ import annotations

import hashlib
import time
import tracemalloc
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import requests
from botocore.exceptions import ClientError

from gateway.storage import (
    CLEAN,
    PENDING,
    SCAN_STATUS_TAG,
    SHA256_TAG,
    InMemoryDocumentStore,
    StorageUnavailable,
    StoredObjectMissing,
    content_disposition,
)
from gateway.storage.s3 import MIN_PART_SIZE

CHUNK = 64 * 1024
PDF = b"%PDF-1.7\n" + b"0123456789abcdef" * 4096 + b"\n%%EOF\n"


def new_key() -> str:
    return f"documents/{uuid.uuid4()}"


def upload(store, key: str, data: bytes, *, content_type: str = "application/pdf", filename: str | None = None) -> str:
    digest = hashlib.sha256(data).hexdigest()
    staged = store.begin_upload(key, content_type=content_type, filename=filename)
    for start in range(0, len(data), CHUNK):
        staged.write(data[start : start + CHUNK])
    staged.complete(sha256_hex=digest)
    return digest


def tags_of(s3_bucket, key: str) -> dict[str, str]:
    tagging = s3_bucket.s3_client.get_object_tagging(Bucket=s3_bucket.bucket, Key=key)
    return {t["Key"]: t["Value"] for t in tagging["TagSet"]}


def object_exists(s3_bucket, key: str) -> bool:
    try:
        s3_bucket.s3_client.head_object(Bucket=s3_bucket.bucket, Key=key)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] in {"404", "NoSuchKey"}
        return False
    return True


def multipart_uploads(s3_bucket) -> list[dict]:
    return s3_bucket.s3_client.list_multipart_uploads(Bucket=s3_bucket.bucket).get("Uploads", [])


def test_small_upload_is_pending_and_kms_encrypted_then_promoted(s3_bucket, document_store):
    key = new_key()
    digest = upload(document_store, key, PDF)

    head = s3_bucket.s3_client.head_object(Bucket=s3_bucket.bucket, Key=key)
    assert head["ContentLength"] == len(PDF)
    assert head["ContentType"] == "application/pdf"
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == s3_bucket.kms_key_id
    assert "-" not in head["ETag"]  # a single PUT, not multipart
    assert tags_of(s3_bucket, key) == {SCAN_STATUS_TAG: PENDING, SHA256_TAG: digest}

    document_store.promote(key)
    assert tags_of(s3_bucket, key) == {SCAN_STATUS_TAG: CLEAN, SHA256_TAG: digest}


def test_open_refuses_pending_and_streams_promoted(document_store):
    key = new_key()
    upload(document_store, key, PDF)
    with pytest.raises(StoredObjectMissing):
        document_store.open(key)

    document_store.promote(key)
    chunks = list(document_store.open(key))
    assert b"".join(chunks) == PDF
    assert len(chunks) > 1 and max(len(c) for c in chunks) <= CHUNK


def test_missing_object_is_stored_object_missing(document_store):
    key = new_key()
    for call in (document_store.open, document_store.promote):
        with pytest.raises(StoredObjectMissing):
            call(key)
    with pytest.raises(StoredObjectMissing):
        document_store.download_url(key, content_type="application/pdf")
    document_store.delete(key)  # deleting nothing is not an error


def test_exactly_one_part_size_is_a_single_put(s3_bucket, document_store):
    key = new_key()
    upload(document_store, key, b"x" * MIN_PART_SIZE)
    head = s3_bucket.s3_client.head_object(Bucket=s3_bucket.bucket, Key=key)
    assert "-" not in head["ETag"] and head["ContentLength"] == MIN_PART_SIZE


def _chunks(total: int):
    # Deterministic, incompressible-looking data generated on the fly, so the
    # test itself never holds the whole file.
    seed = hashlib.sha256(b"records").digest() * (CHUNK // 32)
    for index in range(total // CHUNK):
        yield index.to_bytes(8, "big") + seed[8:]


def test_large_upload_goes_multipart_round_trips_and_memory_stays_bounded(s3_bucket):
    store = s3_bucket.store(part_size=MIN_PART_SIZE, max_parts_in_flight=2)
    # Six parts, the last one short: parts 4 to 6 are filled in buffers that sent parts gave back.
    total = 30 * 1024 * 1024 - 3 * CHUNK
    key = new_key()
    expected = hashlib.sha256()

    tracemalloc.start()
    try:
        staged = store.begin_upload(key, content_type="image/tiff")
        for chunk in _chunks(total):
            expected.update(chunk)
            staged.write(chunk)
        staged.complete(sha256_hex=expected.hexdigest())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Promised: about part_size * (max_parts_in_flight + 1); one more part of
    # headroom for client overhead, and still nowhere near the 30 MiB file.
    bound = MIN_PART_SIZE * (store.max_parts_in_flight + 2)
    assert peak < bound, f"peak {peak / 2**20:.1f} MiB"

    head = s3_bucket.s3_client.head_object(Bucket=s3_bucket.bucket, Key=key)
    assert head["ContentLength"] == total
    assert head["ETag"].strip('"').endswith("-6")  # just under 30 MiB in 5 MiB parts
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == s3_bucket.kms_key_id
    assert tags_of(s3_bucket, key) == {SCAN_STATUS_TAG: PENDING, SHA256_TAG: expected.hexdigest()}
    assert multipart_uploads(s3_bucket) == []
    # The parts went with CRC32 transit checksums, not a second SHA-256 of every byte.
    checked = s3_bucket.s3_client.head_object(Bucket=s3_bucket.bucket, Key=key, ChecksumMode="ENABLED")
    assert checked.get("ChecksumCRC32") and "ChecksumSHA256" not in checked

    store.promote(key)
    actual = hashlib.sha256()
    for chunk in store.open(key):
        actual.update(chunk)
    assert actual.hexdigest() == expected.hexdigest()


def test_parts_to_a_loopback_endpoint_go_unsigned_as_over_https(s3_bucket):
    """Over plain HTTP botocore would SHA-256 every part for the signature, which HTTPS to S3 never does: to
    moto on loopback the parts carry UNSIGNED-PAYLOAD and their CRC32, and still round-trip."""
    store = s3_bucket.store(part_size=MIN_PART_SIZE)
    sent = []
    store.client.meta.events.register(
        "before-send.s3.UploadPart",
        lambda request, **_: sent.append((request.headers.get("X-Amz-Content-SHA256"),
                                          request.headers.get("x-amz-checksum-crc32"))))
    key, data = new_key(), PDF * (MIN_PART_SIZE // len(PDF) + 1)
    staged = store.begin_upload(key, content_type="application/pdf")
    staged.write(data)
    staged.complete(sha256_hex=hashlib.sha256(data).hexdigest())
    assert len(sent) == 2
    assert all(signed == b"UNSIGNED-PAYLOAD" and crc for signed, crc in sent), sent
    store.promote(key)
    assert b"".join(store.open(key)) == data


@pytest.mark.parametrize(("endpoint", "unsigned"), [
    ("http://127.0.0.1:5005", True), ("http://localhost:9000", True), ("http://[::1]:9000", True),
    ("http://minio:9000", False), ("http://10.0.0.5:9000", False), ("https://127.0.0.1:9000", False),
    ("https://s3.us-east-1.amazonaws.com", False), (None, False),
])
def test_only_plain_http_to_loopback_leaves_parts_unsigned(endpoint, unsigned):
    from gateway.storage.s3 import _loopback_payload_signing

    assert _loopback_payload_signing(endpoint) == ({"payload_signing_enabled": False} if unsigned else {})


def test_complete_rejects_a_digest_that_does_not_match(s3_bucket, document_store):
    key = new_key()
    staged = document_store.begin_upload(key, content_type="application/pdf")
    staged.write(PDF)
    with pytest.raises(ValueError):
        staged.complete(sha256_hex=hashlib.sha256(b"other").hexdigest())
    with pytest.raises(ValueError):
        staged.complete(sha256_hex="not-a-digest")
    staged.abort()
    assert not object_exists(s3_bucket, key)


def test_abort_removes_parts_upload_and_object(s3_bucket, document_store):
    key = new_key()
    staged = document_store.begin_upload(key, content_type="application/pdf")
    for chunk in _chunks(12 * 1024 * 1024):  # two parts shipped, one buffered
        staged.write(chunk)
    assert [u["Key"] for u in multipart_uploads(s3_bucket)] == [key]
    staged.abort()
    staged.abort()  # idempotent
    assert multipart_uploads(s3_bucket) == []
    assert not object_exists(s3_bucket, key)

    # Aborting after complete removes the finished object too.
    completed_key = new_key()
    staged = document_store.begin_upload(completed_key, content_type="application/pdf")
    staged.write(PDF)
    staged.complete(sha256_hex=hashlib.sha256(PDF).hexdigest())
    staged.abort()
    versions = s3_bucket.s3_client.list_object_versions(
        Bucket=s3_bucket.bucket, Prefix=completed_key
    )
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")


def test_delete_removes_every_version(s3_bucket, document_store):
    key = new_key()
    upload(document_store, key, PDF)
    s3_bucket.s3_client.put_object(Bucket=s3_bucket.bucket, Key=key, Body=b"second version")
    s3_bucket.s3_client.delete_object(Bucket=s3_bucket.bucket, Key=key)  # leaves a delete marker
    sibling = key + "-sibling"
    upload(document_store, sibling, b"keep me")

    document_store.delete(key)

    versions = s3_bucket.s3_client.list_object_versions(Bucket=s3_bucket.bucket, Prefix=key)
    remaining = [v["Key"] for v in versions.get("Versions", []) + versions.get("DeleteMarkers", [])]
    assert remaining == [sibling]


def test_download_url_is_presigned_short_lived_attachment(s3_bucket, document_store):
    key = new_key()
    upload(document_store, key, PDF, filename="records.pdf")
    with pytest.raises(StoredObjectMissing):  # never a link to unscanned bytes
        document_store.download_url(key, content_type="application/pdf")
    document_store.promote(key)
    with pytest.raises(ValueError):
        document_store.download_url(key, content_type="application/pdf", expires_in=301)

    url = document_store.download_url(key, content_type="application/pdf")

    query = parse_qs(urlparse(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert "X-Amz-Signature" in query
    assert 0 < int(query["X-Amz-Expires"][0]) <= 300
    assert "response-content-disposition" not in query  # the name is stored with the object
    assert "records" not in url
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == PDF
    assert response.headers["Content-Disposition"].startswith('attachment; filename="records.pdf"')
    assert response.headers["Content-Type"] == "application/pdf"
    assert "no-store" in response.headers["Cache-Control"]
    # moto does not verify presigned signatures or expiry, so tampering with
    # X-Amz-Expires cannot be tested here; real S3 rejects it.


def test_download_filename_is_sanitised(s3_bucket, document_store):
    key = new_key()
    hostile = '../../etc/"pass\r\nX-Injected: 1\u202efdp.exe'
    upload(document_store, key, PDF, filename=hostile)
    document_store.promote(key)

    url = document_store.download_url(key, content_type="application/pdf")
    assert "fdp" not in url and "pass" not in url and "etc" not in url
    header = requests.get(url, timeout=10).headers["Content-Disposition"]

    assert header == content_disposition(hostile)
    ascii_part, _, encoded_part = header.partition("; filename*=UTF-8''")
    fallback = ascii_part.removeprefix('attachment; filename="').removesuffix('"')
    decoded = unquote(encoded_part)
    for name in (fallback, decoded):
        assert "/" not in name and ".." not in name and '"' not in name
        assert "\r" not in name and "\n" not in name and "\u202e" not in name
    assert "%E2%80%AE" not in header.upper()
    assert decoded.endswith("fdp.exe")  # the real extension is visible, not "exe.pdf"


def test_download_filename_non_ascii_gets_rfc5987_form():
    header = content_disposition("отчёт 2024.pdf")
    assert header.startswith("attachment; filename=\"2024.pdf\"; filename*=UTF-8''")
    assert content_disposition("отчёт.pdf").startswith('attachment; filename="document.pdf"')
    assert unquote(header.split("''", 1)[1]) == "отчёт 2024.pdf"


PATIENT_FILE_NAMES = ["Ana Silva authorization.pdf", "José Müller – Einwilligung 2026.pdf", "отчёт Иванова.pdf",
                      "SILVA,ANA DOB 1980-02-29.pdf", "陈美玲 授权书.pdf"]


@pytest.mark.parametrize("filename", PATIENT_FILE_NAMES)
@pytest.mark.parametrize("size", ["single PUT", "multipart"])
def test_download_url_never_carries_the_file_name(s3_bucket, filename, size):
    """The name is set on the object when it is created, and served from there (RFC 6266/5987)."""
    store = s3_bucket.store(part_size=MIN_PART_SIZE)
    key = new_key()
    data = PDF if size == "single PUT" else PDF * (2 * MIN_PART_SIZE // len(PDF) + 1)
    upload(store, key, data, filename=filename)
    store.promote(key)

    url = store.download_url(key, content_type="application/pdf")

    assert_url_names_nothing(url, filename)
    response = requests.get(url, timeout=30)
    assert response.status_code == 200 and len(response.content) == len(data)
    assert response.headers["Content-Disposition"] == content_disposition(filename)
    assert unquote(response.headers["Content-Disposition"].split("''", 1)[1]) == filename
    head = s3_bucket.s3_client.head_object(Bucket=s3_bucket.bucket, Key=key)
    assert head["ContentDisposition"] == content_disposition(filename)


def assert_url_names_nothing(url: str, filename: str) -> None:
    """No word of the name, in any spelling a URL could give it, and no response-content-disposition."""
    from urllib.parse import quote, quote_plus

    assert "response-content-disposition" not in url.lower()
    forms = {url, unquote(url), unquote(unquote(url))}
    for word in filename.replace(",", " ").replace(".", " ").split():
        if len(word) < 3 or word.lower() in {"pdf", "dob"} or word.isdigit():
            continue  # a bare year would match the signature's own X-Amz-Date
        for spelling in (word, quote(word), quote_plus(word), quote(word, safe="")):
            assert all(spelling.lower() not in form.lower() for form in forms), (word, url)


def test_object_stored_without_a_name_is_still_an_attachment(s3_bucket, document_store):
    """An object written before names were stored has none: served as an attachment under a neutral name."""
    key = new_key()
    s3_bucket.s3_client.put_object(Bucket=s3_bucket.bucket, Key=key, Body=PDF, ContentType="application/pdf",
                                   Tagging=f"{SCAN_STATUS_TAG}={CLEAN}")
    url = document_store.download_url(key, content_type="application/pdf")
    assert parse_qs(urlparse(url).query)["response-content-disposition"] == [content_disposition("document.pdf")]
    assert requests.get(url, timeout=10).headers["Content-Disposition"] == content_disposition("document.pdf")


def test_sweep_staging_removes_stale_pending_objects_and_uploads(s3_bucket, document_store):
    pending, promoted = new_key(), new_key()
    upload(document_store, pending, PDF)
    upload(document_store, promoted, PDF)
    document_store.promote(promoted)
    assert document_store.sweep_staging(timedelta(hours=1)) == 0
    assert object_exists(s3_bucket, pending)

    abandoned = document_store.begin_upload(new_key(), content_type="application/pdf")
    for chunk in _chunks(6 * 1024 * 1024):  # one part shipped, then forgotten
        abandoned.write(chunk)
    time.sleep(1.1)  # S3 timestamps have one-second resolution

    assert document_store.sweep_staging(timedelta(0)) == 2
    assert not object_exists(s3_bucket, pending)
    assert object_exists(s3_bucket, promoted)
    assert multipart_uploads(s3_bucket) == []


def test_outage_is_storage_unavailable_fast_and_recovers(moto_service, s3_bucket):
    store = s3_bucket.store(connect_timeout=0.5, read_timeout=2.0, max_attempts=1)
    key = new_key()
    upload(store, key, PDF)

    moto_service.stop()
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        store.ping()
    with pytest.raises(StorageUnavailable):
        upload(store, new_key(), PDF)
    with pytest.raises(StorageUnavailable):
        store.open(key)
    with pytest.raises(StorageUnavailable):
        store.sweep_staging(timedelta(0))
    assert time.monotonic() - started < 10

    moto_service.restart()
    s3_bucket.rebootstrap()  # moto is in-memory: the bucket went with the process
    store = s3_bucket.store(connect_timeout=0.5, read_timeout=2.0, max_attempts=1)
    store.ping()
    upload(store, key, PDF)
    store.promote(key)
    assert b"".join(store.open(key)) == PDF


def test_server_killed_mid_multipart_surfaces_on_write_or_complete(moto_service, s3_bucket):
    store = s3_bucket.store(connect_timeout=0.5, read_timeout=2.0, max_attempts=1)
    staged = store.begin_upload(new_key(), content_type="application/pdf")
    digest = hashlib.sha256()
    chunks = _chunks(20 * 1024 * 1024)
    for _ in range(6 * 1024 * 1024 // CHUNK):  # multipart has started
        chunk = next(chunks)
        digest.update(chunk)
        staged.write(chunk)

    moto_service.kill()
    with pytest.raises(StorageUnavailable):
        for chunk in chunks:
            digest.update(chunk)
            staged.write(chunk)
        staged.complete(sha256_hex=digest.hexdigest())
    with pytest.raises(StorageUnavailable):
        staged.write(b"more")  # the failure sticks until abort
    with pytest.raises(StorageUnavailable):
        staged.abort()  # cannot reach S3 either; lifecycle/sweeper clean up later


@pytest.mark.parametrize("kind", ["s3", "memory"])
def test_in_memory_store_honours_the_same_contract(kind, s3_bucket, document_store):
    store = document_store if kind == "s3" else InMemoryDocumentStore()
    key = new_key()
    upload(store, key, PDF)
    with pytest.raises(StoredObjectMissing):
        store.open(key)
    with pytest.raises(StoredObjectMissing):
        store.download_url(key, content_type="application/pdf")
    store.promote(key)
    assert b"".join(store.open(key)) == PDF
    url = store.download_url(key, content_type="application/pdf", expires_in=60)
    assert "response-content-disposition" not in parse_qs(urlparse(url).query)
    headers = (requests.get(url, timeout=10).headers if kind == "s3" else store.fetch(url)[0])
    assert headers["Content-Disposition"] == content_disposition("document.pdf")  # no name was given
    named = new_key()
    upload(store, named, PDF, filename="a/b.pdf")
    store.promote(named)
    url = store.download_url(named, content_type="application/pdf", expires_in=60)
    assert "b.pdf" not in url
    headers = (requests.get(url, timeout=10).headers if kind == "s3" else store.fetch(url)[0])
    assert headers["Content-Disposition"] == content_disposition("b.pdf")
    store.ping()
    store.delete(key)
    with pytest.raises(StoredObjectMissing):
        store.open(key)
    with pytest.raises(ValueError):
        store.begin_upload(new_key(), content_type="text/html; charset=utf-8\r\nX: y")
