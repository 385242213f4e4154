"""Facility sinks against a real HTTP receiver on 127.0.0.1 and real temporary folders (no app, no database)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import resource
import shutil
import signal
import socket
import stat
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import time_machine

from gateway.routing.sinks import (
    FolderSink,
    Handoff,
    HandoffDocument,
    InboxSink,
    Sink,
    SinkError,
    SinkRejected,
    WebhookSink,
    safe_filename,
    sink_from_config,
)
from gateway.storage.store import StorageUnavailable
from gateway.webhooks import sender as sender_module
from gateway.webhooks.sender import Sender
from gateway.webhooks.signing import sign, verify

SECRET = "whsec_test_0123456789abcdef"
def local_sink(url: str, *, timeout: float = 10) -> WebhookSink:
    """A sink to the receivers below on 127.0.0.1: allowed only because its sender says so (as an operator's
    GATEWAY_WEBHOOK_ALLOW_PRIVATE would); the default sender refuses them (see the SSRF tests)."""
    return WebhookSink(url, SECRET, sender=Sender(allow_private=True, timeout=timeout))
REQUEST_ID = "9f1c2b7e-4a6d-4e0b-9a53-6f2f1d8c0e11"
PHI_KEYS = {"patient", "first_name", "last_name", "date_of_birth", "reference", "filename"}
CHUNK = 7  # odd on purpose: documents arrive in many uneven pieces


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def document(doc_id: str, data: bytes, filename: str, *, kind: str = "authorization") -> HandoffDocument:
    return HandoffDocument(id=doc_id, kind=kind, filename=filename, content_type="application/pdf",
                           size=len(data), sha256=sha(data), storage_key=f"documents/{doc_id}")


def handoff(*documents: HandoffDocument, request_id: str = REQUEST_ID) -> Handoff:
    resource = {"id": request_id, "reference": "CLAIM-2026-0042", "facility": "tufts-mc", "status": "routed",
                "patient": {"first_name": "Ana", "last_name": "Silva", "date_of_birth": "1980-02-29"},
                "documents": [{"id": d.id, "filename": d.filename} for d in documents]}
    return Handoff(request_id=request_id, facility="tufts-mc", queue="facility.tufts-mc", status="routed",
                   due_on="2026-12-23", documents=tuple(documents), resource=resource)


AUTH = b"%PDF-1.7\n" + b"authorization of Ana Silva " * 50 + b"\n%%EOF\n"
ID_CARD = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
DOC_A = document("doc-a1", AUTH, "Ana Silva — authorization.pdf")
DOC_B = document("doc-b2", ID_CARD, "../../etc/passwd", kind="supporting")


def walk_keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | set().union(*(walk_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(walk_keys(v) for v in value))
    return set()


def verify_signature(header: str, raw: bytes, secret: str) -> int:
    """What a receiver does: recompute the HMAC over "<t>.<raw body>" and compare in constant time."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"])
    return int(parts["t"])


# --------------------------------------------------------------------------- a real HTTP receiver


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.hits: list[tuple[str, dict, bytes]] = []
        self.status = 200
        self.release = threading.Event()  # what /slow waits for before answering

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def _answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.hits.append((self.path, dict(self.headers), body))
        if self.path == "/slow":
            self.server.release.wait(5)
        status = 200 if self.path == "/redirect-target" else self.server.status
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", self.server.url("/redirect-target"))
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET = _answer


@pytest.fixture
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------- webhook


def test_webhook_signed_phi_free_and_idempotent(receiver):
    sink = local_sink(receiver.url())
    first = sink.deliver(handoff(DOC_A, DOC_B))
    sink.deliver(handoff(DOC_A, DOC_B))  # a redelivery after a crash

    assert first["sink"] == "webhook" and first["status"] == 200
    assert [path for path, _, _ in receiver.hits] == ["/hook", "/hook"]
    (_, headers, raw), (_, again, _) = receiver.hits
    verify_signature(headers["Gateway-Signature"], raw, SECRET)
    with pytest.raises(AssertionError):
        verify_signature(headers["Gateway-Signature"], raw, "another secret")
    with pytest.raises(AssertionError):
        verify_signature(headers["Gateway-Signature"], raw.replace(b"routed", b"Routed"), SECRET)
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == again["Idempotency-Key"] == f"{REQUEST_ID}:facility.tufts-mc"
    assert headers["Gateway-Event-Id"] != again["Gateway-Event-Id"]

    body = json.loads(raw)
    assert body["id"] == headers["Gateway-Event-Id"] == first["event_id"]
    assert body["type"] == "request.routed"
    assert body["created_at"].endswith("Z") and len(body["created_at"]) == 20
    assert body["data"] == {
        "request_id": REQUEST_ID, "facility": "tufts-mc", "queue": "facility.tufts-mc", "status": "routed",
        "due_on": "2026-12-23",
        "documents": [{"id": d.id, "kind": d.kind, "sha256": d.sha256, "size": d.size,
                       "content_type": "application/pdf"} for d in (DOC_A, DOC_B)],
    }
    assert not walk_keys(body) & PHI_KEYS
    for phi in (b"Ana", b"Silva", b"CLAIM-2026-0042", b"passwd", b"1980-02-29"):
        assert phi not in raw


