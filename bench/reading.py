"""Reading signed forms, pages per second: python -m bench.reading [--pages N].

Two paths of the gateway (gateway.reading.TesseractReader plus the findings check):
- text PDFs: the text layer through pypdf, as the upload reads it;
- 300 dpi scans (image-only PDFs with noise, skew and JPEG artefacts): PDFium renders, Tesseract recognizes,
  as the reading job does.
Each beside its raw floor measured in the same run on the same pages: the bare `tesseract` command on the
page already rendered to PNG (`tesseract page.png - tsv`, one thread as the gateway runs it).  The ratio is
gateway ÷ bare (above 1: faster than OCR-ing the page; below 1: the gateway's overhead over bare Tesseract).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

from gateway.reading import TesseractReader, Typed, check_form
from tests.reading import corpus

TYPED = Typed(patient_names=(("Ana", "Silva-Pereira"),), date_of_birth=date(1980, 2, 29),
              discloser_names=("Tufts Medical Center",), recipient_names=("Smith & Jones LLP",),
              signed_on=corpus.CLEAN.signed_on, expires_on=corpus.CLEAN.expires_on)


def bare_tesseract(pngs: list[Path]) -> float:
    """Seconds for the bare command over the rendered pages (TSV out, as pytesseract asks for)."""
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    started = time.perf_counter()
    for png in pngs:
        subprocess.run(["tesseract", str(png), "-", "tsv"], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    """Generate the pages, time each path and its floor, print pages/s and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=8, help="pages of each kind")
    args = parser.parse_args()
    reader = TesseractReader()
    with tempfile.TemporaryDirectory(prefix="bench-reading-") as workdir:
        folder = Path(workdir)
        texts, scans, pngs = [], [], []
        for n in range(args.pages):
            path = folder / f"text-{n}.pdf"
            path.write_bytes(corpus.form_pdf(corpus.CLEAN))
            texts.append(path)
            scans.append(corpus.scan_pdf(corpus.CLEAN, dpi=300, seed=100 + n))
            png = folder / f"scan-{n}.png"
            corpus.render(scans[-1], 300).save(png)
            pngs.append(png)
        text_png = folder / "text.png"
        corpus.render(corpus.form_pdf(corpus.CLEAN), 300).save(text_png)

        started = time.perf_counter()
        for path in texts:
            check_form(reader.text_layer(path), TYPED)
        text_seconds = time.perf_counter() - started
        text_floor = bare_tesseract([text_png] * args.pages)

        started = time.perf_counter()
        for pdf in scans:
            check_form(reader.ocr(pdf, "application/pdf"), TYPED)
        scan_seconds = time.perf_counter() - started
        scan_floor = bare_tesseract(pngs)

    print(f"{args.pages} pages of each kind; cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    print(f"{'path':40s} {'pages/s':>9s} {'bare tesseract pages/s':>23s} {'ratio':>7s}")
    for label, seconds, floor in (("text PDF (text layer, during upload)", text_seconds, text_floor),
                                  ("300 dpi scan (render + OCR, job)", scan_seconds, scan_floor)):
        print(f"{label:40s} {args.pages / seconds:9.2f} {args.pages / floor:23.2f} {floor / seconds:7.2f}")


if __name__ == "__main__":
    main()
