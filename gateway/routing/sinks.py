"""Facility sinks: how a facility worker hands a routed request to the facility's own system.

Three kinds, chosen per facility in configuration: the staff inbox (nothing to
push), a signed webhook that carries ids only, and a pickup folder that holds
the documents and a manifest.  A sink raises SinkError for anything worth
retrying and SinkRejected when the facility's system refused for good.  Its
receipt goes to the timeline, so it holds ids, codes and relative paths only.
Every sink is safe to run twice for the same handoff (jobs.py relies on it).
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable
from urllib.parse import urlsplit

from gateway.storage.store import StorageUnavailable, StoredObjectMissing
from gateway.webhooks.sender import Sender

WEBHOOK_EVENT = "request.routed"
MANIFEST = "manifest.json"
INCOMING_PREFIX = ".incoming-"
REPLACED_PREFIX = ".replaced-"
DIR_MODE = 0o700
FILE_MODE = 0o600
# Request and document ids become path components: opaque ids (UUID, ULID) fit;
# anything with a dot or a separator could climb out of the pickup folder.
_PATH_COMPONENT = re.compile(r"[A-Za-z0-9_-]{1,128}")
# Our own scratch directories; only these are ever swept.
_SCRATCH = re.compile(r"\.(?:incoming|replaced)-[A-Za-z0-9_-]{1,128}-[0-9a-f]{16}")
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_FILENAME_CHARS = 100
_DEFAULT_FILENAME = "document"


@dataclass(frozen=True)
class HandoffDocument:
    """One clean document of a handoff, as stored (the worker builds these from promoted documents only)."""

    id: str
    kind: str
    filename: str
    content_type: str
    size: int
    sha256: str
    storage_key: str


@dataclass(frozen=True)
class Handoff:
    """What a facility sink receives: routing ids, the clean documents, and the request resource (PHI)."""

    request_id: str
    facility: str
    queue: str
    status: str
    due_on: str | None
    documents: tuple[HandoffDocument, ...]
    resource: dict


class SinkError(Exception):
    """A transient failure (network, timeout, 5xx, disk full): retry the job.  Messages carry no PHI."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


class SinkRejected(Exception):
    """The facility system refused the handoff for good (4xx): don't retry.  Messages carry no PHI."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


@runtime_checkable
class Sink(Protocol):
    """Where a facility's routed work goes."""

    kind: str

    def deliver(self, handoff: Handoff) -> dict:
        """Hand the request over; return a small receipt (ids, codes, relative paths) for the timeline."""


def _utc_iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class InboxSink:
    """The default: the request waits in the staff queue (GET /v1/facilities/{code}/queue); nothing to push."""

    kind: ClassVar[str] = "inbox"
    needs_resource: ClassVar[bool] = False
    does_io: ClassVar[bool] = False  # its effect is recorded in the hand-over's one transaction

    def deliver(self, handoff: Handoff) -> dict:
        """Nothing to do: routing already put the request in the staff queue."""
        return {"sink": self.kind}


# --------------------------------------------------------------------------- webhook


def _check_webhook_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("a webhook sink needs an absolute http(s) URL")
    return url


