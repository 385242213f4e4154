"""Reading the facility catalogue."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.facilities.models import Facility


def list_facilities(session: Session) -> list[Facility]:
    """Every facility, in a stable order."""
    return list(session.scalars(select(Facility).order_by(Facility.name)))


def get_facility(session: Session, code: str) -> Facility | None:
    """One facility by code, or None."""
    return session.get(Facility, code)


def facilities_of_system(session: Session, health_system: str) -> list[Facility]:
    """Every facility run by the health system of that name (configuration: `Facility.health_system`)."""
    return list(session.scalars(select(Facility).where(Facility.health_system == health_system)
                                .order_by(Facility.code)))
