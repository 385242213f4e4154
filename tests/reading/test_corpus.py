"""The real reader (pypdf, PDFium, Tesseract) on the generated corpus: each document gets exactly its findings.

The corpus is generated once per session and read once per session (OCR costs about a second a page);
`-s` prints each page's words and confidence, the table docs/reading.md records.
"""

from __future__ import annotations

import shutil
from datetime import date

import pytest

from gateway.intake.readings import first_look
from gateway.intake.rules import DocumentFacts
from gateway.reading import Limits, TesseractReader, Thresholds, Typed, check_form, legible_pages
from tests.intake.test_rules_table import BASE_CTX
from tests.reading import corpus

pytestmark = [pytest.mark.one_database,
              pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs Debian's tesseract-ocr")]

THRESHOLDS = Thresholds()  # the settings' defaults: the thresholds docs/reading.md chose
TYPED = Typed(patient_names=(("Ana", "Silva-Pereira"),), date_of_birth=date(1980, 2, 29),
              discloser_names=("Tufts Medical Center",), recipient_names=("Smith & Jones LLP",),
              signed_on=date(2026, 11, 2), expires_on=date(2027, 11, 2))
EXPECTED = {
    "text-clean": (True, []),
    "text-other-patient": (True, ["FORM_PATIENT_NAME_NOT_FOUND", "FORM_DOB_NOT_FOUND"]),
    "text-no-redisclosure": (True, ["FORM_STATEMENT_NOT_FOUND"]),
    "text-other-signature-date": (True, ["FORM_DATE_MISMATCH"]),
    "scan-200dpi": (True, []),
    "scan-300dpi": (True, []),
    "scan-200dpi-other-patient": (True, ["FORM_PATIENT_NAME_NOT_FOUND", "FORM_DOB_NOT_FOUND"]),
    "scan-300dpi-blurred": (False, []),
}


@pytest.fixture(scope="session")
def readings(tmp_path_factory):
    """name → pages read, as the upload (text layer) or the job (OCR) would read them."""
    reader, out = TesseractReader(), {}
    folder = tmp_path_factory.mktemp("corpus")
    for name, pdf in corpus.corpus().items():
        path = folder / f"{name}.pdf"
        path.write_bytes(pdf)
        pages = first_look(reader, THRESHOLDS, "application/pdf", path)
        out[name] = pages if pages is not None else reader.ocr(pdf, "application/pdf")
    for name, pages in out.items():  # the measurements docs/reading.md records (seen with -s)
        for page in pages:
            print(f"{name} page {page.number}: {page.source} words={page.words} confidence={page.confidence}")
    return out


def test_the_corpus_is_the_one_expected():
    assert set(corpus.corpus()) == set(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_corpus_document_gets_exactly_its_findings(readings, name):
    legible, codes = EXPECTED[name]
    pages = readings[name]
    assert [p.source for p in pages] == ["text" if name.startswith("text") else "ocr"]
    good = legible_pages(pages, THRESHOLDS)
    assert bool(good) is legible
    assert [f["code"] for f in check_form(good, TYPED)] == codes


@pytest.mark.parametrize(("name", "deficiencies"), [("scan-300dpi-blurred", ["DOC_UNREADABLE"]),
                                                    ("scan-200dpi", []), ("text-clean", [])])
def test_the_rules_see_the_blurred_scan_unreadable_and_the_clean_ones_fine(readings, name, deficiencies):
    from dataclasses import replace

    from gateway.intake.rules import check_request
    from tests.intake.test_rules_table import body

    legible = bool(legible_pages(readings[name], THRESHOLDS))
    ctx = replace(BASE_CTX, documents=(DocumentFacts("authorization", "clean", legible),))
    assert [f.code for f in check_request(body({}), ctx)] == deficiencies


def test_a_page_larger_than_the_pixel_limit_is_rendered_smaller_not_refused():
    reader = TesseractReader(Limits(max_pixels=2_000_000, dpi=300))  # a Letter page at 300 dpi is 8.4 MP
    images = list(reader._pdf_images(corpus.form_pdf(corpus.CLEAN), frozenset()))
    assert len(images) == 1
    number, image = images[0]
    assert number == 1 and image.width * image.height <= 2_000_000
