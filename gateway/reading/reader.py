"""The `Reader` protocol and its real implementation: pypdf's text layer, and Tesseract for scanned pages.

Two steps, because they cost very differently: `text_layer` is cheap and runs
during the upload (a PDF typed or printed to PDF carries its words); `ocr`
renders pages with PDFium and runs `tesseract` on them, seconds a page, so it
runs as a job.  Both are bounded: only the first `max_pages` pages, each page
rendered under `max_pixels` (scaled down rather than refused), each Tesseract
run under `page_timeout` seconds.  A page's words and their mean confidence
decide whether it is legible (`Thresholds`, chosen from docs/reading.md).
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

PDF = "application/pdf"
# A "word" is two or more letters or digits: stray marks and noise read as single characters do not count.
_WORD = re.compile(r"[^\W_]{2,}")


class ReadingFailed(Exception):
    """The document could not be read at all (damaged, or Tesseract failed or timed out on every page)."""


@dataclass(frozen=True)
class PageText:
    """One page's text (in memory only: it is PHI), its word count and OCR confidence (None: text layer)."""

    number: int
    text: str
    words: int
    confidence: float | None
    source: str  # "text" | "ocr"


@dataclass(frozen=True)
class Limits:
    """How much of a document is read: pages, seconds per page, pixels per rendered page, rendering dpi."""

    max_pages: int = 3
    page_timeout: float = 30.0
    max_pixels: int = 12_000_000
    dpi: int = 300


@dataclass(frozen=True)
class Thresholds:
    """When a page counts as legible: enough words, at a mean OCR confidence (0–100) high enough."""

    min_words: int = 40
    min_confidence: float = 60.0
    word_confidence: float = 60.0  # an OCR word counts toward min_words only at this confidence or above

    def legible(self, page: PageText) -> bool:
        """A text-layer page needs only the words; an OCR page the words and the confidence."""
        if page.words < self.min_words:
            return False
        return page.confidence is None or page.confidence >= self.min_confidence


def legible_pages(pages: list[PageText], thresholds: Thresholds) -> list[PageText]:
    """The pages that count as legible."""
    return [page for page in pages if thresholds.legible(page)]


def count_words(text: str) -> int:
    """Words of two or more letters or digits."""
    return len(_WORD.findall(text))


class Reader(Protocol):
    def text_layer(self, pdf_path: Path) -> list[PageText]:
        """The text layer of the first pages of a PDF (a page without one has 0 words)."""

    def ocr(self, data: bytes, content_type: str, *, skip: frozenset[int] = frozenset()) -> list[PageText]:
        """OCR of the first pages of a PDF or image, except the page numbers in `skip` (already read)."""


