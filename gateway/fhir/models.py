"""FHIR clients (SMART Backend Services, per organization) and the Tasks they created.

A Task is a records request: its id is the request's id, and `fhir_tasks` keeps
only what the request itself does not hold — the client that created it, the
Task's code and identifier system, and, for a Task refused at intake, the rules'
findings (codes, fields and messages: no PHI), since that request was cancelled.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime, new_id, utcnow


class FhirClient(Base):
    """A payer's or provider's system: its public keys (a JWKS, or a URL to fetch one) and its organization."""

    __tablename__ = "fhir_clients"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    # Public keys only (a private member is refused at registration), so nothing here is secret.
    jwks: Mapped[dict | None] = mapped_column(JSON)
    jwks_url: Mapped[str | None] = mapped_column(Text)
    jwks_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scopes: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FhirTask(Base):
    """The request a Task stands for, the client that sent it, and why it was refused (if it was)."""

    __tablename__ = "fhir_tasks"

    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("fhir_clients.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    identifier_system: Mapped[str | None] = mapped_column(String(300))
    # The rules' findings for a Task rejected at intake ([{"code", "field", "message", "rule"}]), else None.
    rejection: Mapped[list | None] = mapped_column(JSON)
    rejected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
