"""The record of job effects, and facility sink configuration (the outbox lives in gateway.outbox)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime, utcnow


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
