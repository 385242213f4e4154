"""Document uploads against real clamd and moto's S3 server: what is accepted, what is refused, what remains."""

from __future__ import annotations

import hashlib
import uuid

import pytest
import requests
from sqlalchemy import func, select

from gateway.intake.models import Document, RejectedUpload
from tests import samples
from tests.factories import bearer, make_tenant, make_user, request_body, sign_in


@pytest.fixture(scope="module")
def firm(db):
    return make_tenant(db, "law_firm")


@pytest.fixture
def draft(client, firm):
    response = client.post("/v1/requests", json=request_body(), headers=bearer(firm.api_key))
    assert response.status_code == 201
    return response.get_json()


def upload(client, tenant, request_id, data: bytes, *, kind="authorization", filename="authorization.pdf",
           content_type="application/pdf", headers=None):
    import io

    return client.post(f"/v1/requests/{request_id}/documents",
                       data={"kind": kind, "file": (io.BytesIO(data), filename, content_type)},
                       headers={**bearer(tenant.api_key), **(headers or {})}, content_type="multipart/form-data")


def bucket_objects(session_bucket) -> set[str]:
    """Every object version in the bucket (anything that could ever be read)."""
    paginator = session_bucket.s3_client.get_paginator("list_object_versions")
    keys = set()
    for page in paginator.paginate(Bucket=session_bucket.bucket):
        keys |= {f"{v['Key']}@{v['VersionId']}" for v in page.get("Versions", [])}
    return keys


def test_clean_pdf_is_stored_promoted_encrypted_and_downloadable(client, db, firm, draft, session_bucket):
    pdf = samples.minimal_pdf(pages=2)
    response = upload(client, firm, draft["id"], pdf)
    assert response.status_code == 201, response.get_json()
    document = response.get_json()
    assert document["kind"] == "authorization" and document["content_type"] == "application/pdf"
    assert document["size"] == len(pdf) and document["sha256"] == hashlib.sha256(pdf).hexdigest()
    assert document["pages"] == 2 and document["filename"] == "authorization.pdf"
    assert document["scan"]["status"] == "clean" and document["scan"]["engine"].startswith("ClamAV")
    with db.transaction() as session:
        key = session.get(Document, document["id"]).storage_key
    assert key.startswith("documents/") and "authorization" not in key
    s3 = session_bucket.s3_client
    head = s3.head_object(Bucket=session_bucket.bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=session_bucket.bucket, Key=key)["TagSet"]}
    assert tags["scan-status"] == "clean" and tags["sha256"] == document["sha256"]

    content = client.get(f"/v1/requests/{draft['id']}/documents/{document['id']}/content",
                         headers=bearer(firm.api_key))
    assert content.status_code == 302
    fetched = requests.get(content.headers["Location"], timeout=10)
    assert fetched.content == pdf
    assert fetched.headers["Content-Disposition"].startswith("attachment")
    assert "X-Amz-Expires=300" in content.headers["Location"] or "Expires=" in content.headers["Location"]
    metadata = client.get(f"/v1/requests/{draft['id']}/documents/{document['id']}", headers=bearer(firm.api_key))
    assert metadata.get_json() == document

    request = client.get(f"/v1/requests/{draft['id']}", headers=bearer(firm.api_key)).get_json()
    assert [d["id"] for d in request["documents"]] == [document["id"]]
    assert {"kind": "authorization", "satisfied": True} in request["required_documents"]

    auditor = sign_in(client, make_user(db, ["auditor"]))
    entries = client.get("/v1/audit?limit=100", headers=auditor).get_json()["items"]
    actions = {(e["action"], e["object"]) for e in entries}
    assert ("document.upload", f"document:{document['id']}") in actions
    assert ("document.download", f"document:{document['id']}") in actions


PATIENT_FILE_NAMES = ["Ana Silva authorization.pdf", "José Müller – Einwilligung.pdf", "отчёт Иванова.pdf",
                      "SILVA, ANA  DOB 1980-02-29.pdf"]


