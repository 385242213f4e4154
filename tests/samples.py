"""Test documents built on the fly: valid, hostile and broken PDFs, images, archives, EICAR."""

from __future__ import annotations

import base64
import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

CLAMAV_TESTFILES = Path("/usr/share/clamav-testfiles")
_BINARY_COMMENT = b"%\xe2\xe3\xcf\xd3\n"  # tells transfer tools the file is binary
_CHUNK = 1024 * 1024


# --- building blocks -------------------------------------------------------

def _stream(data: bytes, entries: bytes = b"") -> bytes:
    """The body of a stream object holding data."""
    return b"<< /Length %d%s >>\nstream\n" % (len(data), entries) + data + b"\nendstream"


def _assemble(objects: list[bytes], *, root: int = 1, version: bytes = b"1.7") -> bytes:
    """Objects numbered 1..n, a classic xref table with exact offsets, trailer and %%EOF."""
    out = bytearray(b"%PDF-" + version + b"\n" + _BINARY_COMMENT)
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, root, xref)
    return bytes(out)


def _text_content(text: str, page: int) -> bytes:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    line = f"{escaped} ({page})" if page else escaped
    return b"BT /F1 24 Tf 72 720 Td (" + line.encode("latin-1") + b") Tj ET"


def _document(
    pages: int = 1,
    text: str = "hello",
    *,
    catalog_extra: bytes = b"",
    page_extra: bytes = b"",
    content: bytes | None = None,
    extras: tuple[bytes, ...] = (),
) -> list[bytes]:
    """Catalog (1), page tree (2), font (3), then a page (4, 6, ...) and its content (5, 7, ...) each.

    extras follow, numbered from first_extra(pages).
    """
    kids = b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R" + catalog_extra + b" >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i in range(pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >>"
            b" /Contents %d 0 R" % (5 + 2 * i) + page_extra + b" >>"
        )
        objects.append(content if content is not None else _stream(_text_content(text, i + 1 if pages > 1 else 0)))
    objects.extend(extras)
    return objects


def first_extra(pages: int = 1) -> int:
    """Number of the first extra object in a _document of that many pages."""
    return 4 + 2 * pages


# --- PDFs --------------------------------------------------------------------

def pdf_with(
    pages: int = 1,
    *,
    catalog_extra: bytes = b"",
    page_extra: bytes = b"",
    extras: tuple[bytes, ...] = (),
) -> bytes:
    """A minimal PDF with raw entries added to its catalog and every page; extras numbered from first_extra()."""
    return _assemble(_document(pages, catalog_extra=catalog_extra, page_extra=page_extra, extras=extras))


def minimal_pdf(pages: int = 1, text: str = "hello") -> bytes:
    """A valid PDF of `pages` pages showing text, with a correct xref table."""
    return _assemble(_document(pages, text))


def pdf_with_flate_stream(payload: bytes) -> bytes:
    """A one-page PDF whose content stream is payload, FlateDecode-compressed."""
    return _assemble(_document(content=_stream(zlib.compress(payload), b" /Filter /FlateDecode")))


def pdf_with_javascript(hex_escaped: bool = False) -> bytes:
    """Document-level JavaScript in the /Names tree; hex_escaped spells the names /J#61vaScript and /J#53."""
    js_name, js_key = (b"/J#61vaScript", b"/J#53") if hex_escaped else (b"/JavaScript", b"/JS")
    n = first_extra()
    return _assemble(
        _document(
            catalog_extra=b" /Names << " + js_name + b" << /Names [(init) %d 0 R] >> >>" % n,
            extras=(b"<< /S " + js_name + b" " + js_key + b" (app.alert\\(1\\);) >>",),
        )
    )


def pdf_with_open_action_js() -> bytes:
    """An /OpenAction that is a JavaScript action (indirect)."""
    n = first_extra()
    return _assemble(
        _document(
            catalog_extra=b" /OpenAction %d 0 R" % n,
            extras=(b"<< /Type /Action /S /JavaScript /JS (app.alert\\(1\\);) >>",),
        )
    )


def pdf_with_open_action_destination() -> bytes:
    """A benign /OpenAction: a destination array showing page 1 fitted."""
    return _assemble(_document(catalog_extra=b" /OpenAction [4 0 R /Fit]"))


def pdf_with_launch_action() -> bytes:
    """A link annotation on page 1 whose action launches a program."""
    n = first_extra()
    return _assemble(
        _document(
            page_extra=b" /Annots [%d 0 R]" % n,
            extras=(
                b"<< /Type /Annot /Subtype /Link /Rect [72 600 300 650] /Border [0 0 0]"
                b" /A << /S /Launch /F (cmd.exe) /NewWindow true >> >>",
            ),
        )
    )


