"""The transactional outbox, the record of job effects, and facility sink configuration."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime, utcnow


class OutboxMessage(Base):
    """Work to publish to RQ, written in the same transaction as the change that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    queue: Mapped[str] = mapped_column(String(80))
    at_front: Mapped[bool] = mapped_column(Boolean, default=False)
    # pending → claimed (by one relay, until claim_expires_at) → sent.
    state: Mapped[str] = mapped_column(String(12), default="pending")
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(120))
    job_id: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def step(self) -> str:
        """What a consumer deduplicates on: this message, whichever job delivers it."""
        return f"{self.queue}#{self.id}"


class JobEffect(Base):
    """A consumer's effect, recorded once: a job delivered twice finds its row and does nothing."""

    __tablename__ = "job_effects"
    __table_args__ = (UniqueConstraint("request_id", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"))
    step: Mapped[str] = mapped_column(String(120))
    receipt: Mapped[dict] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FacilitySink(Base):
    """How a facility's routed work leaves the gateway: the staff inbox, its ROI system's webhook, or a folder."""

    __tablename__ = "facility_sinks"

    facility: Mapped[str] = mapped_column(ForeignKey("facilities.code"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(12), default="inbox")
    url: Mapped[str | None] = mapped_column(String(2000))
    secret_sealed: Mapped[str | None] = mapped_column(String(500))
    folder: Mapped[str | None] = mapped_column(String(1000))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