@pytest.mark.parametrize("filename", PATIENT_FILE_NAMES)
def test_download_url_never_carries_the_file_name(client, firm, draft, filename):
    """API.md v1.1: the name (often the patient's) travels only in Content-Disposition, never in the URL."""
    from urllib.parse import unquote

    from gateway.storage import content_disposition, sanitise_filename
    from tests.storage.test_s3_store import assert_url_names_nothing

    response = upload(client, firm, draft["id"], samples.minimal_pdf(), filename=filename)
    assert response.status_code == 201, response.get_json()
    document = response.get_json()
    assert document["filename"] == sanitise_filename(filename)  # the API still reports it, in the body
    content = client.get(f"/v1/requests/{draft['id']}/documents/{document['id']}/content",
                         headers=bearer(firm.api_key))
    assert content.status_code == 302
    url = content.headers["Location"]
    assert_url_names_nothing(url, filename)
    fetched = requests.get(url, timeout=10)
    assert fetched.status_code == 200
    disposition = fetched.headers["Content-Disposition"]
    assert disposition == content_disposition(filename) and disposition.startswith("attachment; filename=\"")
    assert unquote(disposition.split("filename*=UTF-8''", 1)[1]) == sanitise_filename(filename)


def test_one_shot_documents_keep_their_names_out_of_urls_too(client, firm):
    import io
    import json

    filename = "Ana Silva signed authorization.pdf"
    response = client.post("/v1/requests?submit=false", headers=bearer(firm.api_key),
                           content_type="multipart/form-data", data={"request": json.dumps(request_body()),
                                 "authorization": (io.BytesIO(samples.minimal_pdf()), filename)})
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    [document] = created["documents"]
    content = client.get(f"/v1/requests/{created['id']}/documents/{document['id']}/content",
                         headers=bearer(firm.api_key))
    assert "Silva" not in content.headers["Location"] and "Ana" not in content.headers["Location"]
    assert 'filename="Ana Silva signed authorization.pdf"' in requests.get(
        content.headers["Location"], timeout=10).headers["Content-Disposition"]


@pytest.mark.parametrize("image", ["png_bytes", "jpeg_bytes", "tiff_bytes"])
def test_images_are_accepted_by_content(client, firm, draft, image):
    data = getattr(samples, image)()
    response = upload(client, firm, draft["id"], data, kind="supporting", filename="scan.pdf",
                      content_type="application/pdf")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["content_type"] == {"png_bytes": "image/png", "jpeg_bytes": "image/jpeg",
                                                   "tiff_bytes": "image/tiff"}[image]


REFUSED = [
    ("eicar file", samples.eicar, 422, "MALWARE_DETECTED"),
    ("eicar in a FlateDecode PDF stream", lambda: samples.pdf_with_flate_stream(samples.eicar()), 422,
     "MALWARE_DETECTED"),
    ("eicar in a zip renamed .pdf", lambda: samples.zip_with("eicar.com", samples.eicar()), 422, "MALWARE_DETECTED"),
    ("windows PE renamed .pdf", samples.windows_pe, 422, "MALWARE_DETECTED"),
    ("clean zip renamed .pdf", lambda: samples.zip_with("notes.txt", b"hello"), 415, "FILE_TYPE_NOT_ALLOWED"),
    ("html renamed .pdf", lambda: b"<html><body>hi</body></html>", 415, "FILE_TYPE_NOT_ALLOWED"),
    ("PDF+ZIP polyglot", samples.pdf_zip_polyglot, 422, "FILE_POLYGLOT"),
    ("zero bytes", lambda: b"", 422, "FILE_EMPTY"),
    ("truncated PDF", samples.truncated_pdf, 422, "FILE_CORRUPT"),
    ("encrypted PDF", samples.encrypted_pdf, 422, "PDF_ENCRYPTED"),
    ("owner-password PDF", samples.owner_only_encrypted_pdf, 422, "PDF_ENCRYPTED"),
    ("PDF with JavaScript", samples.pdf_with_javascript, 422, "PDF_ACTIVE_CONTENT"),
    ("PDF with hex-escaped JavaScript", lambda: samples.pdf_with_javascript(hex_escaped=True), 422,
     "PDF_ACTIVE_CONTENT"),
    ("PDF with OpenAction JavaScript", samples.pdf_with_open_action_js, 422, "PDF_ACTIVE_CONTENT"),
    ("PDF with Launch", samples.pdf_with_launch_action, 422, "PDF_ACTIVE_CONTENT"),
    ("PDF with an embedded file", samples.pdf_with_embedded_file, 422, "PDF_ACTIVE_CONTENT"),
    ("PDF with XFA", samples.pdf_with_xfa, 422, "PDF_ACTIVE_CONTENT"),
]


