"""inspect_pdf: trailer, encryption, active content and page count, in bounded memory."""

from __future__ import annotations

import io
import re
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.scanning import (
    PdfActiveContent,
    PdfCorrupt,
    PdfEncrypted,
    PdfPolyglot,
    PdfProblem,
    PdfReport,
    inspect_pdf,
)
from gateway.scanning import pdf as pdf_module
from tests import samples

MIB = 1024 * 1024


def inspect_bytes(tmp_path, data: bytes, name: str = "doc.pdf") -> PdfReport:
    path = tmp_path / name
    path.write_bytes(data)
    return inspect_pdf(path)


def problem(tmp_path, data: bytes) -> PdfProblem:
    with pytest.raises(PdfProblem) as caught:
        inspect_bytes(tmp_path, data)
    return caught.value


# --- accepted documents ----------------------------------------------------------

@pytest.mark.parametrize("pages", [1, 2, 3, 17])
def test_minimal_pdfs_report_their_page_count(tmp_path, pages):
    assert inspect_bytes(tmp_path, samples.minimal_pdf(pages=pages)) == PdfReport(pages=pages, version="1.7")


def test_accepts_str_and_path(tmp_path):
    path = tmp_path / "doc.pdf"
    path.write_bytes(samples.minimal_pdf(pages=2))
    assert inspect_pdf(str(path)).pages == inspect_pdf(path).pages == 2


def test_version_comes_from_the_header(tmp_path):
    data = samples.minimal_pdf().replace(b"%PDF-1.7", b"%PDF-1.4", 1)
    assert inspect_bytes(tmp_path, data).version == "1.4"
    assert inspect_bytes(tmp_path, data.replace(b"%PDF-1.4", b"%PDF-2.0", 1)).version == "2.0"


def test_unparseable_header_version_is_none(tmp_path):
    data = samples.minimal_pdf().replace(b"%PDF-1.7", b"%PDF-x.y", 1)
    assert inspect_bytes(tmp_path, data).version is None


def test_flate_stream_content_is_not_decoded(tmp_path):
    data = samples.pdf_with_flate_stream(samples.eicar())
    # The payload is only visible to a scanner that inflates PDF streams
    # (clamd does); the PDF check itself never decodes page content.
    assert samples.eicar() not in data
    assert inspect_bytes(tmp_path, data).pages == 1


def test_open_action_destination_is_allowed(tmp_path):
    data = samples.pdf_with_open_action_destination()
    assert b"/OpenAction [4 0 R /Fit]" in data
    assert inspect_bytes(tmp_path, data).pages == 1


def test_uri_link_is_allowed(tmp_path):
    n = samples.first_extra()
    data = samples.pdf_with(
        page_extra=b" /Annots [%d 0 R]" % n,
        extras=(b"<< /Type /Annot /Subtype /Link /Rect [0 0 9 9] /A << /S /URI /URI (https://example.org/) >> >>",),
    )
    assert inspect_bytes(tmp_path, data).pages == 1


@pytest.mark.parametrize("tail", [b"\r\n", b"\n\x00\x00\x00 \t\x0c\r\n", b"\x00" * (3 * 64 * 1024 + 7)])
def test_whitespace_after_eof_is_fine(tmp_path, tail):
    assert inspect_bytes(tmp_path, samples.minimal_pdf() + tail).pages == 1


def test_outline_cycle_does_not_hang(tmp_path):
    n = samples.first_extra()
    # Outline items pointing at each other in a loop, plus a dangling reference.
    data = samples.pdf_with(
        catalog_extra=b" /Outlines %d 0 R /Extra 999 0 R" % n,
        extras=(
            b"<< /Type /Outlines /First %d 0 R /Last %d 0 R /Count 2 >>" % (n + 1, n + 2),
            b"<< /Title (a) /Parent %d 0 R /Next %d 0 R /Prev %d 0 R /Dest [4 0 R /Fit] >>" % (n, n + 2, n + 2),
            b"<< /Title (b) /Parent %d 0 R /Next %d 0 R /Prev %d 0 R /Dest [4 0 R /Fit] >>" % (n, n + 1, n + 1),
        ),
    )
    assert inspect_bytes(tmp_path, data).pages == 1