@pytest.mark.parametrize("status", [201, 202, 204])
def test_webhook_any_2xx_is_a_receipt(receiver, status):
    receiver.status = status
    receipt = local_sink(receiver.url()).deliver(handoff(DOC_A))
    assert (receipt["sink"], receipt["status"]) == ("webhook", status)


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_webhook_transient_statuses_retry(receiver, status):
    receiver.status = status
    with pytest.raises(SinkError) as caught:
        local_sink(receiver.url()).deliver(handoff(DOC_A))
    assert caught.value.status == status


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_webhook_refusals_are_permanent(receiver, status):
    receiver.status = status
    with pytest.raises(SinkRejected) as caught:
        local_sink(receiver.url()).deliver(handoff(DOC_A))
    assert caught.value.status == status


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_webhook_never_follows_redirects(receiver, status):
    receiver.status = status
    with pytest.raises(SinkError):
        local_sink(receiver.url()).deliver(handoff(DOC_A))
    assert [path for path, _, _ in receiver.hits] == ["/hook"]


def test_webhook_connection_refused():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SinkError) as caught:
        local_sink(f"http://127.0.0.1:{port}/hook", timeout=2).deliver(handoff(DOC_A))
    assert caught.value.reason == "connection_refused" and caught.value.status is None


def test_webhook_timeout_gives_up_before_a_slow_receiver_answers(receiver):
    # /slow answers 200 only once released (after the test) or after 5 s: a sink that ignored its
    # timeout would get that 200 and return a receipt instead of raising.
    with pytest.raises(SinkError) as caught:
        local_sink(receiver.url("/slow"), timeout=0.2).deliver(handoff(DOC_A))
    assert caught.value.reason == "timeout"
    assert not receiver.release.is_set()


def test_webhook_injected_transport_gets_signed_bytes_and_the_timeout():
    calls = []

    def transport(url, *, body, headers, timeout):
        calls.append((url, body, headers, timeout))
        return 201

    sink = WebhookSink("https://roi.example.org/hooks", SECRET, sender=Sender(timeout=3, transport=transport))
    receipt = sink.deliver(handoff(DOC_A))
    (url, body, headers, timeout), = calls
    assert receipt["status"] == 201
    assert url == "https://roi.example.org/hooks" and timeout == 3
    verify_signature(headers["Gateway-Signature"], body, SECRET)
    assert headers["Idempotency-Key"] == f"{REQUEST_ID}:facility.tufts-mc"
    assert headers["Content-Type"] == "application/json" and headers["User-Agent"] == sender_module.USER_AGENT

    def failing(url, **kwargs):
        raise ConnectionResetError("boom")

    with pytest.raises(SinkError):
        WebhookSink("https://roi.example.org/hooks", SECRET, sender=Sender(transport=failing)).deliver(handoff(DOC_A))


# --------------------------------------------------------------------------- one sender, one guard


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "169.254.169.254", "[::1]"])
def test_webhook_sink_refuses_internal_targets_unless_the_operator_allows_them(receiver, host):
    """The facility sink goes through the requester webhooks' SSRF guard: nothing is sent to an internal
    address (the guard refuses before connecting), and the job is retried (DNS answers may change)."""
    port = receiver.server_address[1]
    https_url = f"https://{host}:{port}/hook"
    with pytest.raises(SinkError) as caught:
        WebhookSink(https_url, SECRET, sender=Sender(timeout=2)).deliver(handoff(DOC_A))
    assert caught.value.reason == "target_forbidden"
    assert receiver.hits == []