class WebhookSink:
    """POSTs a signed, PHI-free `request.routed` event; the facility's ROI system fetches the request itself.

    Sent by the gateway's one webhook sender (gateway.webhooks.sender), as
    requester webhooks are: the same signature, the same SSRF guard under the
    operator's allow-private setting (a facility system on a private network
    needs it set), a pinned connection, the timeout, and the same verdict on
    the answer: delivered (a receipt), retry (SinkError: RQ tries again) or
    give up (SinkRejected: the job fails at once).
    """

    kind: ClassVar[str] = "webhook"
    needs_resource: ClassVar[bool] = False  # ids and hashes only

    def __init__(self, url: str, secret: str, *, sender: Sender | None = None) -> None:
        if not secret:
            raise ValueError("a webhook sink needs a signing secret")
        self.url = _check_webhook_url(url)
        self._secret = secret
        self._sender = sender or Sender()

    def __repr__(self) -> str:
        # The URL may embed credentials and the secret is a secret: show the host only.
        return f"WebhookSink(host={urlsplit(self.url).hostname!r})"

    @staticmethod
    def payload(handoff: Handoff, *, event_id: str, created_at: str) -> dict:
        """The event body: ids, codes, digests and sizes only (no patient, names, reference or filenames)."""
        return {
            "id": event_id,
            "type": WEBHOOK_EVENT,
            "created_at": created_at,
            "data": {
                "request_id": handoff.request_id,
                "facility": handoff.facility,
                "queue": handoff.queue,
                "status": handoff.status,
                "due_on": handoff.due_on,
                "documents": [{"id": d.id, "kind": d.kind, "sha256": d.sha256, "size": d.size,
                               "content_type": d.content_type} for d in handoff.documents],
            },
        }

    def deliver(self, handoff: Handoff) -> dict:
        """POST the event once; 2xx is a receipt, a refusal is SinkRejected, anything else SinkError."""
        event_id = str(uuid.uuid4())
        timestamp = int(time.time())
        body = json.dumps(self.payload(handoff, event_id=event_id, created_at=_utc_iso(timestamp)),
                          separators=(",", ":")).encode()
        outcome = self._sender.send(self.url, secret=self._secret, body=body, timestamp=timestamp, headers={
            "Gateway-Event-Id": event_id,
            # Stable across redeliveries of the same routing step, unlike the event id.
            "Idempotency-Key": f"{handoff.request_id}:{handoff.queue}",
        })
        if outcome.delivered:
            return {"sink": self.kind, "status": outcome.status, "event_id": event_id}
        if outcome.retryable:
            raise SinkError(f"webhook delivery failed: {outcome.reason}", status=outcome.status,
                            reason=outcome.reason)
        raise SinkRejected(f"webhook refused the handoff: {outcome.reason}", status=outcome.status,
                           reason=outcome.reason)


# --------------------------------------------------------------------------- folder


def _path_component(value: str, what: str) -> str:
    if not isinstance(value, str) or not _PATH_COMPONENT.fullmatch(value):
        raise SinkRejected(f"{what} is not usable as a file name")
    return value


def safe_filename(filename: str) -> str:
    """An ASCII file name any pickup system accepts: letters, digits, '.', '_', '-'; extension kept."""
    name = re.split(r"[/\\]", filename or "")[-1]
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    name = _UNSAFE_FILENAME_CHARS.sub("_", name).strip("._-")
    stem, dot, ext = name.rpartition(".")
    if not (dot and stem and 0 < len(ext) <= 10):
        stem, ext = name, ""
    stem = stem[: _MAX_FILENAME_CHARS - len(ext) - 1].rstrip("._-") or _DEFAULT_FILENAME
    return f"{stem}.{ext}" if ext else stem


def _remove(path: Path) -> None:
    """Best-effort removal of one of our scratch entries (directory, file or planted symlink)."""
    with suppress(OSError):
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _document_key(documents) -> list[tuple[str, str]]:
    return sorted((str(d["id"]), str(d["sha256"]).lower()) for d in documents)