def pdf_with_embedded_file() -> bytes:
    """An attachment in the /EmbeddedFiles name tree."""
    n = first_extra()
    return _assemble(
        _document(
            catalog_extra=b" /Names << /EmbeddedFiles << /Names [(note.txt) %d 0 R] >> >>" % n,
            extras=(
                b"<< /Type /Filespec /F (note.txt) /UF (note.txt) /EF << /F %d 0 R >> >>" % (n + 1),
                _stream(b"attached text\n", b" /Type /EmbeddedFile"),
            ),
        )
    )


def pdf_with_xfa() -> bytes:
    """An AcroForm carrying an XFA form (XML that viewers may script)."""
    n = first_extra()
    xdp = b'<xdp:xdp xmlns:xdp="http://ns.adobe.com/xdp/"><template/></xdp:xdp>'
    return _assemble(
        _document(catalog_extra=b" /AcroForm << /Fields [] /XFA %d 0 R >>" % n, extras=(_stream(xdp),))
    )


def pdf_with_js_in_object_stream() -> bytes:
    """PDF 1.5: catalog, pages and a JavaScript action inside a compressed object stream, xref stream."""
    packed = [  # objects 1-4, stored in object stream 6
        b"<< /Type /Catalog /Pages 2 0 R /Names << /JavaScript << /Names [(init) 4 0 R] >> >> >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 5 0 R >>",
        b"<< /S /JavaScript /JS (app.alert\\(1\\);) >>",
    ]
    header, body = bytearray(), bytearray()
    for number, obj in enumerate(packed, start=1):
        header += b"%d %d " % (number, len(body))
        body += obj + b"\n"
    objstm = zlib.compress(bytes(header + body))

    out = bytearray(b"%PDF-1.5\n" + _BINARY_COMMENT)
    offsets = {}
    for number, obj in (
        (5, _stream(b"BT /F1 24 Tf 72 720 Td (hello) Tj ET")),
        (6, _stream(objstm, b" /Type /ObjStm /N %d /First %d /Filter /FlateDecode" % (len(packed), len(header)))),
    ):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    offsets[7] = len(out)
    rows = [struct.pack(">BIH", 0, 0, 65535)]
    rows += [struct.pack(">BIH", 2, 6, index) for index in range(len(packed))]
    rows += [struct.pack(">BIH", 1, offsets[number], 0) for number in (5, 6, 7)]
    xref = _stream(zlib.compress(b"".join(rows)), b" /Type /XRef /Size 8 /W [1 4 2] /Root 1 0 R /Filter /FlateDecode")
    out += b"7 0 obj\n" + xref + b"\nendobj\nstartxref\n%d\n%%%%EOF\n" % offsets[7]
    return bytes(out)


def encrypted_pdf(user_password: str = "u", owner_password: str = "o") -> bytes:  # noqa: S107
    """A one-page PDF encrypted with pypdf's writer (a user password is needed to open it)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def owner_only_encrypted_pdf() -> bytes:
    """Encrypted with an empty user password: opens without a password, restrictions apply."""
    return encrypted_pdf(user_password="", owner_password="owner-only")


def truncated_pdf() -> bytes:
    """A three-page PDF cut in the middle (no %%EOF left)."""
    data = minimal_pdf(pages=3)
    return data[: len(data) // 2]


def pdf_with_truncated_update() -> bytes:
    """A valid PDF followed by the start of an incremental update that was cut off."""
    return minimal_pdf() + b"6 0 obj\n<< /Type /Annot /Subtype /Text /Rect [0 0 10 10] /Contents (cut"


def pdf_zip_polyglot() -> bytes:
    """A valid PDF with a ZIP archive appended (readers open both)."""
    return minimal_pdf() + zip_with("readme.txt", b"hello from the zip\n")


def write_pdf_zip_polyglot(path: str | os.PathLike[str], zip_mb: int) -> int:
    """Write a valid PDF followed by a stored ZIP of about zip_mb MB to path; returns its size."""
    with open(path, "wb") as fh:
        fh.write(minimal_pdf())
    # Mode "a" on a file that is not a ZIP appends a new archive at its end.
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as archive:
        with archive.open("payload.bin", "w", force_zip64=True) as member:
            block = b"ZIPDATA-" * (_CHUNK // 8)
            for _ in range(zip_mb):
                member.write(block)
    return os.path.getsize(path)


def write_large_pdf(path: str | os.PathLike[str], size_mb: int, page_image_kb: int = 1024) -> int:
    """Write a valid PDF of about size_mb MB to path, one random grey image per page; returns bytes written.

    Streams to disk as it goes (never the whole file in memory); each page's
    image XObject is page_image_kb KiB of unfiltered 8-bit grey pixels.
    """
    pages = max(1, size_mb * 1024 // page_image_kb)
    width, height = 1024, page_image_kb  # one KiB per row
    offsets: list[int] = []
    written = 0
    with open(path, "wb", buffering=_CHUNK) as fh:

        def put(data: bytes) -> None:
            nonlocal written
            fh.write(data)
            written += len(data)

        def begin(number: int) -> None:
            assert number == len(offsets) + 1
            offsets.append(written)
            put(b"%d 0 obj\n" % number)

        put(b"%PDF-1.7\n" + _BINARY_COMMENT)
        begin(1)
        put(b"<< /Type /Catalog /Pages 2 0 R >>\nendobj\n")
        begin(2)
        kids = b" ".join(b"%d 0 R" % (3 + 3 * i) for i in range(pages))
        put(b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>\nendobj\n" % pages)
        for i in range(pages):
            page, content, image = 3 + 3 * i, 4 + 3 * i, 5 + 3 * i
            begin(page)
            put(
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
                b" /Resources << /XObject << /Im0 %d 0 R >> >> /Contents %d 0 R >>\nendobj\n" % (image, content)
            )
            begin(content)
            put(_stream(b"q 612 0 0 792 0 0 cm /Im0 Do Q") + b"\nendobj\n")
            begin(image)
            size = width * height
            put(
                b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray"
                b" /BitsPerComponent 8 /Length %d >>\nstream\n" % (width, height, size)
            )
            while size:
                step = min(size, _CHUNK)
                put(os.urandom(step))
                size -= step
            put(b"\nendstream\nendobj\n")
        xref = written
        put(b"xref\n0 %d\n0000000000 65535 f \n" % (len(offsets) + 1))
        put(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
        put(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(offsets) + 1, xref))
    return written


# --- other formats -------------------------------------------------------------

def zip_with(name: str, payload: bytes) -> bytes:
    """A ZIP archive holding one deflated member."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, payload)
    return out.getvalue()