def test_broken_content_and_resources_are_never_resolved(tmp_path):
    # The page's /Resources and /Contents point at undecodable garbage and at
    # an undefined object: the walk must not go there.
    n = samples.first_extra()
    data = samples.pdf_with(
        page_extra=b" /Thumb %d 0 R /PieceInfo << /X 404 0 R >>" % n,
        extras=(b"<< /Length 8 /Filter /FlateDecode /JS (x) >>\nstream\nnotzlib!\nendstream",),
    )
    assert inspect_bytes(tmp_path, data).pages == 1


def test_small_damaged_xref_is_repaired(tmp_path):
    data = _shift_xref_offsets(samples.minimal_pdf(pages=3))
    assert inspect_bytes(tmp_path, data).pages == 3


# --- refused documents -------------------------------------------------------------

@pytest.mark.parametrize(
    ("data", "feature"),
    [
        pytest.param(samples.pdf_with_javascript(), "/JavaScript", id="javascript"),
        pytest.param(samples.pdf_with_javascript(hex_escaped=True), "/JavaScript", id="javascript-hex-escaped"),
        pytest.param(samples.pdf_with_js_in_object_stream(), "/JavaScript", id="javascript-in-object-stream"),
        pytest.param(samples.pdf_with_open_action_js(), "/OpenAction", id="open-action-js"),
        pytest.param(samples.pdf_with_launch_action(), "/Launch", id="launch"),
        pytest.param(samples.pdf_with_embedded_file(), "/EmbeddedFiles", id="embedded-file"),
        pytest.param(samples.pdf_with_xfa(), "/XFA", id="xfa"),
    ],
)
def test_active_content_is_refused(tmp_path, data, feature):
    exc = problem(tmp_path, data)
    assert isinstance(exc, PdfActiveContent)
    assert (exc.code, exc.feature) == ("PDF_ACTIVE_CONTENT", feature)
    assert feature in str(exc)
    assert "alert" not in str(exc)  # no file content in the message


def test_hex_escaped_names_are_decoded(tmp_path):
    data = samples.pdf_with_javascript(hex_escaped=True)
    assert b"/JavaScript" not in data and b"/J#61vaScript" in data and b"/JS " not in data
    assert problem(tmp_path, data).feature == "/JavaScript"


def test_javascript_hidden_in_an_object_stream_is_found(tmp_path):
    data = samples.pdf_with_js_in_object_stream()
    assert b"JavaScript" not in data and b"/ObjStm" in data and b"/XRef" in data
    assert problem(tmp_path, data).feature == "/JavaScript"


def test_object_stream_sample_is_a_valid_pdf_without_the_script(tmp_path):
    data = samples.pdf_with_js_in_object_stream()
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 1
    assert reader.xref_objStm  # the catalog really lives in an object stream


