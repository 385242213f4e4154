"""Streaming one uploaded file through clamd, S3 staging (which hashes it) and a PDF spool at once.

Each chunk is read once and handed to every sink, each on its own short
queue and thread (hashing, socket sends and file writes release the GIL), so
reading, scanning, hashing and storing overlap, and memory stays bounded by a
few chunks per sink and the S3 parts in flight whatever the file size.  A small
file that arrives whole in the first reads skips the threads (see
INLINE_MAX_BYTES).  The SHA-256 is computed once, by the staged upload.  PDFs are also spooled
to a temporary file, because the PDF checks need random access.  The type
comes from the first bytes, never from the name or Content-Type; a file of a
type we don't accept is still scanned in full (so malware is recorded) but
never sent to storage.  On any failure everything written so far is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import PayloadTooLarge, ServiceUnavailable, Unprocessable
from gateway.scanning import MAGIC_BYTES_NEEDED, ScannerUnavailable, ScanResult, sniff_content_type
from gateway.storage import StorageUnavailable

PDF = "application/pdf"


class FileTooLarge(PayloadTooLarge):
    code, title = "FILE_TOO_LARGE", "File too large"


class FileEmpty(Unprocessable):
    code, title = "FILE_EMPTY", "Empty file"


class ScannerDown(ServiceUnavailable):
    code, title = "SCANNER_UNAVAILABLE", "Virus scanner unavailable"


class StorageDown(ServiceUnavailable):
    code, title = "STORAGE_UNAVAILABLE", "Document storage unavailable"


@dataclass
class Ingested:
    """What one streamed file turned out to be."""

    storage_key: str | None  # None when the type is not accepted (nothing was stored)
    content_type: str | None
    size: int
    sha256: str
    verdict: ScanResult
    spool_path: Path | None
    written: object | None = None  # the staged upload's record of what it wrote (promote's shortcut)
    # A small file's upload, held back until the file is judged: it is then written once, already clean
    # (`store_clean`), and bytes that are not clean never reach storage at all.
    unwritten: object | None = None

    def store_clean(self, store) -> None:
        """Mark the stored object clean: write the held-back small file tagged clean, or promote the object."""
        if self.unwritten is not None:
            self.unwritten.complete(sha256_hex=self.sha256, clean=True)
            self.unwritten = None
        else:
            store.promote(self.storage_key, written=self.written)

    def discard_spool(self) -> None:
        """Remove the temporary PDF copy."""
        if self.spool_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.spool_path.unlink()
            self.spool_path = None


class _Lane:
    """One consumer of the chunks on its own thread, so hashing, clamd, S3 and disk overlap.

    The queue is short (memory stays a few chunks per lane); order is kept; the
    first error is raised to the request thread on its next put or at finish,
    and the lane keeps draining so the producer never blocks on a dead lane.
    """

    DEPTH = 4

    def __init__(self, name: str, consume):
        self._consume, self._queue, self.error = consume, queue.Queue(maxsize=self.DEPTH), None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"upload-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self.error is None and not self._stopped:
                try:
                    self._consume(chunk)
                except BaseException as error:  # handed to the request thread, never swallowed
                    self.error = error

    def put(self, chunk: bytes) -> None:
        """Hand a chunk over; raises the lane's first error."""
        if self.error is not None:
            raise self.error
        self._queue.put(chunk)

    def finish(self) -> None:
        """Wait until every chunk is consumed; raises the lane's first error."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """Abandon the lane (after a failure elsewhere): skip what is queued and end the thread."""
        self._stopped = True
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=5)
        self._thread.join(timeout=30)


class _SpoolFedLane:
    """S3 staging fed from the PDF spool file instead of a queue, so it may fall behind the body.

    clamd scans only after the last byte, and S3 is usually the slowest sink: fed in lockstep, the last
    byte would reach clamd only when S3 had taken nearly everything, and the scan would start after the
    S3 upload instead of beside it.  Reading what the spool already holds lets the body run at the pace of
    clamd and the disk, clamd start scanning as soon as the body ends, and S3 catch up meanwhile; memory
    stays bounded (the backlog waits on disk, not in a queue).

    The lane starts *held*: it takes nothing until the body ends or `release` is called.  While the body
    arrives faster than the worker can take it, the body is the critical path (clamd's scan waits for its
    last byte) and every CPU cycle S3 takes then (hashing, part checksums, TLS) delays the scan; once the
    body ends, clamd scans on one core for longer than S3 needs to take the spool (clamd ~45 MiB/s on a PDF,
    S3 in region well over that), so the upload is hidden inside the scan.  `ingest` releases the lane
    early when the client, not the worker, is the bottleneck (see SLOW_BODY_BYTES_PER_S): then S3 has
    idle CPU and keeps pace with the body.
    """

    READ = 1024 * 1024

    def __init__(self, consume, path: Path):
        self._consume, self._path, self.error = consume, path, None
        self._cond = threading.Condition()
        self._available, self._ended, self._stopped = 0, False, False
        self.held = True
        self._thread = threading.Thread(target=self._run, name="upload-s3-spooled", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with open(self._path, "rb", buffering=0) as spooled:
                done = 0
                while True:
                    with self._cond:
                        while (done >= self._available or self.held) and not self._ended and not self._stopped:
                            self._cond.wait()
                        if self._stopped or (done >= self._available and self._ended):
                            return
                        ready = self._available - done
                    data = spooled.read(min(ready, self.READ))
                    if not data:
                        raise OSError("the upload spool ended before the bytes written to it")
                    self._consume(data)
                    done += len(data)
        except BaseException as error:  # handed to the request thread, never swallowed
            self.error = error

    def advance(self, written: int) -> None:
        """`written` more bytes are flushed to the spool; raises the lane's first error."""
        if self.error is not None:
            raise self.error
        with self._cond:
            self._available += written
            self._cond.notify()

    def release(self) -> None:
        """Let the lane take spooled bytes before the body ends (the client is slower than the worker)."""
        with self._cond:
            self.held = False
            self._cond.notify()

    def finish(self) -> None:
        """Wait until every spooled byte is consumed; raises the lane's first error."""
        with self._cond:
            self._ended = True
            self._cond.notify()
        self._thread.join()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """Abandon the lane (after a failure elsewhere)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=30)


# A file that arrives whole within this many bytes (a one-page authorization, an ID card scan) is fed to the
# sinks on the request thread: starting four threads and handing chunks across queues costs more than it
# overlaps.  Larger files go through the lanes.  At most this much (plus one read) is held before deciding.
INLINE_MAX_BYTES = 1024 * 1024
_END = object()
# A body still arriving slower than this after SLOW_BODY_AFTER_S is paced by the client's network, not by the
# worker: the CPU has room for S3, so the spool-fed lane is released to keep pace instead of waiting for the
# end.  (A 100 Mbit/s uplink gives ~12 MB/s; the worker takes a loopback body at well over 100 MB/s.)
SLOW_BODY_BYTES_PER_S = 32 * 1024 * 1024
SLOW_BODY_AFTER_S = 1.0


def _read_ahead(chunks) -> tuple[bytes, list[bytes], bool]:
    """The magic bytes, the chunks read so far, and whether that was the whole file (and within INLINE_MAX_BYTES).

    Reads until the type can be told and then on while the file stays within INLINE_MAX_BYTES.
    """
    head, seen, held = b"", [], 0
    while True:
        chunk = next(chunks, _END)
        if chunk is _END:
            return head, seen, True
        seen.append(chunk)
        held += len(chunk)
        head += chunk[: MAGIC_BYTES_NEEDED - len(head)]
        if len(head) >= MAGIC_BYTES_NEEDED and held > INLINE_MAX_BYTES:
            return head, seen, False


def ingest(chunks: Iterable[bytes], *, scanner, store, max_bytes: int, spool_dir: str | None = None,
           filename: str | None = None) -> Ingested:
    """Read every chunk once into clamd, S3 staging (which hashes it) and (PDFs) a spool file.

    `filename` (the part's) is stored with the object as its attachment name, so
    download URLs never carry it.  The SHA-256 is computed once: by the staged upload as it takes the bytes,
    or (a type we do not store) by a hasher of its own.
    """
    source = iter(chunks)
    head, seen, whole = _read_ahead(source)
    content_type = sniff_content_type(head)
    hasher, size = None, 0
    staged = spool = scan = None
    spool_path = None
    lanes: list[_Lane] = []
    try:
        try:
            scan = scanner.stream()
        except ScannerUnavailable:
            raise ScannerDown("The virus scanner is unavailable; nothing was stored. Retry shortly.") from None
        key = f"documents/{uuid.uuid4()}" if content_type else None
        if key:
            staged = store.begin_upload(key, content_type=content_type, filename=filename)
        if content_type == PDF:
            fd, name = tempfile.mkstemp(prefix="upload-", suffix=".pdf", dir=spool_dir)
            spool, spool_path = os.fdopen(fd, "wb", buffering=1024 * 1024), Path(name)
        sinks = [scan.write]
        if staged is not None:
            sinks.append(staged.write)
        else:
            hasher = hashlib.sha256()
            sinks.append(hasher.update)
        if spool is not None:
            sinks.append(spool.write)
        if whole:
            for chunk in seen:
                size += len(chunk)
                if size > max_bytes:
                    raise FileTooLarge(f"The file is larger than the {max_bytes // (1024 * 1024)} MiB limit.")
                for sink in sinks:
                    sink(chunk)
        else:
            trailing = None
            if spool is not None and staged is not None:  # S3 reads the spool behind the body (see the class)
                trailing = _SpoolFedLane(staged.write, spool_path)
                sinks = [scan.write, _spool_then(spool, trailing)]
            lanes = [_Lane(f"sink{n}", sink) for n, sink in enumerate(sinks)]
            if trailing is not None:
                lanes.append(trailing)
            started = time.monotonic()
            for chunk in _chain(seen, source):
                size += len(chunk)
                if size > max_bytes:
                    raise FileTooLarge(f"The file is larger than the {max_bytes // (1024 * 1024)} MiB limit.")
                for lane in lanes:
                    if lane is not trailing:
                        lane.put(chunk)
                if trailing is not None and trailing.held and _client_paced(size, time.monotonic() - started):
                    trailing.release()
            for lane in lanes:
                if lane is not trailing:
                    lane.finish()
            if trailing is not None:
                # clamd has every byte: let it scan while S3 takes the rest from the spool.
                scan.end_stream()
                trailing.finish()
            lanes = []
        seen = []
        if size == 0:
            raise FileEmpty("The file is empty.")
        if spool is not None:
            spool.close()
        digest = hasher.hexdigest() if hasher is not None else staged.sha256_hex()
        # clamd scans only after the end marker.  A large file's S3 upload is finished while it does (the
        # object stays tagged pending, unreadable, until a clean verdict promotes it); a small one, held
        # whole, is written only once judged clean (one PUT, no tag flip, nothing unclean ever stored).
        scan.end_stream()  # at most once: a second call does nothing
        if staged is not None and not whole:
            staged.complete(sha256_hex=digest)
        verdict = scan.finish()
        if staged is not None and whole:
            return Ingested(key, content_type, size, digest, verdict, spool_path, unwritten=staged)
        return Ingested(key, content_type, size, digest, verdict, spool_path,
                        getattr(staged, "written", None))
    except ScannerUnavailable:
        _stop(lanes)
        _cleanup(staged, spool, spool_path)
        raise ScannerDown("The virus scanner stopped answering; nothing was stored. Retry shortly.") from None
    except StorageUnavailable:
        _stop(lanes)
        _cleanup(staged, spool, spool_path)
        raise StorageDown("Document storage is unavailable; nothing was stored. Retry shortly.") from None
    except BaseException:
        _stop(lanes)
        _cleanup(staged, spool, spool_path)
        raise
    finally:
        if scan is not None:
            scan.close()


def _client_paced(size: int, elapsed: float) -> bool:
    """Whether the body so far came slower than the worker takes it (SLOW_BODY_BYTES_PER_S)."""
    return elapsed >= SLOW_BODY_AFTER_S and size < SLOW_BODY_BYTES_PER_S * elapsed


def _spool_then(spool, trailing: _SpoolFedLane):
    """A spool sink that tells the trailing S3 lane about every byte once it is on disk."""
    def write(chunk: bytes) -> None:
        spool.write(chunk)
        spool.flush()
        trailing.advance(len(chunk))
    return write


def _chain(seen: list[bytes], rest):
    yield from seen
    yield from rest


def _stop(lanes: list[_Lane]) -> None:
    for lane in lanes:
        lane.stop()


def _cleanup(staged, spool, spool_path: Path | None) -> None:
    if staged is not None:
        with contextlib.suppress(Exception):  # best effort; the sweeper removes what this misses
            staged.abort()
    if spool is not None:
        with contextlib.suppress(Exception):
            spool.close()
    if spool_path is not None:
        with contextlib.suppress(FileNotFoundError):
            spool_path.unlink()
