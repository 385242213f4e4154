"""The S3 side of one upload: a single PUT for small files, a bounded multipart stream otherwise.

Where the SHA-256 lives: in the object tag ``sha256``, written together with
``scan-status=pending`` when the upload completes (``promote`` keeps it when it
flips the status). Object metadata is fixed when a multipart upload starts,
long before the digest is known; copying the object at promote time to add
metadata would rewrite every document (a second KMS encryption, an extra
version to clean up, the 5 GB CopyObject limit) for a value the database
already holds authoritatively. The tag costs one request, lives on the same
version as the scan status, and the store checks it against the bytes it
actually wrote. Integrity in transit is S3's job: single PUTs carry
``ChecksumSHA256`` of the whole body (the digest we hold anyway), multipart
uploads a CRC32 per part. A part's checksum only has to catch corruption on
the wire (TLS and SigV4 stop tampering), and a SHA-256 per part would hash
every byte a second time on our side and again on S3's: CRC32 (zlib) costs a
small fraction of that, and it is what the AWS SDKs now send by default.
"""

from __future__ import annotations

import base64
import hashlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import urllib3.exceptions
from botocore.exceptions import BotoCoreError, ClientError

from gateway.storage.store import (
    CLEAN,
    PENDING,
    SCAN_STATUS_TAG,
    SHA256_TAG,
    StorageUnavailable,
    StoredObjectMissing,
    check_sha256_hex,
)


class UploadTarget(Protocol):
    """What a staged upload needs of its store (gateway.storage.s3.S3DocumentStore is the one there is)."""

    client: Any
    bucket: str
    part_size: int
    max_parts_in_flight: int

    def encryption_args(self) -> dict[str, Any]: ...

    def abort_multipart(self, key: str, upload_id: str) -> bool: ...

    def delete(self, key: str) -> None: ...


MAX_PARTS = 10_000
# Per-part transit checksum of multipart uploads (see the module docstring for why not SHA-256).
PART_CHECKSUM = "CRC32"
PART_CHECKSUM_FIELD = f"Checksum{PART_CHECKSUM}"

# Codes meaning "that object (or version) is not there"; anything else, a
# missing bucket included, is an outage or a misconfiguration: unavailable.
MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NotFound", "404"})


@contextmanager
def translated(operation: str, key: str | None = None) -> Iterator[None]:
    """Turn botocore/urllib3 failures inside the block into the store's two exceptions."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "")) or "unknown"
        if key is not None and code in MISSING_CODES:
            raise StoredObjectMissing(f"{operation}: no object at {key}") from exc
        raise StorageUnavailable(f"S3 {operation} failed ({code})") from exc
    except (BotoCoreError, urllib3.exceptions.HTTPError, OSError) as exc:
        # Connection refused, timeouts, truncated bodies, exhausted retries.
        raise StorageUnavailable(f"S3 {operation} failed ({type(exc).__name__})") from exc


def tag_set(tags: dict[str, str]) -> dict[str, Any]:
    """Return tags in the TagSet shape the S3 API takes."""
    return {"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}


@dataclass(frozen=True)
class Written:
    """What a completed upload wrote: the object's version (None on an unversioned bucket) and its tags."""

    version_id: str | None
    tags: dict[str, str]


