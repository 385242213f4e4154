"""The DocumentStore contract: protocols, errors and the download filename rules.

Services depend on these names only; the S3 and in-memory implementations
translate their own failures into the two exceptions below, the way warehouse
turns ``NoSuchKey`` into ``FileNotFoundError`` at its storage boundary.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from datetime import timedelta
from typing import Protocol
from urllib.parse import quote

# Tag names and values shared by every implementation and by the bucket policy
# written in infra/aws/bootstrap.py (it denies reads unless the tag is "clean").
SCAN_STATUS_TAG = "scan-status"
SHA256_TAG = "sha256"
PENDING = "pending"
CLEAN = "clean"

# The API promises download links that live at most five minutes.
MAX_DOWNLOAD_URL_SECONDS = 300

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# A media type the store will echo into a response header; anything with
# parameters, spaces or control characters is refused rather than escaped.
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")
_DEFAULT_FILENAME = "document"
_MAX_FILENAME_CHARS = 120
_MAX_EXTENSION_CHARS = 10
# Control, format (bidi overrides, zero-width), surrogate, private-use,
# unassigned and line/paragraph separators: none belongs in a filename, and
# format characters such as U+202E can disguise "fdp.exe" as "exe.pdf".
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Characters reserved on Windows file systems, and the quote that would end
# filename="..."; replaced rather than dropped so the name keeps its shape.
_REPLACED_CHARS = frozenset('"<>:|?*')
_ASCII_SAFE = re.compile(r"[^A-Za-z0-9._()\- ]")


class StorageUnavailable(Exception):
    """The object store could not be reached or refused to serve (retry later)."""


class StoredObjectMissing(Exception):
    """The object does not exist, or exists but is not promoted (clean)."""


class StagedUpload(Protocol):
    """One object being written; tagged scan-status=pending once complete."""

    def write(self, chunk: bytes) -> None:
        """Append bytes to the object."""

    def complete(self, *, sha256_hex: str, clean: bool = False) -> None:
        """Finish the object, recording its SHA-256: pending, or already clean when the caller judged every
        byte before completing (a small file, scanned and checked whole)."""

    def sha256_hex(self) -> str:
        """The SHA-256 of the bytes written so far: the one hash of an upload (callers do not hash again)."""

    def abort(self) -> None:
        """Remove everything written so far."""


class DocumentStore(Protocol):
    """Where document bytes live: staged, promoted once clean, then served.

    The uploaded file name (often the patient's name) is stored with the
    object as its ``Content-Disposition: attachment`` when the upload begins,
    and served from there: it is never part of a key or a download URL.
    """

    def begin_upload(self, key: str, *, content_type: str, filename: str | None = None) -> StagedUpload:
        """Start writing a new object under ``key``, to be served as an attachment named ``filename``."""

    def promote(self, key: str, *, written: object | None = None) -> None:
        """Mark the object clean so it may be read and downloaded.

        `written` is the completed staged upload's `written` record (version and tags), when the caller has it.
        """

    def delete(self, key: str) -> None:
        """Remove the object and every version of it."""

    def download_url(
        self,
        key: str,
        *,
        content_type: str,
        expires_in: int = MAX_DOWNLOAD_URL_SECONDS,
    ) -> str:
        """Return a short-lived URL that downloads a promoted object as an attachment (no file name in it)."""

    def open(self, key: str) -> Iterator[bytes]:
        """Stream a promoted object's bytes in chunks."""

    def ping(self) -> None:
        """Raise StorageUnavailable unless the store answers."""

    def sweep_staging(self, older_than: timedelta) -> int:
        """Remove abandoned uploads and still-pending objects; return how many."""


def check_sha256_hex(sha256_hex: str) -> str:
    """Return the digest if it is 64 lowercase hex characters, else raise ValueError."""
    if not isinstance(sha256_hex, str) or not _SHA256_HEX.fullmatch(sha256_hex):
        raise ValueError("sha256_hex must be 64 lowercase hexadecimal characters")
    return sha256_hex


def check_content_type(content_type: str) -> str:
    """Return a bare type/subtype media type, else raise ValueError."""
    if not isinstance(content_type, str) or not _CONTENT_TYPE.fullmatch(content_type):
        raise ValueError("content_type must be a bare type/subtype media type")
    return content_type


def check_expires_in(expires_in: int) -> int:
    """Return the lifetime if it is 1..300 seconds, else raise ValueError."""
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        raise TypeError("expires_in must be an integer number of seconds")
    if not 0 < expires_in <= MAX_DOWNLOAD_URL_SECONDS:
        raise ValueError(f"expires_in must be between 1 and {MAX_DOWNLOAD_URL_SECONDS} seconds")
    return expires_in


def sanitise_filename(filename: str) -> str:
    """Return a display-safe Unicode filename: no path, controls or bidi tricks."""
    name = unicodedata.normalize("NFC", filename or "")
    # Keep only the last path component, whichever separator the client used.
    name = re.split(r"[/\\]", name)[-1]
    kept = []
    for ch in name:
        category = unicodedata.category(ch)
        if category in _DROPPED_CATEGORIES:
            continue
        if ch in _REPLACED_CHARS:
            kept.append("_")
        elif category.startswith("Z"):
            kept.append(" ")
        else:
            kept.append(ch)
    name = re.sub(r"\s+", " ", "".join(kept))
    # Leading dots would make hidden files (or "..") on the recipient's disk.
    name = name.strip(" .")
    if not name:
        return _DEFAULT_FILENAME
    return _truncate(name)


def _truncate(name: str) -> str:
    stem, ext = _split_extension(name)
    limit = _MAX_FILENAME_CHARS - len(ext)
    return (stem[:limit].rstrip(" .") or _DEFAULT_FILENAME) + ext


def _split_extension(name: str) -> tuple[str, str]:
    stem, dot, ext = name.rpartition(".")
    if dot and stem and 0 < len(ext) <= _MAX_EXTENSION_CHARS and ext.isalnum():
        return stem, "." + ext
    return name, ""


def _ascii_fallback(name: str) -> str:
    # Old clients read only filename="..."; give them a transliterated name
    # that cannot break out of the quoted string.
    stem, ext = _split_extension(name)

    def ascii_only(text: str) -> str:
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
        return re.sub(r"_+", "_", _ASCII_SAFE.sub("_", text)).strip(" ._")

    stem = ascii_only(stem) or _DEFAULT_FILENAME
    ext = ascii_only(ext)
    return stem + ("." + ext if ext else "")


def content_disposition(filename: str) -> str:
    """Return an ``attachment`` Content-Disposition with ASCII and RFC 5987 names."""
    name = sanitise_filename(filename)
    encoded = quote(name, safe="")
    return f"attachment; filename=\"{_ascii_fallback(name)}\"; filename*=UTF-8''{encoded}"


# The name an object is served under when the upload named none (or predates stored names).
_EXTENSIONS = {"application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg", "image/tiff": ".tif"}


def default_filename(content_type: str) -> str:
    """``document`` with the extension of the media type: a name that says nothing about anyone."""
    return _DEFAULT_FILENAME + _EXTENSIONS.get(content_type, "")


def stored_disposition(filename: str | None, content_type: str) -> str:
    """The Content-Disposition an object is stored with: an attachment under its sanitised name."""
    return content_disposition(filename if filename and filename.strip() else default_filename(content_type))
