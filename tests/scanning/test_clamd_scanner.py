"""ClamdScanner against a real clamd started from infra/clamav (no mocks)."""

from __future__ import annotations

import io
import itertools
import socket
import threading
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.scanning import (
    EICAR,
    ClamdScanner,
    ScannerUnavailable,
    ScanStatus,
    parse_version,
    scan_bytes,
)
from gateway.scanning.clamd_scanner import map_reply
from infra.localstack.clamd import ClamdProcess
from infra.localstack.ports import find_free_port

TESTFILES = Path("/usr/share/clamav-testfiles")
EICAR_SIGNATURE = "Gateway.Test.EICAR.UNOFFICIAL"
MiB = 1024 * 1024


def make_pdf(payload: bytes) -> bytes:
    """A valid one-page PDF whose content stream (FlateDecode) carries payload."""
    content = b"BT /F1 12 Tf 72 720 Td (Records request) Tj ET\n% " + payload + b"\n"
    stream = zlib.compress(content)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
         b" /Resources << /Font << /F1 5 0 R >> >> >>"),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, xref))
    return out.getvalue()


def odd_chunks(total: int) -> Iterator[bytes]:
    """total bytes of harmless text in deliberately awkward chunk sizes."""
    block = b"Lorem ipsum dolor sit amet, records request gateway test data.\n" * 20000
    sizes = itertools.cycle([1, 7, 4093, 65537, 262143, 262145, 300001, MiB + 3])
    sent = 0
    while sent < total:
        size = min(next(sizes), total - sent, len(block))
        yield block[:size]
        sent += size


@pytest.fixture(scope="module")
def tiny_clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdProcess]:
    """A second clamd whose StreamMaxLength is 1 MiB."""
    with ClamdProcess(tmp_path_factory.mktemp("clamd-tiny"),
                      overrides={"StreamMaxLength": "1M"}) as process:
        yield process


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A listener that accepts connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_clean_bytes_are_clean(clamd_scanner):
    result = scan_bytes(clamd_scanner, b"Please send the records for the visit on file.\n")
    assert result.status is ScanStatus.CLEAN
    assert result.is_clean and result.signature is None
    assert result.engine.startswith("ClamAV ")
    assert result.scanned_at.tzinfo is not None


def test_eicar_is_infected(clamd_scanner):
    result = scan_bytes(clamd_scanner, EICAR)
    assert result.status is ScanStatus.INFECTED
    assert result.signature == EICAR_SIGNATURE
    assert not result.is_clean


def test_eicar_in_flatedecode_pdf_stream_is_infected(clamd_scanner):
    pdf = make_pdf(EICAR)
    assert EICAR not in pdf  # only found after clamd inflates the stream
    result = scan_bytes(clamd_scanner, pdf)
    assert (result.status, result.signature) == (ScanStatus.INFECTED, EICAR_SIGNATURE)
    assert scan_bytes(clamd_scanner, make_pdf(b"nothing to see")).is_clean


def test_eicar_inside_zip_is_infected(clamd_scanner):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("records/cover-letter.txt", EICAR)
    result = scan_bytes(clamd_scanner, buffer.getvalue())
    assert (result.status, result.signature) == (ScanStatus.INFECTED, EICAR_SIGNATURE)


def test_clamav_test_exe_is_infected(clamd_scanner):
    result = scan_bytes(clamd_scanner, (TESTFILES / "clam.exe").read_bytes())
    assert result.status is ScanStatus.INFECTED
    assert result.signature == "Gateway.Test.ClamAVTestFile.clam_exe.UNOFFICIAL"


@pytest.mark.parametrize("name", sorted(p.name for p in TESTFILES.glob("*")) or ["(none)"])
def test_every_clamav_testfile_is_infected(clamd_scanner, name):
    path = TESTFILES / name
    if not path.is_file():
        pytest.skip("clamav-testfiles not installed")
    result = scan_bytes(clamd_scanner, path.read_bytes())
    assert result.status is ScanStatus.INFECTED
    assert result.signature.startswith("Gateway.Test.ClamAVTestFile.")