def test_webhook_sink_plain_http_needs_the_operators_allowance_and_is_never_retried(receiver):
    with pytest.raises(SinkRejected) as caught:  # the URL itself can never be sent to: give up at once
        WebhookSink(receiver.url(), SECRET, sender=Sender(timeout=2)).deliver(handoff(DOC_A))
    assert caught.value.reason == "target_forbidden"
    assert receiver.hits == []
    assert local_sink(receiver.url()).deliver(handoff(DOC_A))["status"] == 200  # allowed: delivered
    assert len(receiver.hits) == 1


def test_webhook_sink_honours_the_settings_of_the_operator(receiver):
    from types import SimpleNamespace

    refused = Sender.from_settings(SimpleNamespace(webhook_allow_private=False, webhook_timeout=2))
    allowed = Sender.from_settings(SimpleNamespace(webhook_allow_private=True, webhook_timeout=2))
    with pytest.raises((SinkError, SinkRejected)):
        WebhookSink(receiver.url(), SECRET, sender=refused).deliver(handoff(DOC_A))
    assert WebhookSink(receiver.url(), SECRET, sender=allowed).deliver(handoff(DOC_A))["status"] == 200
    assert len(receiver.hits) == 1


def test_facility_sinks_and_requester_webhooks_sign_alike(receiver, monkeypatch):
    """Same secret, body and time: the same Gateway-Signature, because both are signed by the one sender
    with the requester webhooks' signer (and a requester's receiver recipe verifies a facility delivery)."""
    signed = []
    real_sign = sender_module.sign
    monkeypatch.setattr(sender_module, "sign", lambda *args: signed.append(args) or real_sign(*args))
    with time_machine.travel(1_790_000_000, tick=False):
        local_sink(receiver.url()).deliver(handoff(DOC_A))
    (_, headers, raw), = receiver.hits
    assert signed == [(SECRET, raw, 1_790_000_000)]  # the sink was signed by the one sender
    assert headers["Gateway-Signature"] == sign(SECRET, raw, 1_790_000_000)
    mac = hmac.new(SECRET.encode(), b"1790000000." + raw, hashlib.sha256).hexdigest()
    assert headers["Gateway-Signature"] == f"t=1790000000,v1={mac}"
    assert verify(SECRET, headers["Gateway-Signature"], raw, now=1_790_000_000)
    # And a requester webhook's attempt with the same secret, body and time carries the very same header.
    wire = []
    Sender(transport=lambda url, *, body, headers, timeout: wire.append(headers) or 200).send(
        "https://93.184.216.34/hooks", secret=SECRET, body=raw, timestamp=1_790_000_000)
    assert wire[0]["Gateway-Signature"] == headers["Gateway-Signature"]


def test_one_module_computes_webhook_signatures():
    """No second copy of the HMAC code: gateway.webhooks.signing is the only place that keys an HMAC."""
    gateway_root = Path(__file__).resolve().parents[2] / "gateway"
    # Outbound HTTP lives in routing/ (facility sinks) and webhooks/ (requester webhooks); the audit trail keys
    # its own chain elsewhere, which is not a webhook signature.
    holders = sorted(str(path.relative_to(gateway_root)) for area in ("routing", "webhooks")
                     for path in (gateway_root / area).rglob("*.py") if "hmac.new(" in path.read_text())
    assert holders == ["webhooks/signing.py"]
    sinks_source = (gateway_root / "routing" / "sinks.py").read_text()
    assert "import requests" not in sinks_source and "urllib3" not in sinks_source


def test_webhook_repr_hides_secret_and_credentials():
    sink = WebhookSink("https://user:pw@roi.example.org/hooks?token=t", SECRET)
    assert SECRET not in repr(sink) and "pw" not in repr(sink) and "token" not in repr(sink)


# --------------------------------------------------------------------------- folder


class Store:
    """Documents in memory, served in small chunks; records what was opened and closed."""

    def __init__(self, root: Path, objects: dict[str, bytes]):
        self.root, self.objects = root, objects
        self.opened: list[str] = []
        self.closed: list[str] = []
        self.while_streaming = None  # called before the first chunk of each document

    def open(self, key: str):
        self.opened.append(key)
        data = self.objects[key]

        def chunks():
            try:
                if self.while_streaming:
                    self.while_streaming(key)
                for start in range(0, len(data), CHUNK):
                    yield data[start : start + CHUNK]
            finally:
                self.closed.append(key)

        return chunks()


