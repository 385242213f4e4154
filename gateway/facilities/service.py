"""Reading the facility catalogue."""

from __future__ import annotations

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from gateway.facilities.models import Facility


def list_facilities(session: Session) -> list[Facility]:
    """Every facility, in a stable order."""
    return list(session.scalars(select(Facility).order_by(Facility.name)))


def get_facility(session: Session, code: str) -> Facility | None:
    """One facility by code, or None."""
    return session.get(Facility, code)


# Built once (every check runs it): only the code changes.
_SYSTEM = select(Facility.health_system).where(Facility.code == bindparam("code")).scalar_subquery()
_WITH_SIBLINGS = (select(Facility).where(or_(Facility.code == bindparam("code"), Facility.health_system == _SYSTEM))
                  .order_by(Facility.code))


def facility_with_siblings(session: Session, code: str) -> tuple[Facility | None, list[Facility]]:
    """One facility by code and the other facilities of its health system, in one query (every check needs
    both: the rules take the discloser's name from either)."""
    rows = session.scalars(_WITH_SIBLINGS, {"code": code}).all()
    facility = next((row for row in rows if row.code == code), None)
    return facility, [row for row in rows if row.code != code]