@pytest.mark.parametrize(("name", "make", "status", "code"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_files_leave_nothing_readable(client, db, firm, draft, session_bucket, name, make, status, code):
    before = bucket_objects(session_bucket)
    response = upload(client, firm, draft["id"], make())
    assert (response.status_code, response.get_json()["code"]) == (status, code), response.get_json()
    assert response.mimetype == "application/problem+json"
    assert bucket_objects(session_bucket) == before  # nothing new, not even a staging version
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Document).where(
            Document.request_id == draft["id"])) == 0


def test_malware_is_recorded_and_audited_but_never_stored(client, db, firm, draft):
    data = samples.eicar()
    response = upload(client, firm, draft["id"], data, filename="invoice.pdf")
    assert response.get_json()["signature"] == "Gateway.Test.EICAR.UNOFFICIAL"
    with db.transaction() as session:
        rejected = session.scalars(select(RejectedUpload).where(RejectedUpload.request_id == draft["id"])).one()
        assert rejected.sha256 == hashlib.sha256(data).hexdigest()
        assert rejected.signature == "Gateway.Test.EICAR.UNOFFICIAL"
        assert rejected.uploaded_by == f"api_key:{firm.api_key_id}"
    auditor = sign_in(client, make_user(db, ["auditor"]))
    entries = client.get("/v1/audit", headers=auditor,
                         query_string={"request_id": response.headers["X-Request-ID"]}).get_json()["items"]
    assert [(e["action"], e["result"], e["object"]) for e in entries] == [
        ("document.upload", "blocked", f"rejected_upload:{rejected.id}")]


def test_hostile_filename_is_neutralised(client, firm, draft):
    filename = "../../" + "\u202e" + "fdp.exe" + "a" * 300 + ".pdf"
    response = upload(client, firm, draft["id"], samples.minimal_pdf(), filename=filename)
    assert response.status_code == 201
    stored = response.get_json()["filename"]
    assert "/" not in stored and "\u202e" not in stored and ".." not in stored[:2]
    assert len(stored) <= 255 and stored.endswith(".pdf")


def test_form_mistakes_are_clear_problems(client, firm, draft):
    import io

    url, headers = f"/v1/requests/{draft['id']}/documents", bearer(firm.api_key)
    no_file = client.post(url, data={"kind": "authorization"}, headers=headers, content_type="multipart/form-data")
    assert no_file.status_code == 422 and no_file.get_json()["code"] == "FILE_REQUIRED"
    bad_kind = upload(client, firm, draft["id"], samples.minimal_pdf(), kind="selfie")
    assert bad_kind.status_code == 422 and bad_kind.get_json()["errors"][0]["field"] == "kind"
    release = upload(client, firm, draft["id"], samples.minimal_pdf(), kind="release")
    assert release.status_code == 403
    json_body = client.post(url, json={"kind": "authorization"}, headers=headers)
    assert json_body.status_code == 415 and json_body.get_json()["code"] == "MULTIPART_REQUIRED"
    extra = client.post(url, data={"kind": "authorization", "org": "x",
                                   "file": (io.BytesIO(samples.minimal_pdf()), "a.pdf")},
                        headers=headers, content_type="multipart/form-data")
    assert extra.status_code == 422