def test_encrypted_pdf_is_suspicious(clamd_scanner):
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf(b"chart"))))
    writer.encrypt("user-password", "owner-password", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    result = scan_bytes(clamd_scanner, out.getvalue())
    assert (result.status, result.signature) == (ScanStatus.SUSPICIOUS, "Heuristics.Encrypted.PDF")


def test_broken_png_is_suspicious(clamd_scanner):
    truncated = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000064000000640806000000")
    result = scan_bytes(clamd_scanner, truncated)
    assert result.status is ScanStatus.SUSPICIOUS
    assert result.signature.startswith("Heuristics.Broken.Media.PNG")


def test_20_mb_in_odd_chunks_is_clean(clamd_scanner):
    total = 20 * MiB
    with clamd_scanner.stream() as scan:
        for chunk in odd_chunks(total):
            scan.write(chunk)
        result = scan.finish()
    assert result.status is ScanStatus.CLEAN
    assert scan.bytes_sent == total


def test_eicar_split_across_chunks_is_infected(clamd_scanner):
    with clamd_scanner.stream() as scan:
        scan.write(b"x" * (clamd_scanner.chunk_size - 10))
        for byte in EICAR:
            scan.write(bytes([byte]))
        result = scan.finish()
    assert result.signature == EICAR_SIGNATURE


@pytest.mark.parametrize("write_size", [64 * 1024, 4 * MiB])
def test_stream_over_stream_max_length_is_incomplete(tiny_clamd, write_size):
    scanner = ClamdScanner([tiny_clamd.address], timeout=10.0)
    with scanner.stream() as scan:
        for _ in range(8 * MiB // write_size):
            scan.write(b"\0" * write_size)
        result = scan.finish()
    assert result.status is ScanStatus.INCOMPLETE
    assert not result.is_clean
    assert result.detail == "INSTREAM size limit exceeded."


def test_stream_at_stream_max_length_is_scanned(tiny_clamd):
    scanner = ClamdScanner([tiny_clamd.address], timeout=10.0)
    assert scan_bytes(scanner, b"a" * MiB).is_clean


def test_stopped_clamd_is_unavailable(clamd_service, clamd_scanner):
    clamd_service.stop()
    with pytest.raises(ScannerUnavailable):
        clamd_scanner.stream()
    with pytest.raises(ScannerUnavailable):
        clamd_scanner.info()
    assert clamd_scanner.ping() is False


def test_clamd_killed_mid_stream_is_unavailable(clamd_service, clamd_scanner):
    with pytest.raises(ScannerUnavailable), clamd_scanner.stream() as scan:
        scan.write(b"a" * MiB)
        clamd_service.kill()
        for _ in range(16):
            scan.write(b"a" * MiB)
        scan.finish()


def test_pool_skips_dead_first_address(clamd_service):
    scanner = ClamdScanner([f"127.0.0.1:{find_free_port()}", clamd_service.address], timeout=5.0)
    result = scan_bytes(scanner, EICAR)
    assert result.signature == EICAR_SIGNATURE
    assert scanner.ping() is True
    assert scanner.info().engine.startswith("ClamAV ")


def test_pool_with_every_address_down_is_unavailable():
    scanner = ClamdScanner([f"127.0.0.1:{find_free_port()}", f"127.0.0.1:{find_free_port()}"])
    with pytest.raises(ScannerUnavailable):
        scan_bytes(scanner, b"hello")


def test_silent_server_times_out_as_unavailable(silent_server):
    scanner = ClamdScanner([silent_server], timeout=0.5, scan_timeout=0.5)
    with pytest.raises(ScannerUnavailable):
        scan_bytes(scanner, b"hello")
    with pytest.raises(ScannerUnavailable):
        scanner.info()


def test_info_reports_engine_and_version(clamd_scanner):
    info = clamd_scanner.info()
    assert info.engine.startswith("ClamAV 1.")
    # With only our databases clamd answers a bare "ClamAV x.y.z".
    if not list(Path("/var/lib/clamav").glob("*.c[vl]d")):
        assert info.signature_version is None and info.signature_date is None
    assert scan_bytes(clamd_scanner, b"x").engine == info.engine


def test_parse_version_with_official_databases():
    info = parse_version("ClamAV 1.0.9/27400/Mon Nov 23 09:30:00 2026")
    assert (info.engine, info.signature_version, info.signature_date) == (
        "ClamAV 1.0.9", "27400", "Mon Nov 23 09:30:00 2026")
    assert parse_version("ClamAV 1.4.6").signature_version is None
    with pytest.raises(ValueError):
        parse_version("UNKNOWN COMMAND")


@pytest.mark.parametrize("reply, expected", [
    ("stream: OK", (ScanStatus.CLEAN, None, None)),
    ("stream: Win.Test.EICAR_HDB-1 FOUND", (ScanStatus.INFECTED, "Win.Test.EICAR_HDB-1", None)),
    ("stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND",
     (ScanStatus.SUSPICIOUS, "Heuristics.Limits.Exceeded.MaxFileSize", None)),
    ("INSTREAM size limit exceeded. ERROR",
     (ScanStatus.INCOMPLETE, None, "INSTREAM size limit exceeded.")),
    ("stream: Can't allocate memory ERROR",
     (ScanStatus.INCOMPLETE, None, "stream: Can't allocate memory")),
])
def test_reply_mapping(reply, expected):
    assert map_reply(reply) == expected


@pytest.mark.parametrize("reply", ["", "PONG", "stream: OKAY", "stream:OK"])
def test_unexpected_replies_are_never_clean(reply):
    with pytest.raises(ScannerUnavailable):
        map_reply(reply)
