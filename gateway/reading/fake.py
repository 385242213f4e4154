"""A fake `Reader` for unit tests of the reading service: pages given up front, no pypdf, no Tesseract."""

from __future__ import annotations

from pathlib import Path

from gateway.reading.reader import PageText, ReadingFailed, count_words


class FakeReader:
    """Returns the pages it was given: `text_pages` for the text layer, `ocr_pages` for OCR (None: fails)."""

    def __init__(self, text_pages: list[str] | None = None, ocr_pages: list[tuple[str, float]] | None = None):
        self.text_pages = text_pages or []
        self.ocr_pages = ocr_pages
        self.ocr_calls = 0

    def text_layer(self, pdf_path: Path) -> list[PageText]:
        """The configured text layer, one PageText per string."""
        return [PageText(n, text, count_words(text), None, "text") for n, text in enumerate(self.text_pages, 1)]

    def ocr(self, data: bytes, content_type: str, *, skip: frozenset[int] = frozenset()) -> list[PageText]:
        """The configured OCR pages (text, confidence), except those in `skip`; raises when none are set."""
        self.ocr_calls += 1
        if self.ocr_pages is None:
            raise ReadingFailed("fake: unreadable")
        return [PageText(n, text, count_words(text), conf, "ocr")
                for n, (text, conf) in enumerate(self.ocr_pages, 1) if n not in skip]