@pytest.mark.parametrize(
    ("page_extra", "catalog_extra", "extras", "feature"),
    [
        pytest.param(b" /AA << /O %(n)d 0 R >>", b"", (b"<< /S /JavaScript /JS (x) >>",), "/AA", id="page-aa"),
        pytest.param(b"", b" /OpenAction << /S /GoTo /D [4 0 R /Fit] >>", (), "/OpenAction", id="open-action-goto"),
        pytest.param(
            b" /Annots [%(n)d 0 R]", b"",
            (b"<< /Type /Annot /Subtype /Widget /Rect [0 0 9 9] /A << /S /SubmitForm /F (https://x/) >> >>",),
            "/SubmitForm", id="submit-form",
        ),
        pytest.param(
            b"", b" /Outlines %(n)d 0 R",
            (b"<< /First %(m)d 0 R /Last %(m)d 0 R >>", b"<< /Title (x) /A << /S /ImportData /F (f.fdf) >> >>"),
            "/ImportData", id="outline-import-data",
        ),
        pytest.param(
            b" /Annots [%(n)d 0 R]", b"",
            (b"<< /Type /Annot /Subtype /FileAttachment /Rect [0 0 9 9] /FS (a.exe) >>",),
            "/FileAttachment", id="file-attachment",
        ),
        pytest.param(
            b" /Annots [%(n)d 0 R]", b"",
            (b"<< /Type /Annot /Subtype /RichMedia /Rect [0 0 9 9] >>",),
            "/RichMedia", id="rich-media",
        ),
        pytest.param(
            b"", b" /AcroForm << /Fields [%(n)d 0 R] >>",
            (b"<< /FT /Tx /T (name) /AA << /K << /S /JavaScript /JS (x) >> >> >>",),
            "/AA", id="form-field-keystroke",
        ),
        pytest.param(
            b"", b" /Names %(n)d 0 R",
            (b"<< /EmbeddedFiles %(m)d 0 R >>", b"<< /Names [(a) << /EF << /F 404 0 R >> >>] >>"),
            "/EmbeddedFiles", id="indirect-names",
        ),
        pytest.param(
            b" /Annots [%(n)d 0 R]", b"",
            (b"<< /Type /Annot /Subtype /Link /Rect [0 0 9 9] /A %(m)d 0 R >>",
             b"<< /S /GoTo /D [4 0 R /Fit] /Next [<< /S /URI /URI (x) >> << /S /Launch /F (x) >>] >>"),
            "/Launch", id="action-chain",
        ),
        pytest.param(
            b"", b" /Extra << /Inner [ << /Deep << /S /Launch >> >> ] >>", (), "/Launch", id="nested-direct",
        ),
    ],
)
def test_more_active_content(tmp_path, page_extra, catalog_extra, extras, feature):
    n = samples.first_extra()
    values = {b"n": n, b"m": n + 1}
    data = samples.pdf_with(
        page_extra=page_extra % values,
        catalog_extra=catalog_extra % values,
        extras=tuple(extra % values for extra in extras),
    )
    exc = problem(tmp_path, data)
    assert (exc.code, exc.feature) == ("PDF_ACTIVE_CONTENT", feature)


def test_clamav_test_pdf_with_attachment_is_refused():
    with pytest.raises(PdfActiveContent):
        inspect_pdf(samples.CLAMAV_TESTFILES / "clam.pdf")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(samples.encrypted_pdf(), id="user-password"),
        pytest.param(samples.owner_only_encrypted_pdf(), id="owner-only"),
    ],
)
def test_encrypted_pdfs_are_refused(tmp_path, data):
    exc = problem(tmp_path, data)
    assert isinstance(exc, PdfEncrypted)
    assert exc.code == "PDF_ENCRYPTED"


def test_encryption_pypdf_cannot_handle_is_still_encrypted(tmp_path):
    data = samples.minimal_pdf().replace(
        b"/Root 1 0 R >>", b"/Root 1 0 R /Encrypt << /Filter /Adobe.PubSec /SubFilter /adbe.pkcs7.s5 /V 4 >> >>"
    )
    assert problem(tmp_path, data).code == "PDF_ENCRYPTED"


