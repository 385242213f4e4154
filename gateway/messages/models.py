"""A message on a request's thread, or a staff-only internal note."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime, new_id, utcnow

AUTHOR_KINDS = ("requester", "staff")


class RequestMessage(Base):
    """One message.  The body is free text and may hold PHI: it is never logged, e-mailed or sent by webhook."""

    __tablename__ = "request_messages"
    __table_args__ = (Index("ix_request_messages_request_at", "request_id", "at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    author_kind: Mapped[str] = mapped_column(String(12))  # one of AUTHOR_KINDS
    # Who wrote it, as the audit trail names them (user:<id>, api_key:<id>): staff only ever see it.
    author_actor: Mapped[str] = mapped_column(String(80))
    # How the thread names the author: the organization's name, or "Records team, <facility>" (never an e-mail).
    author_name: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    # Staff-only notes: never shown to the requester, and no event, webhook or e-mail.
    internal: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
