"""The FORM_* findings on text, with the fake reader: tolerant names, US dates, statements, labelled dates."""

from __future__ import annotations

from datetime import date

import pytest

from gateway.reading import PageText, Thresholds, Typed, check_form
from gateway.reading.fake import FakeReader
from gateway.reading.findings import dates_in
from gateway.reading.reader import count_words, page_from_tesseract
from tests.reading import corpus

TYPED = Typed(patient_names=(("Ana", "Silva-Pereira"),), date_of_birth=date(1980, 2, 29),
              discloser_names=("Tufts Medical Center", "Tufts MC", "Tufts Medicine"),
              recipient_names=("Smith and Jones, L.L.P.",), signed_on=date(2026, 11, 2), expires_on=date(2027, 11, 2))


def page(text: str, number: int = 1, confidence: float | None = None) -> PageText:
    return PageText(number, text, count_words(text), confidence, "ocr" if confidence is not None else "text")


def form_text(**changes) -> str:
    lines = {
        "name": "Patient name: Ana Silva-Pereira", "dob": "Date of birth: 02/29/1980",
        "discloser": "I authorize: Tufts Medical Center", "recipient": "to: Smith & Jones LLP",
        "expires": "This authorization expires on: 11/02/2027", "revoke": corpus.REVOCATION,
        "condition": corpus.CONDITIONING, "redisclose": corpus.REDISCLOSURE, "signed": "Date signed: 11/02/2026",
    }
    lines.update(changes)
    return "\n".join(v for v in lines.values() if v)


def codes(text: str, typed: Typed = TYPED) -> list[str]:
    return [f["code"] for f in check_form([page(text)], typed)]


def test_a_matching_form_has_no_findings():
    assert codes(form_text()) == []


@pytest.mark.parametrize("name", ["PATIENT NAME: ANA SILVA PEREIRA", "Patient: Silva-Pereira, Ana",
                                  "Patient name: Ána Sílva-Pereira", "Patient name: Ana Si1va-Pere1ra",
                                  "Patient name: Ana SiIva-Pereira", "Patient name: Ana Silva-Pereirra"])
def test_names_are_matched_as_a_clerk_would(name):
    assert codes(form_text(name=name)) == []


@pytest.mark.parametrize("name", ["Patient name: Maria Oliveira", "Patient name: Ana Silva", "Patient name: Ana"])
def test_another_or_a_partial_name_is_not_the_patient(name):
    assert codes(form_text(name=name)) == ["FORM_PATIENT_NAME_NOT_FOUND"]


def test_other_names_count():
    typed = Typed(**{**TYPED.__dict__, "patient_names": (("Ana", "Silva-Pereira"), ("Ana Costa", ""))})
    assert codes(form_text(name="Patient name: Ana Costa"), typed) == []


@pytest.mark.parametrize("written", ["02/29/1980", "2/29/80", "02-29-1980", "1980-02-29", "February 29, 1980",
                                     "Feb. 29 1980", "O2/29/198O", "02 / 29 / 1980"])
def test_dates_of_birth_in_the_usual_us_forms(written):
    assert dates_in(f"Date of birth: {written}") == [date(1980, 2, 29)]
    assert codes(form_text(dob=f"Date of birth: {written}")) == []


def test_a_different_date_of_birth_is_not_found():
    assert codes(form_text(dob="Date of birth: 03/01/1980")) == ["FORM_DOB_NOT_FOUND"]


@pytest.mark.parametrize("discloser", ["I authorize: TUFTS MEDICAL CENTER", "I authorize: Tufts MC",
                                       "I authorize: Tufts Medicine", "I authorize: The Tufts Medical Center, Inc."])
def test_the_discloser_matches_any_name_the_rules_accept(discloser):
    assert codes(form_text(discloser=discloser)) == []


def test_another_discloser_and_recipient_are_found_missing():
    text = form_text(discloser="I authorize: Lowell General Hospital", recipient="to: Doe Insurance Co.")
    assert codes(text) == ["FORM_DISCLOSER_NOT_FOUND", "FORM_RECIPIENT_NOT_FOUND"]


def test_each_missing_statement_is_one_finding_naming_it():
    found = check_form([page(form_text(redisclose=None, condition=None))], TYPED)
    assert [(f["code"], f["field"]) for f in found] == [
        ("FORM_STATEMENT_NOT_FOUND", "authorization.statements.no_conditioning"),
        ("FORM_STATEMENT_NOT_FOUND", "authorization.statements.redisclosure")]
    assert "redisclosure" in found[1]["message"]


def test_a_statement_the_request_does_not_claim_is_not_looked_for():
    typed = Typed(**{**TYPED.__dict__, "statements": ("right_to_revoke", "no_conditioning")})
    assert codes(form_text(redisclose=None), typed) == []


def test_a_different_signature_date_is_a_mismatch_with_its_page():
    pages = [page(form_text(signed=None)), page("Signature: Ana Silva-Pereira\nDate signed: 10/05/2026", 2)]
    found = check_form(pages, TYPED)
    assert [(f["code"], f["field"], f["page"]) for f in found] == [
        ("FORM_DATE_MISMATCH", "authorization.signed_on", 2)]


def test_a_different_expiry_date_is_a_mismatch():
    assert codes(form_text(expires="Expiration date: 12/31/2027")) == ["FORM_DATE_MISMATCH"]


def test_findings_never_quote_the_form():
    text = form_text(name="Patient name: Maria Oliveira", dob="Date of birth: 06/14/1975")
    for finding in check_form([page(text)], TYPED):
        assert "Maria" not in str(finding) and "1975" not in str(finding)


def test_legibility_thresholds():
    thresholds = Thresholds(min_words=40, min_confidence=60)
    assert thresholds.legible(page(form_text()))
    assert not thresholds.legible(page("hello"))
    assert thresholds.legible(page(form_text(), confidence=90))
    assert not thresholds.legible(page(form_text(), confidence=30))


def test_tesseract_tsv_gives_lines_confident_words_and_mean_confidence():
    data = {"text": ["", "Patient", "name:", "Ana", "x"], "conf": ["-1", "95", "90", "40", "20"],
            "block_num": [1, 1, 1, 1, 2], "par_num": [1, 1, 1, 1, 1], "line_num": [1, 1, 1, 1, 1]}
    result = page_from_tesseract(1, data, word_confidence=60)
    assert result.text == "Patient name: Ana\nx"
    assert result.words == 2 and result.confidence == 61.2


def test_fake_reader_skips_pages_read_from_the_text_layer():
    reader = FakeReader(ocr_pages=[("one two", 90.0), ("three four", 80.0)])
    assert [p.number for p in reader.ocr(b"", "application/pdf", skip=frozenset({1}))] == [2]


def test_a_picture_larger_than_the_pixel_limit_is_read_smaller():
    import io as _io

    from PIL import Image

    from gateway.reading import Limits, TesseractReader

    buffer = _io.BytesIO()
    Image.new("L", (3000, 2000), 255).save(buffer, format="PNG")
    reader = TesseractReader(Limits(max_pixels=1_000_000))
    [(number, image)] = list(reader._picture_frames(buffer.getvalue(), frozenset()))
    assert number == 1 and image.width * image.height <= 1_000_000