def test_owner_only_sample_opens_without_a_password():
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(samples.owner_only_encrypted_pdf()))
    assert reader.is_encrypted
    assert len(reader.pages) == 1  # decrypted with the empty user password


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        pytest.param(samples.truncated_pdf(), PdfCorrupt, id="truncated"),
        pytest.param(samples.pdf_with_truncated_update(), PdfCorrupt, id="truncated-incremental-update"),
        pytest.param(samples.minimal_pdf() + b"\nxref\n0 1\n", PdfCorrupt, id="truncated-xref-after-eof"),
        pytest.param(samples.minimal_pdf() + b"trailer\n<< /Size 9", PdfCorrupt, id="truncated-trailer-after-eof"),
        pytest.param(samples.pdf_zip_polyglot(), PdfPolyglot, id="pdf-zip-polyglot"),
        pytest.param(samples.minimal_pdf() + b"<html><script>x</script></html>", PdfPolyglot, id="html-appended"),
        pytest.param(samples.minimal_pdf() + b"\x1a", PdfPolyglot, id="one-stray-byte"),
        pytest.param(b"GIF89a;" + samples.minimal_pdf(), PdfPolyglot, id="data-before-header"),
        pytest.param(samples.png_bytes(), PdfCorrupt, id="not-a-pdf"),
        pytest.param(b"", PdfCorrupt, id="empty"),
        pytest.param(b"%PDF-1.7\n%%EOF\n", PdfCorrupt, id="header-and-eof-only"),
        pytest.param(samples.pdf_with(pages=0), PdfCorrupt, id="no-pages"),
        pytest.param(samples.minimal_pdf().replace(b"/Root 1 0 R", b"/Rooo 1 0 R"), PdfCorrupt, id="no-root"),
    ],
)
def test_broken_and_polyglot_files(tmp_path, data, kind):
    exc = problem(tmp_path, data)
    assert type(exc) is kind
    assert exc.code == {PdfCorrupt: "FILE_CORRUPT", PdfPolyglot: "FILE_POLYGLOT"}[kind]


def test_error_codes_are_stable():
    assert [cls.code for cls in (PdfEncrypted, PdfActiveContent, PdfCorrupt, PdfPolyglot)] == [
        "PDF_ENCRYPTED", "PDF_ACTIVE_CONTENT", "FILE_CORRUPT", "FILE_POLYGLOT",
    ]
    assert all(issubclass(cls, PdfProblem) for cls in (PdfEncrypted, PdfActiveContent, PdfCorrupt, PdfPolyglot))
    assert PdfActiveContent("/JS").feature == "/JS"


def test_corrupt_message_does_not_quote_the_file(tmp_path):
    secret = b"PATIENT-NAME-DOE-JOHN"
    data = b"%PDF-1.7\n" + secret + b"\ntrailer << /Root " + secret + b" >>\n%%EOF\n"
    exc = problem(tmp_path, data)
    assert exc.code == "FILE_CORRUPT"
    assert "PATIENT" not in str(exc) and exc.__cause__ is None


# --- the trailer check -------------------------------------------------------------

def test_fifty_megabytes_appended_is_a_polyglot(tmp_path):
    path = tmp_path / "poly.pdf"
    size = samples.write_pdf_zip_polyglot(path, zip_mb=50)
    with open(path, "rb") as fh:
        eof = pdf_module._find_last_eof(fh, size)
    assert eof is not None and size - eof > 50 * MIB  # hundreds of chunks before the end
    with pytest.raises(PdfPolyglot):
        inspect_pdf(path)
    path.unlink()


@pytest.mark.parametrize("chunk_size", [5, 6, 7, 8, 13, 64])
def test_eof_marker_split_across_chunks_is_found(chunk_size):
    for before in range(3 * chunk_size):
        for after in range(2 * chunk_size):
            data = b"a" * before + b"%%EOF" + b"b" * after
            found = pdf_module._find_last_eof(io.BytesIO(data), len(data), chunk_size)
            assert found == before, (before, after)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b"%", b"%%", b"%%EOF", b"EOF", b"x", b"%%EO", b"F"]), max_size=40),
    st.integers(min_value=5, max_value=40),
)
def test_find_last_eof_matches_rfind(pieces, chunk_size):
    data = b"".join(pieces)
    expected = data.rfind(b"%%EOF")
    found = pdf_module._find_last_eof(io.BytesIO(data), len(data), chunk_size)
    assert found == (None if expected < 0 else expected)


# --- bounded memory ------------------------------------------------------------------

def test_large_scanned_pdf_is_checked_in_bounded_memory(tmp_path):
    path = tmp_path / "scan-200mb.pdf"
    written = samples.write_large_pdf(path, 200)
    assert written == path.stat().st_size > 200 * MIB
    tracemalloc.start()
    try:
        started = time.perf_counter()
        report = inspect_pdf(path)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        path.unlink()
    assert report == PdfReport(pages=200, version="1.7")
    print(f"inspect_pdf on {written / MIB:.0f} MiB: peak traced {peak / MIB:.2f} MiB, {elapsed:.3f} s (traced)")
    assert peak < 32 * MIB