@pytest.fixture
def pickup(tmp_path):
    root = tmp_path / "pickup"
    root.mkdir()
    return root


@pytest.fixture
def store(pickup):
    return Store(pickup, {DOC_A.storage_key: AUTH, DOC_B.storage_key: ID_CARD})


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_folder_drop_written_whole_with_manifest_last(pickup, store):
    def no_manifest_yet(key):
        assert [p.name for p in pickup.iterdir() if p.name.startswith(".incoming-")]
        assert not list(pickup.glob(".incoming-*/manifest.json"))
        assert not (pickup / REQUEST_ID).exists()

    store.while_streaming = no_manifest_yet
    receipt = FolderSink(pickup, store.open).deliver(handoff(DOC_A, DOC_B))

    assert receipt == {"sink": "folder", "path": REQUEST_ID, "outcome": "written"}
    drop = pickup / REQUEST_ID
    file_a, file_b = "doc-a1-Ana_Silva_authorization.pdf", "doc-b2-passwd"
    assert os.listdir(pickup) == [REQUEST_ID]
    assert sorted(os.listdir(drop)) == sorted([file_a, file_b, "manifest.json"])
    assert sha((drop / file_a).read_bytes()) == DOC_A.sha256
    assert sha((drop / file_b).read_bytes()) == DOC_B.sha256
    assert store.closed == store.opened == [DOC_A.storage_key, DOC_B.storage_key]

    manifest = json.loads((drop / "manifest.json").read_text())
    assert manifest["request"] == handoff(DOC_A, DOC_B).resource
    assert manifest["queue"] == "facility.tufts-mc"
    assert manifest["written_at"].endswith("Z")
    assert manifest["documents"] == [
        {"id": "doc-a1", "kind": "authorization", "filename": DOC_A.filename, "file": file_a,
         "size": DOC_A.size, "sha256": DOC_A.sha256, "content_type": "application/pdf"},
        {"id": "doc-b2", "kind": "supporting", "filename": DOC_B.filename, "file": file_b,
         "size": DOC_B.size, "sha256": DOC_B.sha256, "content_type": "application/pdf"},
    ]
    assert stat.S_IMODE(drop.stat().st_mode) == 0o700
    for name in os.listdir(drop):
        assert stat.S_IMODE((drop / name).stat().st_mode) == 0o600
    assert (drop / "manifest.json").stat().st_mtime_ns >= max((drop / f).stat().st_mtime_ns for f in (file_a, file_b))


def test_folder_redelivery_of_same_documents_is_a_no_op(pickup, store):
    sink = FolderSink(pickup, store.open)
    sink.deliver(handoff(DOC_A, DOC_B))
    drop, manifest = pickup / REQUEST_ID, pickup / REQUEST_ID / "manifest.json"
    before = (drop.stat().st_ino, drop.stat().st_mtime_ns, manifest.stat().st_mtime_ns, tree(pickup))
    store.opened.clear()

    receipt = sink.deliver(handoff(DOC_B, DOC_A))  # same set, other order
    assert receipt == {"sink": "folder", "path": REQUEST_ID, "outcome": "unchanged"}
    assert (drop.stat().st_ino, drop.stat().st_mtime_ns, manifest.stat().st_mtime_ns, tree(pickup)) == before
    assert store.opened == []


def test_folder_changed_documents_replace_the_drop_atomically(pickup, store):
    sink = FolderSink(pickup, store.open)
    sink.deliver(handoff(DOC_A, DOC_B))
    new_auth = AUTH.replace(b"Ana Silva", b"Ana  Silva")
    doc_a2 = document("doc-a3", new_auth, "authorization (signed again).pdf")
    store.objects[doc_a2.storage_key] = new_auth

    def old_drop_still_whole(key):
        old = json.loads((pickup / REQUEST_ID / "manifest.json").read_text())
        assert [d["id"] for d in old["documents"]] == ["doc-a1", "doc-b2"]
        assert all((pickup / REQUEST_ID / d["file"]).exists() for d in old["documents"])

    store.while_streaming = old_drop_still_whole
    receipt = sink.deliver(handoff(doc_a2, DOC_B))

    assert receipt["outcome"] == "replaced"
    assert os.listdir(pickup) == [REQUEST_ID]  # no .incoming-* or .replaced-* left
    assert sorted(os.listdir(pickup / REQUEST_ID)) == sorted(
        ["doc-a3-authorization_signed_again.pdf", "doc-b2-passwd", "manifest.json"])
    manifest = json.loads((pickup / REQUEST_ID / "manifest.json").read_text())
    assert [d["sha256"] for d in manifest["documents"]] == [doc_a2.sha256, DOC_B.sha256]


