"""Scanner backed by clamd over TCP: PING/VERSION via `clamd`, INSTREAM on our own socket."""

from __future__ import annotations

import logging
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

import clamd

from gateway import metrics
from gateway.scanning.scanner import (
    ScannerInfo,
    ScannerUnavailable,
    ScanResult,
    ScanStatus,
    utc_now,
)

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 256 * 1024
SIZE_LIMIT_REPLY = "INSTREAM size limit exceeded. ERROR"
# clamd answers in one short line; anything longer is not clamd talking.
MAX_REPLY_BYTES = 4096
_FOUND = re.compile(r"^stream: (?P<name>.+) FOUND$")
_VERSION = re.compile(r"^(?P<engine>ClamAV \S+?)(?:/(?P<version>[^/]*)(?:/(?P<date>.*))?)?$")


def parse_address(address: str) -> tuple[str, int]:
    """Split "host:port" (or "[v6]:port") into a (host, port) pair."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"clamd address must look like host:port, got {address!r}")
    return host.strip("[]"), int(port)


def parse_version(reply: str) -> ScannerInfo:
    """Parse a VERSION answer: "ClamAV 1.0.9/27400/<date>" or bare "ClamAV 1.4.6"."""
    match = _VERSION.match(reply.strip())
    if match is None:
        raise ValueError(f"not a clamd VERSION reply: {reply!r}")
    # Without official databases clamd reports no version/date at all.
    return ScannerInfo(
        engine=match["engine"],
        signature_version=match["version"] or None,
        signature_date=match["date"] or None,
    )


def map_reply(reply: str) -> tuple[ScanStatus, str | None, str | None]:
    """Map an INSTREAM reply to (status, signature, detail); raise on nonsense."""
    reply = reply.strip()
    if reply == "stream: OK":
        return ScanStatus.CLEAN, None, None
    found = _FOUND.match(reply)
    if found:
        name = found["name"]
        # Heuristics.* means "could not vouch for it" (encrypted, broken,
        # limits exceeded), not a known signature; still never clean.
        if name.startswith("Heuristics."):
            return ScanStatus.SUSPICIOUS, name, None
        return ScanStatus.INFECTED, name, None
    if reply.endswith("ERROR"):
        return ScanStatus.INCOMPLETE, None, reply[: -len("ERROR")].strip() or reply
    raise ScannerUnavailable(f"unexpected clamd reply ({len(reply)} chars)")


class _TimeoutClamdSocket(clamd.ClamdNetworkSocket):
    """clamd.ClamdNetworkSocket whose connect() also honours the timeout."""

    def _init_socket(self) -> None:
        # The package connects without a timeout, so a black-holed address
        # would hang for the kernel's SYN retry time.
        try:
            self.clamd_socket = socket.create_connection(
                (self.host, self.port), timeout=self.timeout
            )
        except OSError as exc:
            raise clamd.ConnectionError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc


class ClamdScanner:
    """A pool of clamd addresses; the first that answers scans the document."""

    def __init__(
        self,
        addresses: Sequence[str],
        timeout: float = 30.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        scan_timeout: float = 300.0,
        info_ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """addresses are "host:port"; timeout bounds connect/send; scan_timeout the verdict wait."""
        if not addresses:
            raise ValueError("ClamdScanner needs at least one address")
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.addresses = list(addresses)
        self._endpoints = [parse_address(a) for a in self.addresses]
        self.timeout = timeout
        self.chunk_size = chunk_size
        # clamd scans only after the last chunk; a 512 MiB PDF can take
        # minutes, bounded by MaxScanTime (300 s in infra/clamav).
        self.scan_timeout = scan_timeout
        self.info_ttl = info_ttl
        self._clock = clock
        self._info_cache: dict[str, tuple[float, ScannerInfo]] = {}
        self._lock = threading.Lock()

    def _client(self, address: str) -> _TimeoutClamdSocket:
        host, port = parse_address(address)
        return _TimeoutClamdSocket(host=host, port=port, timeout=self.timeout)

    def ping(self) -> bool:
        """True if any address answers PING with PONG."""
        for address in self.addresses:
            try:
                if self._client(address).ping() == "PONG":
                    return True
            except (clamd.ClamdError, OSError):
                continue
        return False

    def _info_for(self, address: str, *, fresh: bool = False) -> ScannerInfo:
        """VERSION of one address, cached for info_ttl seconds unless fresh."""
        now = self._clock()
        with self._lock:
            cached = self._info_cache.get(address)
        if not fresh and cached is not None and now - cached[0] < self.info_ttl:
            return cached[1]
        try:
            reply = self._client(address).version()
            info = parse_version(reply)
        except (clamd.ClamdError, OSError, ValueError) as exc:
            raise ScannerUnavailable(f"clamd {address}: VERSION failed: {exc}") from exc
        with self._lock:
            self._info_cache[address] = (now, info)
        return info

    def info(self) -> ScannerInfo:
        """Engine and signature version of the first address that answers (always asks)."""
        errors = []
        for address in self.addresses:
            try:
                # Never from cache: readiness checks rely on this reaching clamd.
                return self._info_for(address, fresh=True)
            except ScannerUnavailable as exc:
                errors.append(str(exc))
        raise ScannerUnavailable("; ".join(errors))

    def stream(self) -> ClamdStream:
        """Open an INSTREAM on the first address that accepts it."""
        errors = []
        for address, (host, port) in zip(self.addresses, self._endpoints, strict=True):
            try:
                info = self._info_for(address)
                sock = socket.create_connection((host, port), timeout=self.timeout)
            except (ScannerUnavailable, OSError) as exc:
                log.warning("clamd %s unavailable, trying next: %s", address, type(exc).__name__)
                errors.append(f"{address}: {exc}")
                continue
            try:
                # The last partial frame and the end marker must not wait on
                # Nagle for clamd's delayed ACK.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(b"zINSTREAM\0")
            except OSError as exc:
                sock.close()
                errors.append(f"{address}: {exc}")
                continue
            return ClamdStream(sock, address, info, self.chunk_size, self.scan_timeout)
        raise ScannerUnavailable("no clamd address accepted the scan: " + "; ".join(errors))


class ClamdStream:
    """One INSTREAM: chunks are framed as they come; the verdict comes at finish()."""

    def __init__(
        self,
        sock: socket.socket,
        address: str,
        info: ScannerInfo,
        chunk_size: int,
        scan_timeout: float,
    ) -> None:
        """Wrap a connected socket on which "zINSTREAM\\0" was already sent."""
        self._sock: socket.socket | None = sock
        self._io_timeout = sock.gettimeout()
        self.address = address
        self._info = info
        self._chunk_size = chunk_size
        self._scan_timeout = scan_timeout
        self._buffer = bytearray()
        # Set when clamd answers before the end of the stream (size limit).
        self._early_reply: str | None = None
        self._result: ScanResult | None = None
        self._ended = False
        self._terminated = False
        self.bytes_sent = 0
        self._opened = time.monotonic()

    def write(self, chunk: bytes) -> None:
        """Queue bytes; full chunk_size frames are sent to clamd immediately."""
        if self._result is not None:
            raise RuntimeError("write() after finish()")
        if self._early_reply is not None:
            # clamd already gave up; the caller learns the verdict at finish().
            return
        self._require_socket()
        view = memoryview(chunk).cast("B")
        size = self._chunk_size
        if self._buffer:
            take = min(len(view), size - len(self._buffer))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) < size:
                return
            self._send_frame(self._buffer)
            self._buffer = bytearray()
        while len(view) >= size and self._early_reply is None:
            self._send_frame(view[:size])
            view = view[size:]
        if view and self._early_reply is None:
            self._buffer += view

    def end_stream(self) -> None:
        """Send what is buffered and the end-of-stream marker; clamd starts scanning now.

        Separate from finish() so the caller can do other work (completing the
        S3 upload) while clamd scans, then collect the verdict.
        """
        if self._ended or self._result is not None:
            return
        self._ended = True
        if self._buffer:
            self._send_frame(self._buffer)
            self._buffer = bytearray()
        if self._early_reply is None:
            self._terminated = self._sendall(struct.pack("!L", 0))

    def finish(self) -> ScanResult:
        """End the stream if not yet done, and map clamd's reply to a ScanResult."""
        if self._result is not None:
            return self._result
        try:
            self.end_stream()
            if self._early_reply is None and self._terminated:
                reply = self._read_reply(self._scan_timeout)
                status, signature, detail = map_reply(reply)
            else:
                status, signature, detail = map_reply(self._early_reply or "")
                if status is ScanStatus.CLEAN:
                    # Only a verdict on the whole stream may be clean.
                    raise ScannerUnavailable(f"clamd {self.address}: OK before end of stream")
        finally:
            self.close()
        self._result = ScanResult(
            status=status,
            signature=signature,
            engine=self._info.engine,
            signature_version=self._info.signature_version,
            scanned_at=utc_now(),
            detail=detail,
        )
        metrics.SCAN_SECONDS.labels(status.value).observe(time.monotonic() - self._opened)
        if status is not ScanStatus.CLEAN:
            log.info("clamd %s verdict %s %s", self.address, status.value, signature or detail)
        return self._result

    def close(self) -> None:
        """Close the socket; an unfinished scan is simply abandoned."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send_frame(self, data: bytes | bytearray | memoryview) -> None:
        if self._early_reply is not None:
            return
        # clamd replies before the end only to refuse (size limit) and then
        # closes; noticing it here keeps us from writing into a dead socket.
        if self._reply_waiting():
            self._early_reply = self._read_reply(self._io_timeout)
            return
        # One send per frame: a separate 4-byte header costs a syscall and
        # a packet per chunk.
        if self._sendall(struct.pack("!L", len(data)) + bytes(data)):
            self.bytes_sent += len(data)

    def _sendall(self, data: bytes | bytearray | memoryview) -> bool:
        """Send; False if clamd ended the stream early with a reply we kept."""
        sock = self._require_socket()
        try:
            sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError) as exc:
            # On the size limit clamd writes its reply and closes, so our
            # next write fails; the reply may still be in our receive buffer.
            reply = self._salvage_reply()
            if reply == SIZE_LIMIT_REPLY:
                self._early_reply = reply
                return False
            self.close()
            raise ScannerUnavailable(f"clamd {self.address}: connection lost mid-stream") from exc
        except OSError as exc:  # includes TimeoutError
            self.close()
            raise ScannerUnavailable(f"clamd {self.address}: send failed: {exc}") from exc

    def _reply_waiting(self) -> bool:
        readable, _, _ = select.select([self._require_socket()], [], [], 0)
        return bool(readable)

    def _salvage_reply(self) -> str | None:
        try:
            return self._read_reply(timeout=1.0)
        except ScannerUnavailable:
            return None

    def _read_reply(self, timeout: float | None) -> str:
        sock = self._require_socket()
        sock.settimeout(timeout)
        data = bytearray()
        try:
            while b"\0" not in data and len(data) < MAX_REPLY_BYTES:
                piece = sock.recv(MAX_REPLY_BYTES)
                if not piece:
                    break
                data += piece
        except OSError as exc:  # timeout, reset
            self.close()
            raise ScannerUnavailable(f"clamd {self.address}: no reply: {exc}") from exc
        reply = bytes(data).split(b"\0", 1)[0].decode("utf-8", "replace").strip()
        if not reply:
            self.close()
            raise ScannerUnavailable(f"clamd {self.address}: empty reply")
        return reply

    def _require_socket(self) -> socket.socket:
        if self._sock is None:
            raise ScannerUnavailable(f"clamd {self.address}: stream is closed")
        return self._sock