class TesseractReader:
    """pypdf for text layers, PDFium to render, `tesseract` (through pytesseract) to recognize."""

    def __init__(self, limits: Limits | None = None, *, language: str = "eng"):
        self.limits = limits or Limits()
        self.language = language
        # Tesseract's OpenMP threads contend with every other process on a small machine and make a page
        # several times slower; one thread per page is faster here (docs/reading.md, bench/reading.py).
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")

    @classmethod
    def from_settings(cls, settings) -> TesseractReader:
        """The reader with the settings' limits."""
        return cls(Limits(max_pages=settings.reading_max_pages, page_timeout=settings.reading_page_timeout,
                          max_pixels=settings.reading_max_pixels, dpi=settings.reading_dpi))

    def text_layer(self, pdf_path: Path) -> list[PageText]:
        """The text layer of the first `max_pages` pages."""
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError

        try:
            reader = PdfReader(str(pdf_path))
            pages = []
            for number, page in enumerate(reader.pages[: self.limits.max_pages], start=1):
                text = page.extract_text() or ""
                pages.append(PageText(number, text, count_words(text), None, "text"))
            return pages
        except (PyPdfError, ValueError, KeyError, TypeError, OSError) as error:
            raise ReadingFailed(type(error).__name__) from None

    def ocr(self, data: bytes, content_type: str, *, skip: frozenset[int] = frozenset()) -> list[PageText]:
        """Render and recognize the first `max_pages` pages not in `skip`."""
        pages = []
        for number, image in self._images(data, content_type, skip):
            pages.append(self._recognize(number, image))
        if not pages and not skip:
            raise ReadingFailed("no page")
        return pages

    def _images(self, data: bytes, content_type: str, skip: frozenset[int]):
        if content_type == PDF:
            yield from self._pdf_images(data, skip)
        else:
            yield from self._picture_frames(data, skip)

    def _pdf_images(self, data: bytes, skip: frozenset[int]):
        import pypdfium2

        try:
            document = pypdfium2.PdfDocument(data)
        except pypdfium2.PdfiumError as error:
            raise ReadingFailed(type(error).__name__) from None
        try:
            for index in range(min(len(document), self.limits.max_pages)):
                if index + 1 in skip:
                    continue
                page = document[index]
                width, height = page.get_size()  # points
                scale = self.limits.dpi / 72
                pixels = width * scale * height * scale
                if pixels > self.limits.max_pixels:  # an oversized page is read smaller, never refused
                    scale *= (self.limits.max_pixels / pixels) ** 0.5 * 0.995  # PDFium rounds sizes up
                yield index + 1, page.render(scale=scale, grayscale=True).to_pil()
                page.close()
        finally:
            document.close()

    def _picture_frames(self, data: bytes, skip: frozenset[int]):
        from PIL import Image, ImageSequence

        try:
            with Image.open(io.BytesIO(data)) as picture:
                # Decoding is what costs memory: a picture far past the limit is not decoded at all.
                if picture.width * picture.height > self.limits.max_pixels * 16:
                    raise ReadingFailed("image too large")
                for index, frame in enumerate(ImageSequence.Iterator(picture)):
                    if index >= self.limits.max_pages:
                        break
                    if index + 1 in skip:
                        continue
                    image = frame.convert("L")
                    factor = (self.limits.max_pixels / (image.width * image.height)) ** 0.5
                    if factor < 1:  # an oversized picture is read smaller, never refused
                        image = image.resize((int(image.width * factor), int(image.height * factor)))
                    yield index + 1, image
        except (OSError, Image.DecompressionBombError) as error:
            raise ReadingFailed(type(error).__name__) from None

    def _recognize(self, number: int, image) -> PageText:
        import pytesseract

        try:
            data = pytesseract.image_to_data(image, lang=self.language, output_type=pytesseract.Output.DICT,
                                             timeout=self.limits.page_timeout)
        except RuntimeError:  # pytesseract's timeout: the page counts as read, with nothing on it
            return PageText(number, "", 0, 0.0, "ocr")
        except pytesseract.TesseractError as error:
            raise ReadingFailed(f"tesseract {error.status}") from None
        return page_from_tesseract(number, data, word_confidence=Thresholds().word_confidence)


def page_from_tesseract(number: int, data: dict, *, word_confidence: float) -> PageText:
    """A page from Tesseract's TSV (image_to_data): its lines, the confident words, the mean confidence."""
    lines: dict[tuple, list[str]] = {}
    confidences: list[float] = []
    confident = 0
    for word, raw, block, par, line in zip(data["text"], data["conf"], data["block_num"], data["par_num"],
                                           data["line_num"], strict=False):
        conf = float(raw)
        if conf < 0 or not word.strip():
            continue
        lines.setdefault((block, par, line), []).append(word)
        confidences.append(conf)
        if conf >= word_confidence and _WORD.search(word):
            confident += 1
    text = "\n".join(" ".join(words) for words in lines.values())
    mean = sum(confidences) / len(confidences) if confidences else 0.0
    return PageText(number, text, confident, round(mean, 1), "ocr")
