"""Records requests, their timeline, documents and rejected uploads."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String, Text, false, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gateway.db import Base, UTCDateTime, new_id, utcnow

STATUSES = ("draft", "submitted", "routed", "in_progress", "on_hold", "awaiting_payment", "fulfilled", "returned",
            "denied", "cancelled")
# A reference is unique per organization and facility only among requests still open (the requests of one
# group share their reference: API.md "Conventions added").
CLOSED_STATUSES = ("fulfilled", "denied", "cancelled")
_OPEN = text("status NOT IN ('fulfilled', 'denied', 'cancelled')")
# "The request is open", for queries that must use uq_requests_open_reference: the very text of its predicate.
# Written with bound parameters (`status.not_in(CLOSED_STATUSES)`), SQLite cannot prove the query implies the
# partial index's WHERE and scans every request of the organization instead.
OPEN_REQUEST = _OPEN
DOCUMENT_KINDS = ("authorization", "representative_authority", "letters_of_authority", "subpoena", "court_order",
                  "satisfactory_assurances", "death_certificate", "supporting", "release")


class RequestGroup(Base):
    """One patient's request to several facilities: a request per facility, created together (API.md v1.1)."""

    __tablename__ = "request_groups"
    __table_args__ = (Index("ix_request_groups_org_created", "org_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    reference: Mapped[str] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RecordsRequest(Base):
    """One request for a patient's records, from a requester organization to a facility."""

    __tablename__ = "requests"
    __table_args__ = (
        Index("uq_requests_open_reference", "org_id", "facility", "reference", unique=True,
              postgresql_where=_OPEN, sqlite_where=_OPEN),
        Index("ix_requests_org_created", "org_id", "created_at", "id"),
        Index("ix_requests_facility_status", "facility", "status"),
        # The daily stale-work sweep: drafts and returned requests by how long they have been untouched.
        Index("ix_requests_status_updated", "status", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    created_by: Mapped[str] = mapped_column(String(80))
    reference: Mapped[str] = mapped_column(String(100))
    # The group it was created in with the same patient's requests to other facilities (None: on its own).
    group_id: Mapped[str | None] = mapped_column(ForeignKey("request_groups.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="draft")
    # +1 on every change (status, body, documents, assignment): the resource's ETag, checked by If-Match.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Why an on_hold request is held; AUTH_REVOKED leaves the hold only as returned or denied.
    hold_reason: Mapped[str | None] = mapped_column(String(40))
    facility: Mapped[str] = mapped_column(String(64))
    pathway: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(40))
    # The body's sections as submitted; PHI lives here and nowhere else (not in keys, logs or queues).
    practice: Mapped[dict | None] = mapped_column(JSON)
    patient: Mapped[dict] = mapped_column(JSON)
    records: Mapped[dict] = mapped_column(JSON)
    delivery: Mapped[dict] = mapped_column(JSON)
    authorization: Mapped[dict | None] = mapped_column(JSON)
    legal_process: Mapped[dict | None] = mapped_column(JSON)
    public_benefit_claim: Mapped[bool] = mapped_column(Boolean, default=False)
    fee_waiver_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    instructions: Mapped[str | None] = mapped_column(Text)
    deficiencies: Mapped[list] = mapped_column(JSON, default=list)
    fee_estimate: Mapped[dict | None] = mapped_column(JSON)
    due_on: Mapped[date | None] = mapped_column(Date)
    # Which clock set due_on at submission (RULES.md §9): facility_target | hipaa_access | legal_process,
    # and the rule it cites.  Staff may extend the HIPAA access clock once, by 30 days, with a written reason.
    due_basis: Mapped[str | None] = mapped_column(String(20))
    due_rule: Mapped[str | None] = mapped_column(String(200))
    due_extended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_extension_reason: Mapped[str | None] = mapped_column(Text)
    routing_queue: Mapped[str | None] = mapped_column(String(80))
    routed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    assigned_to: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    documents: Mapped[list[Document]] = relationship(
        back_populates="request", order_by="Document.uploaded_at", lazy="selectin")


class RequestEvent(Base):
    """One entry of a request's timeline: a status change or something that happened to it."""

    __tablename__ = "request_events"
    __table_args__ = (Index("ix_request_events_request_at", "request_id", "at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    type: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(80))
    # Codes, reasons and ids only; free text from staff is kept but never PHI we put there.
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    # Entries the requester must not see (a release uploaded or withdrawn before the request is fulfilled).
    staff_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Document(Base):
    """A clean, stored document of a request; only promoted (scanned clean) objects get a row."""

    __tablename__ = "documents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    pages: Mapped[int | None] = mapped_column(Integer)
    # documents/<uuid>: random, never derived from anything the requester sent.  Not unique: a document
    # uploaded once to a request group is one stored object with a row in each of the group's requests.
    storage_key: Mapped[str] = mapped_column(String(120), index=True)
    scan_status: Mapped[str] = mapped_column(String(20))
    scan_engine: Mapped[str] = mapped_column(String(100))
    scan_signature_version: Mapped[str | None] = mapped_column(String(100))
    scanned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    uploaded_by: Mapped[str] = mapped_column(String(80))
    # The reading of a signed authorization or proof of authority (gateway.intake.readings): None for other
    # kinds; "pending" while a job OCRs it, then "done" or "failed".  Only the findings are kept, never text.
    reading_status: Mapped[str | None] = mapped_column(String(10))
    reading_legible: Mapped[bool | None] = mapped_column(Boolean)
    reading_confidence: Mapped[int | None] = mapped_column(Integer)
    reading_pages: Mapped[int | None] = mapped_column(Integer)
    reading_findings: Mapped[list | None] = mapped_column(JSON)

    request: Mapped[RecordsRequest] = relationship(back_populates="documents")

    @property
    def reading(self) -> dict | None:
        """The document resource's `reading` (API.md "Reading the authorization"), or None when not read."""
        if self.reading_status is None:
            return None
        return {"status": self.reading_status, "legible": self.reading_legible,
                "confidence": self.reading_confidence, "pages_read": self.reading_pages,
                "findings": list(self.reading_findings or [])}


class RejectedUpload(Base):
    """An upload refused for malware: never stored, but its hash, signature and uploader are kept."""

    __tablename__ = "rejected_uploads"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    kind: Mapped[str | None] = mapped_column(String(40))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    signature: Mapped[str] = mapped_column(String(200))
    uploaded_by: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)



class Revocation(Base):
    """A patient's revocation of authorizations for a recipient, from a date (45 CFR 164.508(b)(5))."""

    __tablename__ = "revocations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_first_name: Mapped[str] = mapped_column(String(100))
    patient_last_name: Mapped[str] = mapped_column(String(100))
    patient_date_of_birth: Mapped[date] = mapped_column(Date, index=True)
    recipient: Mapped[str] = mapped_column(String(200))
    effective_on: Mapped[date] = mapped_column(Date)
    facility: Mapped[str | None] = mapped_column(String(64))
    # The patient's written revocation, when it was uploaded as a document.
    document_id: Mapped[str | None] = mapped_column(String(36))
    recorded_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
