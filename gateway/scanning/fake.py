"""FakeScanner: an in-process Scanner for unit tests of service logic and local dev."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from types import TracebackType
from typing import Self

from gateway.scanning.scanner import (
    ScannerInfo,
    ScannerUnavailable,
    ScanResult,
    ScanStatus,
    utc_now,
)

# Kept encoded so that the source file itself is not flagged by a virus
# scanner on a developer machine.
EICAR = base64.b64decode(
    b"WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo="
)
FAKE_SIGNATURE = "Fake.Test.EICAR"


class FakeScanner:
    """Flags any stream containing a marker; can be told to be unavailable."""

    def __init__(
        self,
        markers: Iterable[bytes] = (EICAR,),
        *,
        signature: str = FAKE_SIGNATURE,
        suspicious_markers: Iterable[bytes] = (),
        max_bytes: int | None = None,
        unavailable: bool = False,
        engine: str = "FakeScanner 1.0",
        signature_version: str | None = "0",
    ) -> None:
        """markers -> INFECTED, suspicious_markers -> SUSPICIOUS, > max_bytes -> INCOMPLETE."""
        self.markers = [bytes(m) for m in markers]
        self.suspicious_markers = [bytes(m) for m in suspicious_markers]
        self.signature = signature
        self.max_bytes = max_bytes
        # Flip at any time, even mid-stream, to simulate clamd going away.
        self.unavailable = unavailable
        self.engine = engine
        self.signature_version = signature_version
        self.results: list[ScanResult] = []

    def info(self) -> ScannerInfo:
        """Engine and signature version, unless unavailable."""
        self._check()
        return ScannerInfo(self.engine, self.signature_version, None)

    def stream(self) -> FakeScanStream:
        """Open a scan, unless unavailable."""
        self._check()
        return FakeScanStream(self)

    def _check(self) -> None:
        if self.unavailable:
            raise ScannerUnavailable("fake scanner set to unavailable")


class FakeScanStream:
    """Searches the stream for markers, across chunk boundaries."""

    def __init__(self, scanner: FakeScanner) -> None:
        """Start an empty scan for scanner."""
        self._scanner = scanner
        longest = max((len(m) for m in scanner.markers + scanner.suspicious_markers), default=1)
        self._keep = max(longest - 1, 0)
        self._tail = b""
        self._hit: tuple[ScanStatus, str] | None = None
        self._size = 0
        self._result: ScanResult | None = None

    def write(self, chunk: bytes) -> None:
        """Inspect the next piece."""
        self._scanner._check()
        if self._result is not None:
            raise RuntimeError("write() after finish()")
        self._size += len(chunk)
        window = self._tail + bytes(chunk)
        if self._hit is None:
            if any(m in window for m in self._scanner.markers):
                self._hit = (ScanStatus.INFECTED, self._scanner.signature)
            elif any(m in window for m in self._scanner.suspicious_markers):
                self._hit = (ScanStatus.SUSPICIOUS, "Heuristics.Fake.Suspicious")
        self._tail = window[-self._keep:] if self._keep else b""

    def end_stream(self) -> None:
        """Nothing to send: the fake judges at finish()."""

    def finish(self) -> ScanResult:
        """Return the verdict for everything written."""
        self._scanner._check()
        if self._result is not None:
            return self._result
        status, signature, detail = ScanStatus.CLEAN, None, None
        if self._scanner.max_bytes is not None and self._size > self._scanner.max_bytes:
            status, detail = ScanStatus.INCOMPLETE, "size limit exceeded"
        elif self._hit is not None:
            status, signature = self._hit
        self._result = ScanResult(
            status=status,
            signature=signature,
            engine=self._scanner.engine,
            signature_version=self._scanner.signature_version,
            scanned_at=utc_now(),
            detail=detail,
        )
        self._scanner.results.append(self._result)
        return self._result

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
