"""Content sniffing accepts PDF, TIFF, PNG and JPEG by magic bytes at offset 0, and nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.scanning import MAGIC_BYTES_NEEDED, sniff_content_type
from tests import samples

ACCEPTED = [
    pytest.param(samples.minimal_pdf(), "application/pdf", id="pdf"),
    pytest.param(samples.encrypted_pdf(), "application/pdf", id="encrypted-pdf"),
    # Sniffing only types the file; inspect_pdf is what refuses the polyglot.
    pytest.param(samples.pdf_zip_polyglot(), "application/pdf", id="pdf-zip-polyglot"),
    pytest.param(samples.tiff_bytes(), "image/tiff", id="tiff-le"),
    pytest.param(b"MM\x00*\x00\x00\x00\x08" + b"\x00" * 32, "image/tiff", id="tiff-be"),
    pytest.param(samples.png_bytes(), "image/png", id="png"),
    pytest.param(samples.jpeg_bytes(), "image/jpeg", id="jpeg"),
]

REFUSED = [
    pytest.param(samples.zip_with("a.txt", b"hello"), id="zip"),
    pytest.param(samples.windows_pe(), id="windows-pe"),
    pytest.param(b"<!DOCTYPE html><html><body>hi</body></html>", id="html"),
    pytest.param(samples.eicar(), id="eicar"),
    pytest.param(b" " + samples.minimal_pdf(), id="pdf-header-not-at-0"),
    pytest.param(b"\xef\xbb\xbf" + samples.minimal_pdf(), id="pdf-after-bom"),
    pytest.param(samples.zip_with("a.pdf", samples.minimal_pdf()), id="pdf-inside-zip"),
    pytest.param(b"%PDF", id="pdf-magic-cut"),
    pytest.param(b"\x89PNG\r\n\x1a", id="png-magic-cut"),
    pytest.param(b"\xff\xd8", id="jpeg-magic-cut"),
    pytest.param(b"II*", id="tiff-magic-cut"),
    pytest.param(b"II\x00*", id="tiff-mixed-order"),
    pytest.param(b"GIF89a\x01\x00\x01\x00", id="gif"),
    pytest.param(b"", id="empty"),
]


@pytest.mark.parametrize(("data", "expected"), ACCEPTED)
def test_accepted_types(data, expected):
    assert sniff_content_type(data) == expected
    assert sniff_content_type(data[:MAGIC_BYTES_NEEDED]) == expected


@pytest.mark.parametrize("data", REFUSED)
def test_everything_else_is_refused(data):
    assert sniff_content_type(data) is None
    assert sniff_content_type(data[:MAGIC_BYTES_NEEDED]) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("clam.exe", None),
        ("clam.zip", None),
        ("clam.7z", None),
        ("clam.tar.gz", None),
        ("clam.exe.html", None),
        ("clam.pdf", "application/pdf"),
    ],
)
def test_clamav_test_files(name, expected):
    with open(samples.CLAMAV_TESTFILES / name, "rb") as fh:
        assert sniff_content_type(fh.read(MAGIC_BYTES_NEEDED)) == expected


def test_magic_bytes_needed_covers_the_longest_signature():
    assert MAGIC_BYTES_NEEDED == 8
    png = samples.png_bytes()
    assert sniff_content_type(png[:MAGIC_BYTES_NEEDED]) == "image/png"
    assert sniff_content_type(png[: MAGIC_BYTES_NEEDED - 1]) is None


def test_buffer_types():
    pdf = samples.minimal_pdf()
    assert sniff_content_type(bytearray(pdf)) == "application/pdf"
    assert sniff_content_type(memoryview(pdf)) == "application/pdf"


@given(st.binary(max_size=64))
def test_only_offset_zero_counts(data):
    assert sniff_content_type(b"\x00" + data) is None
    result = sniff_content_type(data)
    assert result in {None, "application/pdf", "image/tiff", "image/png", "image/jpeg"}
    # Whatever follows the first MAGIC_BYTES_NEEDED bytes never changes the answer.
    assert sniff_content_type(data[:MAGIC_BYTES_NEEDED]) == result
