"""The Scanner protocol and its result types; services depend on these only."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from gateway.clock import utcnow


class ScanStatus(enum.Enum):
    """A verdict; only CLEAN lets a document through."""

    CLEAN = "clean"
    INFECTED = "infected"
    # A heuristic hit (encrypted, broken media, limits exceeded): the scanner
    # could not vouch for the file, so it is handled like a detection.
    SUSPICIOUS = "suspicious"
    # The scanner answered but did not finish (e.g. stream size limit).
    INCOMPLETE = "incomplete"


def utc_now() -> datetime:
    """The current time as an aware UTC datetime (from the one clock module)."""
    return utcnow()


@dataclass(frozen=True)
class ScanResult:
    """What one scan concluded and which engine and signatures concluded it."""

    status: ScanStatus
    signature: str | None
    engine: str
    signature_version: str | None
    scanned_at: datetime = field(default_factory=utc_now)
    # The scanner's own reason when INCOMPLETE (never file content).
    detail: str | None = None

    @property
    def is_clean(self) -> bool:
        """True only for an explicit CLEAN verdict."""
        return self.status is ScanStatus.CLEAN


@dataclass(frozen=True)
class ScannerInfo:
    """Engine and signature versions, recorded with every verdict."""

    engine: str
    signature_version: str | None
    signature_date: str | None


class ScannerUnavailable(Exception):
    """The scanner could not give a verdict (refused, reset, timeout...); never clean."""


class ScanStream(Protocol):
    """One scan fed chunk by chunk while the upload is read."""

    def write(self, chunk: bytes) -> None:
        """Send the next piece of the document; raises ScannerUnavailable."""
        ...

    def end_stream(self) -> None:
        """Mark the end of the document so scanning starts; finish() then collects the verdict."""
        ...

    def finish(self) -> ScanResult:
        """End the document (if not yet ended) and return the verdict; raises ScannerUnavailable."""
        ...

    def close(self) -> None:
        """Release the connection; abandons the scan if finish() was not called."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Scanner(Protocol):
    """A malware scanner the upload path streams documents into."""

    def info(self) -> ScannerInfo:
        """Engine and signature version; raises ScannerUnavailable."""
        ...

    def stream(self) -> ScanStream:
        """Open a scan for one document; raises ScannerUnavailable."""
        ...


def scan_bytes(scanner: Scanner, data: bytes) -> ScanResult:
    """Scan an in-memory document in one go (small files, tests)."""
    with scanner.stream() as scan:
        scan.write(data)
        return scan.finish()
