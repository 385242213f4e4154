"""A corpus of signed authorization forms, generated (never checked in): text PDFs and image-only scans.

`form_pdf` lays out a one-page HIPAA authorization as a records office receives it
(patient, date of birth, discloser, recipient, the three 164.508(c)(2)
statements, signature and expiry dates) with a text layer; `scan_pdf` renders
that page at 200 or 300 dpi through PDFium and degrades it as a fax or a phone
scan does (noise, a slight skew, JPEG artefacts, or a blur past reading) into
an image-only PDF.  Everything is deterministic (seeded), so the measured words
and confidences in docs/reading.md can be reproduced.  The bench uses it too.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, replace
from datetime import date

from fpdf import FPDF
from PIL import Image, ImageFilter

REVOCATION = ("I understand that I may revoke this authorization at any time by sending a written notice to the "
              "Health Information Management department, except to the extent that action has already been "
              "taken in reliance on it.")
CONDITIONING = ("I understand that my treatment, payment, enrollment in a health plan, or eligibility for "
                "benefits will not be conditioned on whether I sign this authorization.")
REDISCLOSURE = ("I understand that information disclosed under this authorization may be subject to "
                "redisclosure by the recipient and may no longer be protected by federal privacy law.")


@dataclass(frozen=True)
class Form:
    """What is printed on one form (the typed request may say otherwise: that is what the reader checks)."""

    first_name: str = "Ana"
    last_name: str = "Silva-Pereira"
    date_of_birth: date = date(1980, 2, 29)
    discloser: str = "Tufts Medical Center"
    recipient: str = "Smith & Jones LLP"
    signed_on: date = date(2026, 11, 2)
    expires_on: date = date(2027, 11, 2)
    statements: tuple[str, ...] = (REVOCATION, CONDITIONING, REDISCLOSURE)


CLEAN = Form()
OTHER_PATIENT = replace(CLEAN, first_name="Maria", last_name="Oliveira", date_of_birth=date(1975, 6, 14))
NO_REDISCLOSURE = replace(CLEAN, statements=(REVOCATION, CONDITIONING))
OTHER_SIGNATURE_DATE = replace(CLEAN, signed_on=date(2026, 10, 5))


def _us(day: date) -> str:
    return f"{day.month:02d}/{day.day:02d}/{day.year}"


def form_pdf(form: Form = CLEAN) -> bytes:
    """The form as a one-page PDF with a text layer (Helvetica, as office forms are)."""
    pdf = FPDF(format="letter")
    pdf.set_margins(20, 18, 20)
    pdf.set_auto_page_break(False)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(0, 9, "AUTHORIZATION FOR RELEASE OF PROTECTED HEALTH INFORMATION", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 11)
    pdf.ln(3)
    lines = [
        f"Patient name: {form.first_name} {form.last_name}",
        f"Date of birth: {_us(form.date_of_birth)}",
        f"I authorize: {form.discloser}",
        f"to release my health information to: {form.recipient}",
        "Information to be released: all medical records, including discharge summaries and test results.",
        "Purpose of the release: at the request of the individual.",
        f"This authorization expires on: {_us(form.expires_on)}",
    ]
    for line in lines:
        pdf.multi_cell(0, 7, line, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)
    pdf.ln(3)
    for statement in form.statements:
        pdf.multi_cell(0, 6, statement, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
    pdf.ln(6)
    pdf.multi_cell(0, 7, f"Signature of patient: {form.first_name} {form.last_name}", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 7, f"Date signed: {_us(form.signed_on)}", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def render(pdf: bytes, dpi: int) -> Image.Image:
    """The first page of `pdf` as a greyscale image at `dpi`."""
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    try:
        return document[0].render(scale=dpi / 72, grayscale=True).to_pil().convert("L")
    finally:
        document.close()


def degrade(image: Image.Image, *, seed: int, skew: float = 0.8, noise: float = 0.004, jpeg_quality: int = 35,
            blur: float = 0.0) -> Image.Image:
    """A scan's faults: salt-and-pepper noise, a slight rotation, optional blur, and JPEG artefacts."""
    rng = random.Random(seed)
    image = image.copy()
    pixels = image.load()
    width, height = image.size
    for _ in range(int(width * height * noise)):
        pixels[rng.randrange(width), rng.randrange(height)] = rng.choice((0, 255))
    image = image.rotate(skew, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=255)
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=jpeg_quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def image_pdf(image: Image.Image, dpi: int) -> bytes:
    """An image-only PDF (no text layer) of one scanned page, as a scanner writes it."""
    buffer = io.BytesIO()
    image.convert("L").save(buffer, format="PDF", resolution=float(dpi))
    return buffer.getvalue()


def scan_pdf(form: Form = CLEAN, *, dpi: int = 300, seed: int = 1, blur: float = 0.0) -> bytes:
    """The form printed, scanned at `dpi` with noise, skew and JPEG artefacts, as an image-only PDF."""
    return image_pdf(degrade(render(form_pdf(form), dpi), seed=seed, blur=blur), dpi)


# Blur radius (pixels at 300 dpi) that takes a page past reading: see docs/reading.md for the measurements.
BLUR_PAST_READING = 6.0


def dated(form: Form, signed_on: date, expires_on: date) -> Form:
    """The form signed and expiring on other days (integration tests date it from the clock's today)."""
    return replace(form, signed_on=signed_on, expires_on=expires_on)


def corpus() -> dict[str, bytes]:
    """Every corpus document by name (the names docs/reading.md uses)."""
    return {
        "text-clean": form_pdf(CLEAN),
        "text-other-patient": form_pdf(OTHER_PATIENT),
        "text-no-redisclosure": form_pdf(NO_REDISCLOSURE),
        "text-other-signature-date": form_pdf(OTHER_SIGNATURE_DATE),
        "scan-200dpi": scan_pdf(CLEAN, dpi=200, seed=2),
        "scan-300dpi": scan_pdf(CLEAN, dpi=300, seed=3),
        "scan-200dpi-other-patient": scan_pdf(OTHER_PATIENT, dpi=200, seed=4),
        "scan-300dpi-blurred": scan_pdf(CLEAN, dpi=300, seed=5, blur=BLUR_PAST_READING),
    }
