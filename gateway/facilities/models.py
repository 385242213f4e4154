"""The facility table: one row per place that releases records, with its policy values."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base


class Facility(Base):
    """A hospital or the affiliated practices; policy values are data, not code."""

    __tablename__ = "facilities"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    accepts_electronic: Mapped[bool] = mapped_column(Boolean, default=True)
    turnaround_days: Mapped[int] = mapped_column(Integer, default=10)
    # When true the turnaround counts business days in the facility's calendar.
    turnaround_business_days: Mapped[bool] = mapped_column(Boolean, default=False)
    requires_practice: Mapped[bool] = mapped_column(Boolean, default=False)
    max_authorization_age_days: Mapped[int] = mapped_column(Integer, default=180)
    # Other names an authorization may use for this discloser ("Tufts MC", ...).
    aliases: Mapped[list] = mapped_column(JSON, default=list)
    # The health system that runs the facility ("Tufts Medicine") and its other legal names: an authorization
    # naming the system, or "<any of its facilities> and its affiliates", names every facility of the system.
    health_system: Mapped[str | None] = mapped_column(String(200))
    health_system_aliases: Mapped[list] = mapped_column(JSON, default=list)