def test_folder_sha256_mismatch_leaves_nothing(pickup, store):
    store.objects[DOC_B.storage_key] = ID_CARD[:-1] + b"X"  # same size, other bytes
    with pytest.raises(SinkError):
        FolderSink(pickup, store.open).deliver(handoff(DOC_A, DOC_B))
    assert os.listdir(pickup) == []
    assert store.closed == store.opened


def test_folder_mismatch_keeps_the_previous_drop_intact(pickup, store):
    sink = FolderSink(pickup, store.open)
    sink.deliver(handoff(DOC_A))
    before = {p: p.read_bytes() for p in (pickup / REQUEST_ID).iterdir()}
    store.objects[DOC_B.storage_key] = b"tampered"
    with pytest.raises(SinkError):
        sink.deliver(handoff(DOC_A, DOC_B))
    assert os.listdir(pickup) == [REQUEST_ID]
    assert {p: p.read_bytes() for p in (pickup / REQUEST_ID).iterdir()} == before


def test_folder_stops_reading_a_stream_longer_than_recorded(pickup):
    pulled = []

    def endless(key):  # as good as endless; bounded so that a broken sink cannot fill the disk
        for _ in range(1000):
            pulled.append(1)
            yield b"x" * 1024

    with pytest.raises(SinkError):
        FolderSink(pickup, endless).deliver(handoff(document("doc-x", b"x" * 4096, "x.pdf")))
    assert len(pulled) == 5
    assert os.listdir(pickup) == []


