"""Malware scanning: the Scanner protocol, the clamd adapter and a fake."""

from gateway.scanning.clamd_scanner import ClamdScanner, ClamdStream, parse_version
from gateway.scanning.fake import EICAR, FakeScanner
from gateway.scanning.scanner import (
    Scanner,
    ScannerInfo,
    ScannerUnavailable,
    ScanResult,
    ScanStatus,
    ScanStream,
    scan_bytes,
)

__all__ = [
    "EICAR",
    "ClamdScanner",
    "ClamdStream",
    "FakeScanner",
    "ScanResult",
    "ScanStatus",
    "ScanStream",
    "Scanner",
    "ScannerInfo",
    "ScannerUnavailable",
    "parse_version",
    "scan_bytes",
]
