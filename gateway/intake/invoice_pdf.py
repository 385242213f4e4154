"""The invoice as a PDF a law firm can file (fpdf2), from the invoice resource and configuration.

What it shows: the facility's payee and remittance address, the requester organization billed, the
requester's own reference (how a firm files it), the gateway's request and invoice ids, the invoice
date, the lines, the total, the status, the legal basis (M.G.L. c.111 §70 and the fee schedule applied),
and how to pay (check payable to the payee, or cash at the records office; quote the reference).

What it leaves out on purpose: the patient — name, date of birth, MRN —, the records' types and dates,
the sensitive categories, the delivery address, the authorization, the waiver reason and the dispute
note.  An invoice travels through accounts payable, clients and insurers; the reference is enough to
match it to the file, and anything more would be a disclosure beyond the minimum necessary
(45 CFR 164.502(b)).

Text is set in DejaVu Sans (Debian's fonts-dejavu-core, installed by the project), embedded as a subset,
so "§", dashes and any name print as typed; without it the PDF falls back to the built-in Helvetica and
characters outside Latin-1 are replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from gateway.intake.payees import Payee
from gateway.intake.release_models import dollars

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}
_STATUS_WORDS = {"due": "AMOUNT DUE", "paid": "PAID", "waived": "FEE WAIVED", "no_charge": "NO CHARGE"}
_FALLBACK_CHARS = str.maketrans({"–": "-", "—": "-", "’": "'", "‘": "'", "“": '"', "”": '"', "…": "..."})


@dataclass(frozen=True)
class InvoiceSheet:
    """Everything printed on the invoice (and nothing else)."""

    invoice: dict  # the invoice resource
    reference: str
    request_id: str
    facility_name: str
    payee: Payee
    bill_to: str
    schedule_effective_on: date
    payment: dict | None = None  # the payment resource, once paid


class _Pdf(FPDF):
    def __init__(self, font_dir: Path):
        super().__init__(format="letter")
        self.set_margins(20, 18, 20)
        self.set_auto_page_break(auto=True, margin=18)
        self.unicode = all((font_dir / name).is_file() for name in FONT_FILES.values())
        if self.unicode:
            for style, name in FONT_FILES.items():
                self.add_font("DejaVu", style, font_dir / name)
        self.family = "DejaVu" if self.unicode else "Helvetica"

    def text_of(self, value: object) -> str:
        text = "" if value is None else str(value)
        if self.unicode:
            return text
        return text.translate(_FALLBACK_CHARS).encode("latin-1", "replace").decode("latin-1")

    def line(self, text: object = "", *, size: float = 10, bold: bool = False, height: float = 5.2) -> None:
        self.set_font(self.family, "B" if bold else "", size)
        self.multi_cell(0, height, self.text_of(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def render_invoice(sheet: InvoiceSheet, *, font_dir: Path = FONT_DIR) -> bytes:
    """The invoice PDF's bytes."""
    invoice, payee = sheet.invoice, sheet.payee
    pdf = _Pdf(font_dir)
    pdf.set_title(pdf.text_of(f"Invoice {sheet.reference}"))
    pdf.set_author(pdf.text_of(payee.name))
    pdf.set_creator("Records Request Gateway")
    pdf.add_page()

    pdf.line(payee.name, size=15, bold=True, height=7)
    for text in (payee.department, *payee.address, f"Telephone {payee.phone}" if payee.phone else None):
        if text:
            pdf.line(text)
    pdf.ln(4)
    pdf.line("INVOICE — copies of medical records", size=13, bold=True, height=7)
    pdf.line(f"Status: {_STATUS_WORDS.get(invoice['status'], invoice['status'])}"
             + (" (disputed: under review by the records office)" if invoice.get("disputed") else ""), bold=True)
    pdf.ln(2)
    issued = invoice["issued_on"]
    facts = [("Your reference", sheet.reference), ("Bill to", sheet.bill_to), ("Facility", sheet.facility_name),
             ("Invoice date", issued.strftime("%B %-d, %Y") if isinstance(issued, date) else issued),
             ("Invoice number", invoice["id"]), ("Request", sheet.request_id)]
    if invoice.get("pages") is not None:
        facts.append(("Pages released", str(invoice["pages"])))
    pdf.set_font(pdf.family, "", 10)
    with pdf.table(col_widths=(38, 138), first_row_as_headings=False, borders_layout="NONE",
                   line_height=5.6) as table:
        for label, value in facts:
            row = table.row()
            row.cell(pdf.text_of(label))
            row.cell(pdf.text_of(value))
    pdf.ln(4)

    with pdf.table(col_widths=(92, 22, 28, 34), text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
                   line_height=6) as table:
        heading = table.row()
        for title in ("Description", "Quantity", "Rate", "Amount"):
            heading.cell(title)
        for item in invoice["lines"]:
            row = table.row()
            row.cell(pdf.text_of(item["label"]))
            row.cell(str(item["quantity"]))
            row.cell(dollars(item["rate"]))
            row.cell(dollars(item["amount"]))
    pdf.ln(2)
    total_label = "Total paid" if invoice["status"] == "paid" else "Total due"
    pdf.set_font(pdf.family, "B", 12)
    pdf.cell(0, 8, pdf.text_of(f"{total_label}: {dollars(invoice['amount'])} {invoice['currency']}"),
             align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    pdf.line(f"Basis: {invoice['basis']}. The fees do not exceed the maximum that section permits under the "
             f"schedule effective {sheet.schedule_effective_on.strftime('%B %-d, %Y')}, in force on the invoice "
             "date.", size=9)
    if invoice.get("status") == "no_charge" and invoice.get("reason"):
        pdf.line(invoice["reason"], size=9)
    pdf.ln(4)

    if invoice["status"] == "due":
        pdf.line("How to pay", size=11, bold=True, height=6)
        to = ", ".join(payee.address) if payee.address else "the address the records office gives you"
        pdf.line(f"By check payable to {payee.name}, mailed to {payee.department + ', ' if payee.department else ''}"
                 f"{to}; or in cash at the records office at the same address.")
        pdf.line(f"Write your reference {sheet.reference} and invoice number {invoice['id']} on the check or "
                 "give them with the cash. The records are released as soon as the payment is recorded.")
    elif invoice["status"] == "paid" and sheet.payment:
        paid = sheet.payment
        pdf.line(f"Paid by {paid['method']} (reference {paid['reference']}), "
                 f"recorded {paid['recorded_at'].strftime('%B %-d, %Y')}. Thank you.")
    else:
        pdf.line("Nothing is owed for these records.")
    return bytes(pdf.output())