def test_documents_are_invisible_to_other_tenants(client, db, firm, draft):
    document = upload(client, firm, draft["id"], samples.minimal_pdf()).get_json()
    other = make_tenant(db)
    base = f"/v1/requests/{draft['id']}/documents"
    for path in (f"{base}/{document['id']}", f"{base}/{document['id']}/content"):
        assert client.get(path, headers=bearer(other.api_key)).status_code == 404
    assert upload(client, other, draft["id"], samples.minimal_pdf()).status_code == 404
    # Another request of the same firm cannot reach this document by changing the path.
    second = client.post("/v1/requests", json=request_body(), headers=bearer(firm.api_key)).get_json()
    assert client.get(f"/v1/requests/{second['id']}/documents/{document['id']}",
                      headers=bearer(firm.api_key)).status_code == 404


def test_same_idempotency_key_uploads_once(client, db, firm, draft):
    key, pdf = f"upload-{uuid.uuid4()}", samples.minimal_pdf()
    first = upload(client, firm, draft["id"], pdf, headers={"Idempotency-Key": key})
    second = upload(client, firm, draft["id"], pdf, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 201
    assert first.get_json()["id"] == second.get_json()["id"] and second.headers["Idempotent-Replayed"] == "true"
    different = upload(client, firm, draft["id"], samples.minimal_pdf(pages=3), headers={"Idempotency-Key": key})
    assert different.status_code == 422 and different.get_json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Document).where(
            Document.request_id == draft["id"])) == 1


def test_scanner_down_is_503_and_a_retry_succeeds(client, db, firm, draft, clamd_service, session_bucket):
    key, pdf = f"upload-{uuid.uuid4()}", samples.minimal_pdf()
    before = bucket_objects(session_bucket)
    clamd_service.stop()
    try:
        down = upload(client, firm, draft["id"], pdf, headers={"Idempotency-Key": key})
    finally:
        clamd_service.start()
    assert down.status_code == 503 and down.get_json()["code"] == "SCANNER_UNAVAILABLE"
    assert int(down.headers["Retry-After"]) > 0
    assert bucket_objects(session_bucket) == before
    retry = upload(client, firm, draft["id"], pdf, headers={"Idempotency-Key": key})
    assert retry.status_code == 201
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Document).where(
            Document.request_id == draft["id"])) == 1


def test_storage_down_is_503(client, db, firm, draft, moto_service, session_bucket):
    moto_service.stop()
    try:
        down = upload(client, firm, draft["id"], samples.minimal_pdf())
    finally:
        moto_service.start()
        session_bucket.rebootstrap()  # moto keeps nothing across a restart
    assert down.status_code == 503 and down.get_json()["code"] == "STORAGE_UNAVAILABLE"
    assert down.headers["Retry-After"]
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Document).where(
            Document.request_id == draft["id"])) == 0
    assert upload(client, firm, draft["id"], samples.minimal_pdf()).status_code == 201


def test_documents_cannot_be_added_after_cancel(client, firm, draft):
    client.post(f"/v1/requests/{draft['id']}/cancel", headers=bearer(firm.api_key))
    response = upload(client, firm, draft["id"], samples.minimal_pdf())
    assert response.status_code == 409 and response.get_json()["code"] == "REQUEST_NOT_EDITABLE"


def test_phi_reads_fail_closed_without_an_audit_trail(empty_database_any, settings):
    """With the audit store broken, reading a request or downloading a document is refused (503)."""
    import dataclasses

    from sqlalchemy import text

    from gateway import migrate
    from gateway.app import create_app

    migrate.upgrade(empty_database_any)
    app = create_app(dataclasses.replace(settings, database_url=empty_database_any))
    db, client = app.extensions["gateway"].db, app.test_client()
    tenant = make_tenant(db)
    draft = client.post("/v1/requests", json=request_body(), headers=bearer(tenant.api_key)).get_json()
    document = upload(client, tenant, draft["id"], samples.minimal_pdf()).get_json()
    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_chain_head"))
    for path in (f"/v1/requests/{draft['id']}", f"/v1/requests/{draft['id']}/documents/{document['id']}/content",
                 f"/v1/requests/{draft['id']}/documents/{document['id']}", "/v1/requests"):
        response = client.get(path, headers=bearer(tenant.api_key))
        assert response.status_code == 503, path
        assert response.get_json()["code"] == "AUDIT_UNAVAILABLE" and "Location" not in response.headers
    db.dispose()