class FolderSink:
    """Drops <root>/<request_id>/ (documents + manifest.json) for systems that pick up files.

    The directory appears complete or not at all: it is written as
    <root>/.incoming-<request_id>-<random>/ and renamed into place.  Pickers must
    ignore dot-directories.  The folder is the facility's own, so PHI is fine here,
    but only for the worker's user (0o700 directories, 0o600 files).
    """

    kind: ClassVar[str] = "folder"

    def __init__(self, root: Path | str, open_document: Callable[[str], Iterator[bytes]], *,
                 stale_after: float = 3600.0) -> None:
        self.root = Path(root)
        self._open_document = open_document
        self.stale_after = stale_after

    def deliver(self, handoff: Handoff) -> dict:
        """Write the drop unless the same documents are already there; replace it if they differ."""
        request_id = _path_component(handoff.request_id, "request id")
        names = [f"{_path_component(d.id, 'document id')}-{safe_filename(d.filename)}" for d in handoff.documents]
        if len(set(names)) != len(names):
            raise SinkRejected("handoff lists the same document twice")
        try:
            # A missing root is usually an unmounted share: never create it, or PHI lands on the local disk.
            if not self.root.is_dir():
                raise SinkError("pickup folder is not available")
            self._sweep()
            target = self.root / request_id
            if self._same_documents(target, handoff):
                return self._receipt(request_id, "unchanged")
            staging = self._stage(handoff, request_id, names)
            try:
                outcome = self._publish(staging, target, handoff)
            finally:
                _remove(staging)  # already gone once renamed into place
        except OSError as exc:
            raise SinkError(f"pickup folder write failed: {errno.errorcode.get(exc.errno or 0, 'OSError')}") from exc
        except (StorageUnavailable, StoredObjectMissing) as exc:
            raise SinkError(f"document could not be read from storage: {type(exc).__name__}") from exc
        return self._receipt(request_id, outcome)

    def _receipt(self, request_id: str, outcome: str) -> dict:
        return {"sink": self.kind, "path": request_id, "outcome": outcome}

    def _same_documents(self, target: Path, handoff: Handoff) -> bool:
        try:
            manifest = json.loads((target / MANIFEST).read_bytes())
            existing = _document_key(manifest["documents"])
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return False
        except (ValueError, KeyError, TypeError):
            return False  # unreadable manifest: replace it with a good one
        return existing == _document_key({"id": d.id, "sha256": d.sha256} for d in handoff.documents)

    def _stage(self, handoff: Handoff, request_id: str, names: list[str]) -> Path:
        staging = self.root / f"{INCOMING_PREFIX}{request_id}-{secrets.token_hex(8)}"
        staging.mkdir(mode=DIR_MODE)
        try:
            staging.chmod(DIR_MODE)  # whatever the umask
            entries = []
            for document, name in zip(handoff.documents, names, strict=True):
                self._copy(document, staging / name)
                entries.append({"id": document.id, "kind": document.kind, "filename": document.filename,
                                "file": name, "size": document.size, "sha256": document.sha256,
                                "content_type": document.content_type})
            manifest = {"request": handoff.resource, "queue": handoff.queue, "documents": entries,
                        "written_at": _utc_iso(time.time())}
            # Last file in: a picker that sees the manifest sees every document.
            self._write(staging / MANIFEST, [json.dumps(manifest, indent=2, ensure_ascii=False,
                                                        default=str).encode()])
            _fsync_dir(staging)
        except BaseException:
            _remove(staging)  # also on RQ's job timeout: no partial drop left behind
            raise
        return staging

    def _copy(self, document: HandoffDocument, path: Path) -> None:
        chunks = self._open_document(document.storage_key)
        try:
            digest, size = self._write(path, chunks, limit=document.size)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if size != document.size or not hmac.compare_digest(digest, document.sha256.lower()):
            raise SinkError("document bytes do not match the recorded SHA-256")

    @staticmethod
    def _write(path: Path, chunks, *, limit: int | None = None) -> tuple[str, int]:
        """Stream chunks into a new 0o600 file, hashing as they go; stop early past `limit` bytes."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), FILE_MODE)
            for chunk in chunks:
                size += len(chunk)
                if limit is not None and size > limit:
                    raise SinkError("document bytes do not match the recorded SHA-256")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        return digest.hexdigest(), size

    def _publish(self, staging: Path, target: Path, handoff: Handoff) -> str:
        try:
            os.rename(staging, target)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise
        else:
            _fsync_dir(self.root)
            return "written"
        # Something is there: an earlier drop, or a concurrent run of the same job that won.
        if self._same_documents(target, handoff):
            return "unchanged"
        aside = self.root / f"{REPLACED_PREFIX}{target.name}-{secrets.token_hex(8)}"
        os.rename(target, aside)
        try:
            os.rename(staging, target)
        except OSError:
            with suppress(OSError):
                os.rename(aside, target)  # put the previous drop back rather than leave nothing
            raise
        _fsync_dir(self.root)
        _remove(aside)
        return "replaced"

    def _sweep(self) -> None:
        """Remove our scratch directories left by a worker killed mid-write (they hold PHI)."""
        cutoff = time.time() - self.stale_after
        scratch: list[os.DirEntry] = []
        with suppress(OSError), os.scandir(self.root) as entries:
            scratch = [entry for entry in entries if _SCRATCH.fullmatch(entry.name)]
        for entry in scratch:
            with suppress(OSError):
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    _remove(Path(entry.path))


# --------------------------------------------------------------------------- configuration


def sink_from_config(kind: str, *, url: str | None, secret: str | None, folder: str | None,
                     open_document: Callable[[str], Iterator[bytes]] | None, sender: Sender | None = None) -> Sink:
    """Build a facility's sink from its stored configuration; ValueError if it is incomplete."""
    if kind == InboxSink.kind:
        return InboxSink()
    if kind == WebhookSink.kind:
        if not url or not secret:
            raise ValueError("a webhook sink needs a url and a secret")
        return WebhookSink(url, secret, sender=sender)
    if kind == FolderSink.kind:
        if not folder:
            raise ValueError("a folder sink needs a folder path")
        if not Path(folder).is_absolute():
            raise ValueError("a folder sink needs an absolute folder path")
        if open_document is None:
            raise ValueError("a folder sink needs a way to read documents")
        return FolderSink(Path(folder), open_document)
    raise ValueError(f"unknown sink kind: {kind!r}")
