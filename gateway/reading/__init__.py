"""Reading signed authorizations: the text a form carries, whether it is legible, and what it says.

A leaf like `scanning/`: `reader` turns a document's bytes into pages of text
(the PDF text layer through pypdf, scanned pages through Tesseract), and
`findings` compares that text with the typed request.  Neither touches the
database; `gateway.intake.readings` records what they conclude.  Text read
from a form is PHI: it lives in memory only, and nothing here logs it.
"""

from gateway.reading.findings import ADVISORY_CODES, Typed, check_form
from gateway.reading.reader import (
    Limits,
    PageText,
    Reader,
    ReadingFailed,
    TesseractReader,
    Thresholds,
    legible_pages,
)

__all__ = ["ADVISORY_CODES", "Limits", "PageText", "Reader", "ReadingFailed", "TesseractReader", "Thresholds",
           "Typed", "check_form", "legible_pages"]