def eicar() -> bytes:
    """The 68-byte EICAR anti-virus test string (kept encoded so this file is not flagged)."""
    return base64.b64decode(
        b"WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo="
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes() -> bytes:
    """A valid 1x1 red RGB PNG."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit, truecolour
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte 0, then R G B
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def jpeg_bytes() -> bytes:
    """A valid 8x8 mid-grey baseline JPEG (one block; one-symbol Huffman tables)."""
    one_code = bytes([1] + [0] * 15)  # a single Huffman code of length 1 ("0")
    return (
        b"\xff\xd8"  # SOI
        + _jpeg_segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + _jpeg_segment(0xDB, b"\x00" + b"\x01" * 64)  # quantisation table 0, all ones
        + _jpeg_segment(0xC0, struct.pack(">BHHB", 8, 8, 8, 1) + b"\x01\x11\x00")  # baseline 8x8 grey
        + _jpeg_segment(0xC4, b"\x00" + one_code + b"\x00")  # DC table 0: symbol 0 (no difference)
        + _jpeg_segment(0xC4, b"\x10" + one_code + b"\x00")  # AC table 0: symbol 0x00 (end of block)
        + _jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")  # scan: component 1, tables 0/0
        + b"\x3f"  # bits "0" (DC 0) "0" (EOB), padded with ones
        + b"\xff\xd9"  # EOI
    )


def tiff_bytes() -> bytes:
    """A valid 1x1 8-bit greyscale, uncompressed, little-endian baseline TIFF."""
    entries = [  # (tag, type, count, value); type 3 = SHORT, 4 = LONG, 5 = RATIONAL
        (256, 3, 1, 1),  # ImageWidth
        (257, 3, 1, 1),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # PhotometricInterpretation: black is zero
        (273, 4, 1, 0),  # StripOffsets: patched below
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 3, 1, 1),  # RowsPerStrip
        (279, 4, 1, 1),  # StripByteCounts
        (282, 5, 1, 0),  # XResolution: patched below
        (283, 5, 1, 0),  # YResolution: patched below
        (296, 3, 1, 2),  # ResolutionUnit: inch
    ]
    ifd_offset = 8
    ifd_size = 2 + 12 * len(entries) + 4
    rational_offset = ifd_offset + ifd_size
    pixel_offset = rational_offset + 8
    ifd = bytearray(struct.pack("<H", len(entries)))
    for tag, kind, count, default in entries:
        value = default
        if tag == 273:
            value = pixel_offset
        elif tag in (282, 283):
            value = rational_offset  # both resolutions share one 72/1 rational
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)  # no next IFD
    return b"II*\x00" + struct.pack("<I", ifd_offset) + bytes(ifd) + struct.pack("<II", 72, 1) + b"\x80"


def windows_pe() -> bytes:
    """ClamAV's harmless test executable (a Windows PE, detected as Clamav.Test.File)."""
    return (CLAMAV_TESTFILES / "clam.exe").read_bytes()
