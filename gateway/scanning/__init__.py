"""Malware scanning (Scanner protocol, clamd adapter, fake), content sniffing and PDF checks."""

from gateway.scanning.clamd_scanner import ClamdScanner, ClamdStream, parse_version
from gateway.scanning.fake import EICAR, FakeScanner
from gateway.scanning.pdf import (
    PdfActiveContent,
    PdfCorrupt,
    PdfEncrypted,
    PdfPolyglot,
    PdfProblem,
    PdfReport,
    inspect_pdf,
)
from gateway.scanning.scanner import (
    Scanner,
    ScannerInfo,
    ScannerUnavailable,
    ScanResult,
    ScanStatus,
    ScanStream,
    scan_bytes,
)
from gateway.scanning.sniff import MAGIC_BYTES_NEEDED, sniff_content_type

__all__ = [
    "EICAR",
    "MAGIC_BYTES_NEEDED",
    "ClamdScanner",
    "ClamdStream",
    "FakeScanner",
    "PdfActiveContent",
    "PdfCorrupt",
    "PdfEncrypted",
    "PdfPolyglot",
    "PdfProblem",
    "PdfReport",
    "ScanResult",
    "ScanStatus",
    "ScanStream",
    "Scanner",
    "ScannerInfo",
    "ScannerUnavailable",
    "inspect_pdf",
    "parse_version",
    "scan_bytes",
    "sniff_content_type",
]
