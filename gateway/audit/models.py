"""The append-only, hash-chained audit trail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, SmallInteger, String, text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class AuditEvent(Base):
    """One audited action; `hash` covers every field and the previous entry's hash.

    The application may only INSERT and SELECT these rows (PostgreSQL grants, and
    triggers on both databases refuse UPDATE, DELETE and TRUNCATE).
    """

    __tablename__ = "audit_events"

    # Chain position: dense, so a deleted row leaves a gap that verify reports.
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                     autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(80), index=True)
    org_id: Mapped[str | None] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(60))
    object_type: Mapped[str | None] = mapped_column(String(40))
    object_id: Mapped[str | None] = mapped_column(String(64), index=True)
    result: Mapped[str] = mapped_column(String(20))
    ip: Mapped[str | None] = mapped_column(String(45))
    request_id: Mapped[str | None] = mapped_column(String(128), index=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # How `hash` is computed (gateway.audit.chain): 1 = unkeyed SHA-256 (rows written before
    # migration 0009, hence the server default), 2 = HMAC-SHA256 under the chain key.
    scheme: Mapped[int] = mapped_column(SmallInteger, server_default=text("1"))


class AuditChainHead(Base):
    """A single row naming the chain's last position; writers lock it, which serialises appends.

    The one audit row the application may UPDATE (never DELETE).  It is a lock and a
    convenience, not evidence: `gateway audit verify` trusts the entries and the
    checkpoints kept outside the database, and only reports a head that disagrees.
    """

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    last_hash: Mapped[str] = mapped_column(String(64))