class S3StagedUpload:
    """One pending object being written: a single PUT, or multipart when large.

    Memory stays near ``part_size * (max_parts_in_flight + 1)``: the buffer
    being filled plus the parts handed to background threads. If that many
    parts are still uploading, ``write`` waits for the oldest one. Part
    buffers are reused: a part sent is the next one filled, so a large upload
    allocates those few buffers once instead of a fresh one per part (which
    glibc, once it has raised its mmap threshold, serves from the heap,
    copying on every growth and keeping the memory afterwards). A failed
    part surfaces as StorageUnavailable on the next ``write`` or ``complete``;
    after any exception the caller must call ``abort``.
    """

    def __init__(self, store: UploadTarget, key: str, content_type: str, content_disposition: str) -> None:
        self._store = store
        self._client = store.client
        self._key = key
        self._content_type = content_type
        # Fixed when the object is created (the file name is known from the part's headers, before its
        # bytes), so a download URL never has to carry the name.
        self._content_disposition = content_disposition
        # The part being filled and how much of it is filled. The first part grows as bytes arrive (a small
        # file never reserves a whole part); later ones are full-size buffers taken back from sent parts.
        self._buffer = bytearray()
        self._filled = 0
        self._spare: list[bytearray] = []
        self._digest = hashlib.sha256()
        self._upload_id: str | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight: deque[tuple[Future, bytearray]] = deque()
        self._parts: list[dict[str, Any]] = []
        self._next_part = 1
        self._object_may_exist = False
        self._state = "open"  # open -> completed | failed -> aborted
        # Set by complete(): the version written and its tags, so promote needs no GET to learn them.
        self.written: Written | None = None

    def write(self, chunk: bytes) -> None:
        """Append bytes; ship a part whenever a full part is buffered and more bytes follow.

        Each byte is copied once, into the part being filled; a full part is handed to its thread as it is
        (the bytearray itself, never sliced or copied again) and the next is filled in a buffer a sent part
        gave back, or a new one.
        """
        self._require("open")
        self._collect_finished()
        if not chunk:
            return
        self._digest.update(chunk)
        part_size = self._store.part_size
        view = memoryview(chunk)
        while view:
            # Strictly more than one part: a file of exactly part_size stays a single PUT.
            if self._filled >= part_size:
                self._ship()
            taken = min(part_size - self._filled, len(view))
            if len(self._buffer) >= self._filled + taken:  # a reused full-size buffer: copy in place
                self._buffer[self._filled:self._filled + taken] = view[:taken]
            else:  # the first part, growing
                self._buffer += view[:taken]
            self._filled += taken
            view = view[taken:]

    def sha256_hex(self) -> str:
        """The SHA-256 of every byte written so far (callers need not hash the same bytes again)."""
        return self._digest.hexdigest()

    def complete(self, *, sha256_hex: str, clean: bool = False) -> None:
        """Finish the object, tagged scan-status=pending (or clean: see StagedUpload.complete) and sha256."""
        check_sha256_hex(sha256_hex)
        self._require("open")
        self._collect_finished()
        if self._digest.hexdigest() != sha256_hex:
            # The tag must describe the bytes actually stored.
            raise ValueError("sha256_hex does not match the bytes written")
        tags = {SCAN_STATUS_TAG: CLEAN if clean else PENDING, SHA256_TAG: sha256_hex}
        try:
            if self._upload_id is None:
                self._put_whole(tags)
            else:
                self._finish_multipart(tags)
        except StorageUnavailable:
            self._state = "failed"
            raise
        self._state = "completed"
        self._shutdown()

    def abort(self) -> None:
        """Remove everything written so far (parts, upload, object); safe to repeat."""
        if self._state == "aborted":
            return
        self._state = "aborting"
        # Parts still on the wire could land after AbortMultipartUpload and
        # keep storage alive, so let them finish (or fail) first.
        for future, _ in self._in_flight:
            future.cancel()
        wait_futures([future for future, _ in self._in_flight])
        self._in_flight.clear()
        self._shutdown()
        self._buffer, self._filled, self._spare = bytearray(), 0, []
        if self._upload_id is not None:
            self._store.abort_multipart(self._key, self._upload_id)
            self._upload_id = None
        if self._object_may_exist:
            self._store.delete(self._key)
        self._state = "aborted"

    # -- internals ---------------------------------------------------------

    def _require(self, state: str) -> None:
        if self._state == "failed":
            raise StorageUnavailable("an earlier S3 request for this upload failed; abort it")
        if self._state != state:
            raise RuntimeError(f"upload is {self._state}, expected {state}")

    def _ship(self) -> None:
        if self._upload_id is None:
            self._start_multipart()
        if self._next_part > MAX_PARTS:
            raise ValueError("object exceeds the S3 part limit; raise part_size")
        # Bounded memory: wait for the oldest part rather than queueing more,
        # and only then cut the next part, so at most max_parts_in_flight
        # parts plus the buffer are ever held.
        while len(self._in_flight) >= self._store.max_parts_in_flight:
            self._collect(self._in_flight.popleft())
        assert self._executor is not None
        part = self._cut()  # handed over whole: no copy
        self._buffer = self._spare.pop() if self._spare else bytearray()
        future = self._executor.submit(self._upload_part, self._next_part, part)
        self._in_flight.append((future, part))
        self._next_part += 1

    def _cut(self) -> bytearray:
        """The part being filled, trimmed in place to what it holds (only ever the last part is short)."""
        part = self._buffer
        if len(part) > self._filled:
            del part[self._filled:]
        self._buffer, self._filled = bytearray(), 0
        return part

    def _start_multipart(self) -> None:
        with translated("create_multipart_upload"):
            response = self._client.create_multipart_upload(
                Bucket=self._store.bucket,
                Key=self._key,
                ContentType=self._content_type,
                ContentDisposition=self._content_disposition,
                # Tagged from the first byte: the bucket policy denies reads
                # of anything not tagged clean, and the sweeper finds it.
                Tagging=urlencode({SCAN_STATUS_TAG: PENDING}),
                ChecksumAlgorithm=PART_CHECKSUM,
                **self._store.encryption_args(),
            )
        self._upload_id = response["UploadId"]
        self._executor = ThreadPoolExecutor(
            max_workers=self._store.max_parts_in_flight, thread_name_prefix="s3-part"
        )

    def _upload_part(self, number: int, data: bytearray) -> dict[str, Any]:
        with translated("upload_part"):
            response = self._client.upload_part(
                Bucket=self._store.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=data,
                ChecksumAlgorithm=PART_CHECKSUM,
            )
        part = {"PartNumber": number, "ETag": response["ETag"]}
        if response.get(PART_CHECKSUM_FIELD):
            part[PART_CHECKSUM_FIELD] = response[PART_CHECKSUM_FIELD]
        return part

    def _collect(self, sent: tuple[Future, bytearray]) -> None:
        future, buffer = sent
        try:
            self._parts.append(future.result())
        except StorageUnavailable:
            self._state = "failed"
            raise
        if len(buffer) == self._store.part_size:  # a full part's buffer fills the next one
            self._spare.append(buffer)

    def _collect_finished(self) -> None:
        # Non-blocking: surface a failed part early, collect finished ones.
        for future, _ in self._in_flight:
            if future.done() and future.exception() is not None:
                self._state = "failed"
                raise StorageUnavailable("a multipart part upload failed") from future.exception()
        while self._in_flight and self._in_flight[0][0].done():
            self._collect(self._in_flight.popleft())

    def _put_whole(self, tags: dict[str, str]) -> None:
        body = self._cut()  # botocore takes a bytearray as it is
        self._object_may_exist = True
        with translated("put_object"):
            response = self._client.put_object(
                Bucket=self._store.bucket,
                Key=self._key,
                Body=body,
                ContentType=self._content_type,
                ContentDisposition=self._content_disposition,
                Tagging=urlencode(tags),
                # S3 recomputes this and refuses the PUT on a mismatch.
                ChecksumSHA256=base64.b64encode(self._digest.digest()).decode("ascii"),
                **self._store.encryption_args(),
            )
        self.written = Written(response.get("VersionId"), dict(tags))

    def _finish_multipart(self, tags: dict[str, str]) -> None:
        if self._filled:
            self._ship()
        while self._in_flight:
            self._collect(self._in_flight.popleft())
        self._object_may_exist = True
        with translated("complete_multipart_upload"):
            response = self._client.complete_multipart_upload(
                Bucket=self._store.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._upload_id = None  # nothing left to abort; the object exists now
        version = {"VersionId": response["VersionId"]} if response.get("VersionId") else {}
        with translated("put_object_tagging"):
            self._client.put_object_tagging(
                Bucket=self._store.bucket, Key=self._key, Tagging=tag_set(tags), **version
            )
        self.written = Written(response.get("VersionId"), dict(tags))

    def _shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
