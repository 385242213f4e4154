"""A batch of create bodies and the outcome of each item."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime, new_id, utcnow

STATUSES = ("processing", "done")


class Batch(Base):
    """One `POST /v1/batches`: who sent it, its items (sealed until processed) and how far the job got."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    created_by: Mapped[str] = mapped_column(String(80))
    # The caller as the job acts for it (kind, id, org, roles: no secret) and the HTTP request's audit context.
    principal: Mapped[dict] = mapped_column(JSON)
    audit_ctx: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(12), default="processing")
    total: Mapped[int] = mapped_column(Integer)
    # Items handled so far: the job resumes here after a retry, so no item is created twice.
    processed: Mapped[int] = mapped_column(Integer, default=0)
    created_count: Mapped[int] = mapped_column(Integer, default=0)
    rejected_count: Mapped[int] = mapped_column(Integer, default=0)
    # The create bodies hold PHI: AES-GCM sealed (gateway.crypto, purpose "batch-items") and dropped once done.
    items_sealed: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BatchItem(Base):
    """What became of one item: the draft created, or why not (field errors; codes and messages, no PHI)."""

    __tablename__ = "batch_items"

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    request_id: Mapped[str | None] = mapped_column(ForeignKey("requests.id"), index=True)
    # The item's own reference (the requester's case number, no PHI), so a rejected row can be named.
    reference: Mapped[str | None] = mapped_column(String(100))
    errors: Mapped[list] = mapped_column(JSON, default=list)
