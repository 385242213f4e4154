"""Reading the facility catalogue."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gateway.facilities.models import Facility


def list_facilities(session: Session) -> list[Facility]:
    """Every facility, in a stable order."""
    return list(session.scalars(select(Facility).order_by(Facility.name)))


def get_facility(session: Session, code: str) -> Facility | None:
    """One facility by code, or None."""
    return session.get(Facility, code)


def facility_with_siblings(session: Session, code: str) -> tuple[Facility | None, list[Facility]]:
    """One facility by code and the other facilities of its health system, in one query (every check needs
    both: the rules take the discloser's name from either)."""
    system = select(Facility.health_system).where(Facility.code == code).scalar_subquery()
    rows = session.scalars(select(Facility).where(or_(Facility.code == code, Facility.health_system == system))
                           .order_by(Facility.code)).all()
    facility = next((row for row in rows if row.code == code), None)
    return facility, [row for row in rows if row.code != code]