def test_folder_streams_in_bounded_memory(pickup):
    import tracemalloc

    size, chunk = 8 * 1024 * 1024, 64 * 1024
    block = os.urandom(chunk)
    digest = hashlib.sha256()
    for _ in range(size // chunk):
        digest.update(block)
    big = HandoffDocument("doc-big", "supporting", "scan.tiff", "image/tiff", size, digest.hexdigest(), "k")

    def open_document(key):
        for _ in range(size // chunk):
            yield block

    tracemalloc.start()
    try:
        FolderSink(pickup, open_document).deliver(handoff(big))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < size // 8
    assert (pickup / REQUEST_ID / "doc-big-scan.tiff").stat().st_size == size


def test_folder_storage_outage_is_transient(pickup, store):
    def unavailable(key):
        raise StorageUnavailable("down")

    with pytest.raises(SinkError):
        FolderSink(pickup, unavailable).deliver(handoff(DOC_A))
    assert os.listdir(pickup) == []


def test_folder_unwritable_root(tmp_path, store):
    # Directory permissions do not stop root, so as root the delivery runs in a child that drops to "nobody".
    base = Path(tempfile.mkdtemp(prefix="sinks-unwritable-"))
    try:
        base.chmod(0o755)
        pickup = base / "pickup"
        pickup.mkdir(mode=0o755)
        pickup.chmod(0o555)
        if os.geteuid() != 0:
            with pytest.raises(SinkError):
                FolderSink(pickup, store.open).deliver(handoff(DOC_A))
        else:
            pid = os.fork()
            if pid == 0:  # the child: report through the exit code only
                code = 1
                try:
                    os.setgroups([])
                    os.setgid(65534)
                    os.setuid(65534)
                    FolderSink(pickup, store.open).deliver(handoff(DOC_A))
                except SinkError:
                    code = 0
                finally:
                    os._exit(code)
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        assert os.listdir(pickup) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_folder_root_that_is_not_a_directory(tmp_path, store):
    not_a_dir = tmp_path / "pickup-file"
    not_a_dir.write_text("")
    with pytest.raises(SinkError):
        FolderSink(not_a_dir, store.open).deliver(handoff(DOC_A))
    missing = tmp_path / "unmounted-share"
    with pytest.raises(SinkError):
        FolderSink(missing, store.open).deliver(handoff(DOC_A))
    assert not missing.exists()  # never created: PHI must not land on the local disk instead of the share


def test_folder_disk_full_mid_write_leaves_nothing(pickup, store):
    # RLIMIT_FSIZE makes writes past the limit fail with EFBIG, even for root: a real write error mid-stream.
    big = os.urandom(256 * 1024)
    doc = document("doc-big", big, "big.pdf")
    store.objects[doc.storage_key] = big
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(SinkError) as caught:
            FolderSink(pickup, store.open).deliver(handoff(DOC_A, doc))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert isinstance(caught.value.__cause__, OSError)
    assert os.listdir(pickup) == []


def test_folder_concurrent_run_that_wins_the_rename(pickup, store):
    sink = FolderSink(pickup, store.open)
    raced = []

    def other_worker_finishes_first(key):
        if not raced:
            raced.append(key)
            FolderSink(pickup, Store(pickup, store.objects).open).deliver(handoff(DOC_A, DOC_B))

    store.while_streaming = other_worker_finishes_first
    assert sink.deliver(handoff(DOC_A, DOC_B))["outcome"] == "unchanged"
    assert os.listdir(pickup) == [REQUEST_ID]


def test_folder_sweeps_only_its_own_stale_scratch(pickup, store):
    stale = pickup / f".incoming-{REQUEST_ID}-0123456789abcdef"
    fresh = pickup / ".incoming-other-fedcba9876543210"
    foreign = pickup / ".picker-state"
    for path in (stale, fresh, foreign):
        path.mkdir()
        (path / "file").write_text("phi")
    os.utime(stale, (0, 0))
    os.utime(foreign, (0, 0))
    FolderSink(pickup, store.open).deliver(handoff(DOC_A))
    assert sorted(os.listdir(pickup)) == sorted([REQUEST_ID, fresh.name, foreign.name])


def test_folder_refuses_ids_that_would_leave_the_folder(pickup, store):
    with pytest.raises(SinkRejected):
        FolderSink(pickup, store.open).deliver(handoff(DOC_A, request_id="../escape"))
    with pytest.raises(SinkRejected):
        FolderSink(pickup, store.open).deliver(handoff(DOC_A, DOC_A))
    assert os.listdir(pickup) == [] and store.opened == []


@pytest.mark.parametrize(("given", "expected"), [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\ana\\scan 1.TIFF", "scan_1.TIFF"),
    ("Ana Silva — autorização.pdf", "Ana_Silva_autorizacao.pdf"),
    ("...", "document"),
    ("", "document"),
    ("\u202efdp.exe", "fdp.exe"),
    ("x" * 300 + ".pdf", "x" * 96 + ".pdf"),
])
def test_safe_filename(given, expected):
    assert safe_filename(given) == expected


# --------------------------------------------------------------------------- inbox and configuration


def test_inbox_sink():
    assert InboxSink().deliver(handoff(DOC_A)) == {"sink": "inbox"}


def test_sink_from_config(tmp_path):
    inbox = sink_from_config("inbox", url=None, secret=None, folder=None, open_document=None)
    webhook = sink_from_config("webhook", url="https://roi.example.org/h", secret=SECRET, folder=None,
                               open_document=None)
    folder = sink_from_config("folder", url=None, secret=None, folder=str(tmp_path), open_document=lambda k: iter(()))
    assert (type(inbox), type(webhook), type(folder)) == (InboxSink, WebhookSink, FolderSink)
    assert [s.kind for s in (inbox, webhook, folder)] == ["inbox", "webhook", "folder"]
    assert all(isinstance(s, Sink) for s in (inbox, webhook, folder))


@pytest.mark.parametrize("config", [
    {"kind": "webhook", "url": None, "secret": SECRET},
    {"kind": "webhook", "url": "https://roi.example.org/h", "secret": None},
    {"kind": "webhook", "url": "https://roi.example.org/h", "secret": ""},
    {"kind": "webhook", "url": "ftp://roi.example.org/h", "secret": SECRET},
    {"kind": "webhook", "url": "roi.example.org/h", "secret": SECRET},
    {"kind": "folder", "folder": None},
    {"kind": "folder", "folder": ""},
    {"kind": "folder", "folder": "relative/pickup"},
    {"kind": "folder", "folder": "/srv/pickup", "open_document": None},
    {"kind": "sftp"},
    {"kind": ""},
])
def test_sink_from_config_refuses_incomplete_config(config):
    arguments = {"url": None, "secret": None, "folder": None, "open_document": lambda k: iter(()), **config}
    with pytest.raises(ValueError):
        sink_from_config(arguments.pop("kind"), **arguments)
