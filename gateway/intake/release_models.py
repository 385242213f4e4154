"""What release brings with it: the invoice and its payment (M.G.L. c.111 §70), and the disclosure record
(45 CFR 164.528) written when the records leave.

Money is kept in integer cents (exact on SQLite and PostgreSQL alike) and leaves as decimal strings.
A disclosure keeps the patient's identity only as the search needs it — names normalized the way the
release rules compare them, and the date of birth — in the database, never in a URL, a key or a log.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime, new_id, utcnow

INVOICE_STATUSES = ("due", "paid", "waived", "no_charge")
PAYMENT_METHODS = ("check", "cash", "card")
CURRENCY = "USD"


def to_cents(amount: Decimal) -> int:
    """A decimal amount of dollars (already to the cent) as integer cents."""
    return int((amount * 100).to_integral_value())


def from_cents(cents: int) -> str:
    """Integer cents as the API's decimal string ("228.57", "-12.00")."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


def dollars(amount: str | None) -> str:
    """A decimal-string amount as people read it: "1234.50" → "$1,234.50", "-12.00" → "-$12.00"."""
    if amount is None:
        return ""
    negative = amount.startswith("-")
    whole, _, cents = amount.lstrip("-").partition(".")
    return f"{'-' if negative else ''}${int(whole):,}.{cents or '00'}"


class Invoice(Base):
    """The one invoice of a request, issued by its facility's records staff."""

    __tablename__ = "invoices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # One invoice per request: the unique index settles a race the request's lock already prevents.
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), unique=True)
    status: Mapped[str] = mapped_column(String(12))
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), default=CURRENCY)
    # [{"label", "quantity", "rate", "amount"}], money as decimal strings.
    lines: Mapped[list] = mapped_column(JSON, default=list)
    pages: Mapped[int | None] = mapped_column(Integer)
    basis: Mapped[str] = mapped_column(String(80))
    # The fee schedule applied: the one in force on `issued_on`, the invoice date in the facilities' calendar.
    schedule_effective_on: Mapped[date] = mapped_column(Date)
    issued_on: Mapped[date] = mapped_column(Date)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    issued_by: Mapped[str] = mapped_column(String(80))
    # Why nothing is charged: the §70 no-charge reason (a fixed sentence) or the staff's waiver reason.
    waiver_reason: Mapped[str | None] = mapped_column(Text)
    no_charge_reason: Mapped[str | None] = mapped_column(Text)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disputed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    dispute_note: Mapped[str | None] = mapped_column(Text)
    disputed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def amount(self) -> str:
        """The amount due (or charged) as a decimal string."""
        return from_cents(self.amount_cents)

    def to_resource(self) -> dict:
        """The invoice resource (API.md v1.1 "Invoices and payment")."""
        resource = {"id": self.id, "amount": self.amount, "currency": self.currency, "lines": list(self.lines or []),
                    "basis": self.basis, "status": self.status, "pages": self.pages, "issued_on": self.issued_on,
                    "issued_at": self.issued_at, "paid_at": self.paid_at, "disputed": bool(self.disputed),
                    "reason": self.no_charge_reason or self.waiver_reason}
        if self.disputed:
            resource.update(dispute_note=self.dispute_note, disputed_at=self.disputed_at)
        return resource


class Payment(Base):
    """The payment that settled an invoice (the hospital takes cash or check; card where offered)."""

    __tablename__ = "payments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # One payment settles the invoice: a second one is refused, and the unique index backs that up.
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), unique=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    method: Mapped[str] = mapped_column(String(8))
    reference: Mapped[str] = mapped_column(String(100))
    amount_cents: Mapped[int] = mapped_column(Integer)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[str] = mapped_column(String(80))

    def to_resource(self) -> dict:
        """The payment resource."""
        return {"id": self.id, "invoice_id": self.invoice_id, "method": self.method, "reference": self.reference,
                "amount": from_cents(self.amount_cents), "currency": CURRENCY, "recorded_at": self.recorded_at}


class Disclosure(Base):
    """One release of records, for the patient's accounting of disclosures (45 CFR 164.528)."""

    __tablename__ = "disclosures"
    __table_args__ = (Index("ix_disclosures_dob_disclosed", "patient_date_of_birth", "disclosed_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # A request is released once (fulfilled is final), so it has at most one disclosure.
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), unique=True)
    disclosed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disclosed_by: Mapped[str] = mapped_column(String(80))
    facility: Mapped[str] = mapped_column(String(64), index=True)
    org_id: Mapped[str] = mapped_column(String(36))
    pathway: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(40))
    recipient: Mapped[dict] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(Text)
    purpose_statement: Mapped[str] = mapped_column(Text)
    # [{"id", "sha256", "pages"}] of the released documents.
    documents: Mapped[list] = mapped_column(JSON, default=list)
    # True where 164.528 puts the disclosure in the accounting (legal process); false when exempt
    # (a release under the patient's own 164.508 authorization), recorded all the same.
    accountable: Mapped[bool] = mapped_column(Boolean)
    # The patient, for search only: the date of birth and the name keys in `disclosure_names`.
    patient_date_of_birth: Mapped[date | None] = mapped_column(Date)

    def to_resource(self) -> dict:
        """The disclosure resource (API.md v1.1 "Accounting of disclosures"); no patient identity in it."""
        return {"id": self.id, "disclosed_at": self.disclosed_at, "request_id": self.request_id,
                "facility": self.facility, "pathway": self.pathway, "recipient": dict(self.recipient or {}),
                "description": self.description, "purpose_statement": self.purpose_statement,
                "documents": list(self.documents or []), "accountable": bool(self.accountable)}


class DisclosureName(Base):
    """A normalized name the patient of a disclosure goes by (the name on the request, and former names)."""

    __tablename__ = "disclosure_names"
    __table_args__ = (Index("ix_disclosure_names_key", "name_key", "disclosure_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    disclosure_id: Mapped[str] = mapped_column(ForeignKey("disclosures.id"), index=True)
    name_key: Mapped[str] = mapped_column(String(210))
