"""In-memory DocumentStore for unit tests of service logic (never for serving)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from gateway.clock import utcnow
from gateway.storage.store import (
    CLEAN,
    MAX_DOWNLOAD_URL_SECONDS,
    PENDING,
    SCAN_STATUS_TAG,
    SHA256_TAG,
    StorageUnavailable,
    StoredObjectMissing,
    check_content_type,
    check_expires_in,
    check_sha256_hex,
    content_disposition,
    default_filename,
    stored_disposition,
)

_CHUNK_SIZE = 64 * 1024


def _utcnow() -> datetime:
    return utcnow()


@dataclass
class StoredObject:
    """One object held by the in-memory store."""

    data: bytes
    content_type: str
    tags: dict[str, str]
    created_at: datetime
    content_disposition: str = ""


@dataclass
class _Upload:
    key: str
    content_type: str
    started_at: datetime
    content_disposition: str
    chunks: list[bytes] = field(default_factory=list)


class InMemoryDocumentStore:
    """DocumentStore kept in dicts; set ``available = False`` to simulate an outage."""

    def __init__(self, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.objects: dict[str, StoredObject] = {}
        self.uploads: dict[int, _Upload] = {}
        self.available = True
        self._clock = clock
        self._lock = threading.Lock()
        self._next_upload = 0

    def _check_available(self) -> None:
        if not self.available:
            raise StorageUnavailable("in-memory store marked unavailable")

    def begin_upload(self, key: str, *, content_type: str, filename: str | None = None) -> InMemoryStagedUpload:
        """Start writing a new pending object under ``key``, to be served as attachment ``filename``."""
        self._check_available()
        if not key or key.startswith("/"):
            raise ValueError("key must be a relative key")
        content_type = check_content_type(content_type)
        with self._lock:
            self._next_upload += 1
            upload_id = self._next_upload
            self.uploads[upload_id] = _Upload(key, content_type, self._clock(),
                                              stored_disposition(filename, content_type))
        return InMemoryStagedUpload(self, upload_id)

    def promote(self, key: str, *, written: object | None = None) -> None:
        """Tag the object scan-status=clean (`written` is the S3 store's shortcut; nothing to save here)."""
        self._get(key).tags[SCAN_STATUS_TAG] = CLEAN

    def delete(self, key: str) -> None:
        """Remove the object; no error if absent."""
        self._check_available()
        with self._lock:
            self.objects.pop(key, None)

    def download_url(
        self,
        key: str,
        *,
        content_type: str,
        expires_in: int = MAX_DOWNLOAD_URL_SECONDS,
    ) -> str:
        """Return a fake URL carrying the same query S3 would sign (no file name); `fetch` serves it."""
        check_expires_in(expires_in)
        stored = self._promoted(key)
        query = {"response-content-type": check_content_type(content_type), "expires-in": expires_in}
        if not stored.content_disposition.startswith("attachment"):
            query["response-content-disposition"] = content_disposition(default_filename(content_type))
        return f"memory://documents/{quote(key)}?{urlencode(query)}"

    def fetch(self, url: str) -> tuple[dict[str, str], bytes]:
        """What GETting a `download_url` answers, as S3 would: (headers, body)."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        stored = self._promoted(unquote(parts.path.removeprefix("/")))
        headers = {"Content-Type": query.get("response-content-type", stored.content_type),
                   "Content-Disposition": query.get("response-content-disposition", stored.content_disposition)}
        return headers, stored.data

    def open(self, key: str) -> Iterator[bytes]:
        """Stream a promoted object's bytes in chunks."""
        data = self._promoted(key).data
        return (data[i : i + _CHUNK_SIZE] for i in range(0, len(data), _CHUNK_SIZE))

    def ping(self) -> None:
        """Raise StorageUnavailable when marked unavailable."""
        self._check_available()

    def sweep_staging(self, older_than: timedelta) -> int:
        """Drop old unfinished uploads and old pending objects; return how many."""
        self._check_available()
        cutoff = self._clock() - older_than
        with self._lock:
            stale_uploads = [uid for uid, u in self.uploads.items() if u.started_at < cutoff]
            stale_objects = [
                key
                for key, obj in self.objects.items()
                if obj.created_at < cutoff and obj.tags.get(SCAN_STATUS_TAG) == PENDING
            ]
            for uid in stale_uploads:
                del self.uploads[uid]
            for key in stale_objects:
                del self.objects[key]
        return len(stale_uploads) + len(stale_objects)

    def _get(self, key: str) -> StoredObject:
        self._check_available()
        try:
            return self.objects[key]
        except KeyError:
            raise StoredObjectMissing(f"no object at {key}") from None

    def _promoted(self, key: str) -> StoredObject:
        obj = self._get(key)
        if obj.tags.get(SCAN_STATUS_TAG) != CLEAN:
            raise StoredObjectMissing(f"object at {key} is not promoted")
        return obj

    def _finish(self, upload_id: int, sha256_hex: str, clean: bool = False) -> None:
        self._check_available()
        with self._lock:
            upload = self.uploads.pop(upload_id)
            data = b"".join(upload.chunks)
            if hashlib.sha256(data).hexdigest() != sha256_hex:
                self.uploads[upload_id] = upload
                raise ValueError("sha256_hex does not match the bytes written")
            tags = {SCAN_STATUS_TAG: CLEAN if clean else PENDING, SHA256_TAG: sha256_hex}
            self.objects[upload.key] = StoredObject(data, upload.content_type, tags, self._clock(),
                                                    upload.content_disposition)


class InMemoryStagedUpload:
    """StagedUpload for InMemoryDocumentStore."""

    def __init__(self, store: InMemoryDocumentStore, upload_id: int) -> None:
        self._store = store
        self._upload_id = upload_id
        self._key = store.uploads[upload_id].key
        self._done = False
        self._digest = hashlib.sha256()
        self.written = None

    def write(self, chunk: bytes) -> None:
        """Append bytes."""
        if self._done:
            raise RuntimeError("upload already finished")
        self._store._check_available()
        self._store.uploads[self._upload_id].chunks.append(bytes(chunk))
        self._digest.update(chunk)

    def sha256_hex(self) -> str:
        """The SHA-256 of every byte written so far."""
        return self._digest.hexdigest()

    def complete(self, *, sha256_hex: str, clean: bool = False) -> None:
        """Finish the object, tagged pending (or clean, see StagedUpload.complete) with its sha256."""
        check_sha256_hex(sha256_hex)
        if self._done:
            raise RuntimeError("upload already finished")
        self._store._finish(self._upload_id, sha256_hex, clean)
        self._done = True

    def abort(self) -> None:
        """Remove everything written so far, including a completed object."""
        self._store._check_available()
        with self._store._lock:
            if self._store.uploads.pop(self._upload_id, None) is None and self._done:
                self._store.objects.pop(self._key, None)
        self._done = True