def test_large_damaged_pdf_is_refused_not_loaded_whole(tmp_path):
    # pypdf repairs a damaged xref by reading the whole file; above MAX_READ
    # that is refused and the file is reported corrupt instead.
    path = tmp_path / "damaged-40mb.pdf"
    samples.write_large_pdf(path, 40)
    with open(path, "r+b") as fh:
        fh.seek(-64 * 1024, 2)
        tail_start = fh.tell()
        tail = _shift_xref_offsets(fh.read())
        fh.seek(tail_start)
        fh.write(tail)
    tracemalloc.start()
    try:
        with pytest.raises(PdfCorrupt):
            inspect_pdf(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        path.unlink()
    assert peak < 8 * MIB


def test_repair_limit_applies_to_small_files_too(tmp_path, monkeypatch):
    monkeypatch.setattr(pdf_module, "MAX_READ", 1024)
    exc = problem(tmp_path, _shift_xref_offsets(samples.minimal_pdf(pages=3)))
    assert exc.code == "FILE_CORRUPT"


def _shift_xref_offsets(data: bytes, delta: int = 3) -> bytes:
    """Point every xref entry a few bytes off, so pypdf has to search for the objects."""
    return re.sub(rb"(\d{10}) 00000 n ", lambda m: b"%010d 00000 n " % (int(m[1]) + delta), data)


# --- robustness ----------------------------------------------------------------------

FUZZ = settings(
    max_examples=150,
    deadline=2000,  # ms per example: a hang or a quadratic path fails the test
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_only_raise_pdf_problems(tmp_path, body):
    _inspect_never_crashes(tmp_path, b"%PDF-1.7\n" + body + b"%%EOF")


_TOKENS = st.sampled_from(
    [b"obj", b"endobj", b"stream\n", b"endstream", b"xref\n", b"trailer", b"startxref\n", b"<<", b">>", b"[", b"]",
     b"/Root", b"/Pages", b"/Kids", b"/Type", b"/Page", b"/Length", b"/Filter", b"/FlateDecode", b"/ObjStm",
     b"/XRef", b"/Encrypt", b"/JavaScript", b"/S", b"/OpenAction", b" 1 0 R", b" 2 0 R", b" 0 ", b" 99999999999 ",
     b"-1", b"(", b")", b"\\", b"#", b"%%EOF", b"\n", b" "]
)


@FUZZ
@given(st.lists(st.one_of(_TOKENS, st.binary(max_size=8)), max_size=200))
def test_random_pdf_tokens_only_raise_pdf_problems(tmp_path, tokens):
    _inspect_never_crashes(tmp_path, b"%PDF-1.7\n" + b"".join(tokens) + b"%%EOF")


@FUZZ
@given(st.data())
def test_mutated_pdfs_only_raise_pdf_problems(tmp_path, data):
    base = bytearray(data.draw(st.sampled_from([
        samples.minimal_pdf(pages=2),
        samples.pdf_with_js_in_object_stream(),
        samples.owner_only_encrypted_pdf(),
        samples.pdf_with_open_action_destination(),
    ])))
    for _ in range(data.draw(st.integers(min_value=1, max_value=8))):
        at = data.draw(st.integers(min_value=0, max_value=len(base) - 1))
        base[at : at + data.draw(st.integers(0, 4))] = data.draw(st.binary(max_size=4))
    _inspect_never_crashes(tmp_path, bytes(base))


def _inspect_never_crashes(tmp_path, data: bytes) -> None:
    try:
        report = inspect_bytes(tmp_path, data)
    except PdfProblem as exc:
        event(exc.code)
        assert exc.code in {"PDF_ENCRYPTED", "PDF_ACTIVE_CONTENT", "FILE_CORRUPT", "FILE_POLYGLOT"}
    else:
        event("accepted")
        assert report.pages >= 1
