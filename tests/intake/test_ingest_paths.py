"""The two paths of `uploads.ingest` (a small file on the request thread, a large one through lanes with S3
fed from the PDF spool) store the same bytes under the one SHA-256, and fail cleanly on a storage outage.

Unit tests of the streaming logic: the in-memory store and the fake scanner stand in for S3 and clamd
(the live upload tests cover the real ones).
"""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from gateway.intake import uploads
from gateway.scanning import FakeScanner
from gateway.storage.memory import InMemoryDocumentStore

pytestmark = pytest.mark.one_database

MIB = 1024 * 1024


def _pdf(size: int) -> bytes:
    body = b"%PDF-1.7\n" + os.urandom(size)
    return body


def _chunks(data: bytes, piece: int = 256 * 1024):
    for start in range(0, len(data), piece):
        yield data[start:start + piece]


@pytest.mark.parametrize("size", [2000, 3 * MIB], ids=["inline", "lanes"])
def test_both_paths_store_the_bytes_under_their_one_hash(size, tmp_path):
    data, store, scanner = _pdf(size), InMemoryDocumentStore(), FakeScanner()
    ingested = uploads.ingest(_chunks(data), scanner=scanner, store=store, max_bytes=10 * MIB,
                              spool_dir=str(tmp_path))
    try:
        assert ingested.sha256 == hashlib.sha256(data).hexdigest() and ingested.size == len(data)
        if size < uploads.INLINE_MAX_BYTES:  # held back until judged: nothing in storage yet
            assert store.objects == {}
        else:  # written while scanned, pending until promoted
            assert store.objects[ingested.storage_key].tags["scan-status"] == "pending"
        ingested.store_clean(store)
        assert store.objects[ingested.storage_key].data == data  # the store re-checks the hash at complete
        assert store.objects[ingested.storage_key].tags["scan-status"] == "clean"
        assert ingested.spool_path.read_bytes() == data
        assert ingested.verdict.is_clean
    finally:
        ingested.discard_spool()


def test_a_small_file_judged_unclean_never_reaches_storage(tmp_path):
    """Held back whole until judged: a refused small file leaves no object, pending or otherwise."""
    from gateway.intake.documents import DocumentUpload

    data, store = _pdf(2000), InMemoryDocumentStore()
    upload = DocumentUpload(db=None, store=store, scanner=FakeScanner(), principal=None, request_id="r",
                            max_bytes=10 * MIB)
    upload.receive(_chunks(data), "form.pdf")
    assert store.objects == {} and upload.ingested.unwritten is not None
    upload.discard()  # what a refusal does
    assert store.objects == {} and store.uploads == {}


def test_storage_failing_mid_stream_leaves_nothing(tmp_path):
    store, scanner = InMemoryDocumentStore(), FakeScanner()
    data = _pdf(4 * MIB)

    def failing_midway():
        for index, chunk in enumerate(_chunks(data)):
            if index == 8:  # past the read-ahead: the lanes (and the spool-fed S3 lane) are running
                store.available = False
            yield chunk

    with pytest.raises(uploads.StorageDown):
        uploads.ingest(failing_midway(), scanner=scanner, store=store, max_bytes=10 * MIB, spool_dir=str(tmp_path))
    # Nothing was completed (the unfinished upload is the sweeper's, as with S3 down) and the spool is gone.
    assert store.objects == {}
    assert list(tmp_path.iterdir()) == []


def test_unstored_types_are_still_hashed_and_scanned_in_full():
    data = b"MZ" + os.urandom(3 * MIB)  # not a type we accept: scanned, hashed, never stored
    store = InMemoryDocumentStore()
    ingested = uploads.ingest(_chunks(data), scanner=FakeScanner(), store=store, max_bytes=10 * MIB)
    assert ingested.storage_key is None and ingested.sha256 == hashlib.sha256(data).hexdigest()
    assert store.objects == {}


def _stored_so_far(store: InMemoryDocumentStore) -> int:
    return sum(len(chunk) for upload in store.uploads.values() for chunk in upload.chunks)


def test_s3_waits_for_the_end_of_a_body_the_worker_is_taking_as_fast_as_it_comes(tmp_path, monkeypatch):
    """A fast body is the critical path (clamd scans after its last byte): S3 takes the spool only after it."""
    monkeypatch.setattr(uploads, "SLOW_BODY_AFTER_S", 60.0)  # however slow this machine, the body counts as fast
    data, store = _pdf(3 * MIB), InMemoryDocumentStore()
    before_last = []

    def fast_then_a_pause():
        pieces = list(_chunks(data))
        yield from pieces[:-1]
        time.sleep(0.3)  # long enough for a lane that was taking the spool to have taken most of it
        before_last.append(_stored_so_far(store))
        yield pieces[-1]

    ingested = uploads.ingest(fast_then_a_pause(), scanner=FakeScanner(), store=store, max_bytes=10 * MIB,
                              spool_dir=str(tmp_path))
    try:
        assert before_last == [0]
        assert store.objects[ingested.storage_key].data == data
    finally:
        ingested.discard_spool()


def test_s3_keeps_pace_with_a_body_the_client_sends_slowly(tmp_path, monkeypatch):
    """A body slower than the worker (a client's uplink) leaves CPU to spare: S3 takes the spool as it grows."""
    monkeypatch.setattr(uploads, "SLOW_BODY_AFTER_S", 0.1)
    data, store = _pdf(3 * MIB), InMemoryDocumentStore()
    before_last = []

    def slow():
        pieces = list(_chunks(data))
        for piece in pieces[:-1]:
            time.sleep(0.03)  # ~8 MiB/s, under SLOW_BODY_BYTES_PER_S
            yield piece
        deadline = time.monotonic() + 5
        while _stored_so_far(store) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        before_last.append(_stored_so_far(store))
        yield pieces[-1]

    ingested = uploads.ingest(slow(), scanner=FakeScanner(), store=store, max_bytes=10 * MIB,
                              spool_dir=str(tmp_path))
    try:
        assert before_last[0] > 0
        assert store.objects[ingested.storage_key].data == data
    finally:
        ingested.discard_spool()
