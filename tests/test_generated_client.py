"""An off-the-shelf client generator builds every operation of the OpenAPI document, and the client works.

openapi-python-client generates a client from the live gateway's
/openapi.json into a temporary directory, offline (in a network namespace of
its own where the machine allows one: its formatting step is the local ruff,
and nothing else is fetched), with `--fail-on-warning`: an operation it could
not build (as `PATCH /v1/requests/{id}` was, when its two media types made two
body models of one name) fails the test.  The client then files a complete
request against a gunicorn-served gateway: create, upload the signed
authorization, submit, read it back.
"""

from __future__ import annotations

import importlib
import io
import json
import shutil
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests import samples
from tests.factories import make_tenant, request_body

# One database (tests/conftest.py): a client generated from the OpenAPI document.
pytestmark = pytest.mark.one_database

PACKAGE = "rrg_client"
BIN = Path(sys.executable).parent


def offline(command: list[str]) -> list[str]:
    """`command` in a new network namespace (no interface up) when the machine lets us make one."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n", *command]
    return command


@pytest.fixture(scope="module")
def generated(live_gateway, tmp_path_factory):
    """The generated client package, importable; yields the module."""
    workdir = tmp_path_factory.mktemp("client")
    with urllib.request.urlopen(f"{live_gateway.url}/openapi.json", timeout=30) as response:
        (workdir / "openapi.json").write_bytes(response.read())
    ruff = BIN / "ruff"
    (workdir / "config.json").write_text(json.dumps({
        "project_name_override": PACKAGE, "package_name_override": PACKAGE,
        # The local formatter only (the generator's default hooks call whatever `ruff` is on PATH).
        "post_hooks": [f"{ruff} check --fix-only --quiet .", f"{ruff} format --quiet ."],
        # The generator knows binary bodies only as octet-stream; a PDF (the invoice) is one.
        "content_type_overrides": {"application/pdf": "application/octet-stream"}}))
    run = subprocess.run(offline([str(BIN / "openapi-python-client"), "generate", "--path", "openapi.json",
                                  "--config", "config.json", "--meta", "none", "--output-path", PACKAGE,
                                  "--fail-on-warning"]),
                         cwd=workdir, capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "warning" not in output.lower(), output
    sys.path.insert(0, str(workdir))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(workdir))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def test_every_operation_is_generated(generated, live_gateway):
    with urllib.request.urlopen(f"{live_gateway.url}/openapi.json", timeout=30) as response:
        spec = json.loads(response.read())
    operation_ids = {operation["operationId"] for path in spec["paths"].values()
                     for method, operation in path.items() if method in {"get", "post", "put", "patch", "delete"}}
    modules = {path.stem for path in Path(generated.__file__).parent.glob("api/*/*.py") if path.stem != "__init__"}
    assert operation_ids == modules


def test_a_request_filed_through_the_generated_client(generated, live_gateway, db):
    api = importlib.import_module(f"{PACKAGE}.api.requests")
    documents = importlib.import_module(f"{PACKAGE}.api.documents")
    models = importlib.import_module(f"{PACKAGE}.models")
    types = importlib.import_module(f"{PACKAGE}.types")
    for name in ("create_request", "get_request", "submit_request", "update_request"):
        importlib.import_module(f"{PACKAGE}.api.requests.{name}")
    importlib.import_module(f"{PACKAGE}.api.documents.upload_document")

    tenant = make_tenant(db)
    client = generated.AuthenticatedClient(base_url=live_gateway.url, token=tenant.api_key,
                                           raise_on_unexpected_status=True)
    body = request_body("tufts-mc")

    created = api.create_request.sync_detailed(client=client, body=models.RequestCreate.from_dict(body),
                                               idempotency_key=str(uuid.uuid4()))
    assert created.status_code == 201, created.content
    draft = created.parsed
    assert isinstance(draft, models.Request) and draft.status.value == "draft"
    assert draft.reference == body["reference"]
    assert created.headers["Location"].endswith(f"/v1/requests/{draft.id}")
    assert created.headers["ETag"] == f'"{draft.version}"'

    # A merge patch through the operation the generator once skipped.
    patched = api.update_request.sync_detailed(
        draft.id, client=client, if_match=created.headers["ETag"],
        body=models.RequestCreatePatch.from_dict({"instructions": "Please send the 2025 labs first."}))
    assert patched.status_code == 200, patched.content
    assert patched.parsed.instructions == "Please send the 2025 labs first."

    upload = documents.upload_document.sync_detailed(draft.id, client=client, body=models.UploadDocumentBody(
        kind=models.UploadDocumentBodyKind.AUTHORIZATION,
        file=types.File(payload=io.BytesIO(samples.minimal_pdf()), file_name="authorization.pdf",
                        mime_type="application/pdf")))
    assert upload.status_code == 201, upload.content
    document = upload.parsed
    assert isinstance(document, models.Document) and document.kind.value == "authorization"

    current = api.get_request.sync_detailed(draft.id, client=client)  # the upload changed it: a new version
    assert current.headers["ETag"] != patched.headers["ETag"]
    submitted = api.submit_request.sync_detailed(draft.id, client=client, idempotency_key=str(uuid.uuid4()),
                                                 if_match=current.headers["ETag"])
    assert submitted.status_code == 202, submitted.content
    assert submitted.parsed.status.value in {"submitted", "routed"}

    read = api.get_request.sync_detailed(draft.id, client=client)
    assert read.status_code == 200
    request = read.parsed
    assert request.status.value in {"submitted", "routed"} and request.submitted_at
    assert [d.id for d in request.documents] == [document.id]
    assert request.deficiencies == []
    assert read.headers["ETag"] == f'"{request.version}"'
