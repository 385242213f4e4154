"""FakeScanner honours the Scanner protocol the services are written against."""

from __future__ import annotations

import pytest

from gateway.scanning import (
    EICAR,
    FakeScanner,
    ScannerUnavailable,
    ScanStatus,
    scan_bytes,
)


def test_clean_and_infected():
    scanner = FakeScanner()
    assert scan_bytes(scanner, b"hello").is_clean
    result = scan_bytes(scanner, b"head" + EICAR + b"tail")
    assert (result.status, result.signature) == (ScanStatus.INFECTED, "Fake.Test.EICAR")
    assert [r.status for r in scanner.results] == [ScanStatus.CLEAN, ScanStatus.INFECTED]


def test_marker_split_across_writes_is_found():
    with FakeScanner().stream() as scan:
        for byte in EICAR:
            scan.write(bytes([byte]))
        assert scan.finish().status is ScanStatus.INFECTED


def test_suspicious_and_incomplete():
    scanner = FakeScanner(suspicious_markers=[b"/Encrypt"], max_bytes=10)
    assert scan_bytes(scanner, b"/Encrypt").status is ScanStatus.SUSPICIOUS
    assert scan_bytes(scanner, b"x" * 11).status is ScanStatus.INCOMPLETE


def test_unavailable_before_and_mid_stream():
    scanner = FakeScanner(unavailable=True)
    with pytest.raises(ScannerUnavailable):
        scanner.stream()
    with pytest.raises(ScannerUnavailable):
        scanner.info()
    scanner.unavailable = False
    with scanner.stream() as scan:
        scan.write(b"part one")
        scanner.unavailable = True
        with pytest.raises(ScannerUnavailable):
            scan.finish()
