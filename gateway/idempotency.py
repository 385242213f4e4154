"""`Idempotency-Key` on state-changing POSTs (API.md "Conventions").

Same key and same body → the first response, replayed; same key and another
body → 422 IDEMPOTENCY_KEY_REUSED; same key while the first is running → 409
IDEMPOTENCY_KEY_IN_FLIGHT.  Keys are scoped per principal and live 24 hours.
A 5xx is never stored: the key is released so a retry runs again (that is
what makes "503, retry is safe" true).  A claim left behind by a killed
process goes stale after STALE_AFTER and can be taken over.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import JSON, Integer, String, UniqueConstraint, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, Database, UTCDateTime, utcnow
from gateway.errors import Conflict, FieldError, Unprocessable

KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
LIFETIME = timedelta(hours=24)
# Longer than the slowest upload we accept; a claim older than this was abandoned.
STALE_AFTER = timedelta(minutes=30)


class IdempotencyRecord(Base):
    """The first response to a POST carrying an Idempotency-Key, replayed for 24 hours."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("principal", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    principal: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(255))
    # sha256 of method, route and body; None while an upload's body is still being hashed.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(12))  # in_flight | done
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[dict | list | None] = mapped_column(JSON)
    location: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class StoredResponse:
    """A response recorded for replay."""

    status: int
    body: dict | list | None
    location: str | None


def validate_key(key: str) -> str:
    """The key if well-formed (1..255 visible ASCII characters), else a 422."""
    if not KEY_PATTERN.match(key):
        raise Unprocessable("The Idempotency-Key header must be 1 to 255 visible ASCII characters.",
                            code="IDEMPOTENCY_KEY_INVALID",
                            errors=[FieldError("IDEMPOTENCY_KEY_INVALID", "Idempotency-Key", "1 to 255 characters")])
    return key


def fingerprint(*parts: bytes | str) -> str:
    """A digest of what makes two requests "the same" (method, route, body...)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def claim(db: Database, *, principal: str, key: str, print_: str | None) -> StoredResponse | None:
    """Claim the key for a new attempt, or return the stored response to replay.

    `print_` may be None when the body's digest is only known after reading it
    (uploads); the caller then calls `compare` once it knows.
    """
    now = utcnow()
    with db.transaction() as session:
        record = session.scalars(select(IdempotencyRecord).where(
            IdempotencyRecord.principal == principal, IdempotencyRecord.key == key).with_for_update()).one_or_none()
        if record is not None:
            expired = record.expires_at <= now
            abandoned = record.state == "in_flight" and now - record.created_at > STALE_AFTER
            if expired or abandoned:
                session.delete(record)
                session.flush()
            elif record.state == "in_flight":
                raise Conflict("A request with this Idempotency-Key is still being processed.",
                               code="IDEMPOTENCY_KEY_IN_FLIGHT")
            else:
                if print_ is not None and record.fingerprint != print_:
                    raise _reused()
                return StoredResponse(record.status_code, record.response_body, record.location)
        try:
            with session.begin_nested():
                session.add(IdempotencyRecord(principal=principal, key=key, fingerprint=print_, state="in_flight",
                                              created_at=now, expires_at=now + LIFETIME))
        except IntegrityError:  # a concurrent attempt claimed it between our read and insert
            raise Conflict("A request with this Idempotency-Key is still being processed.",
                           code="IDEMPOTENCY_KEY_IN_FLIGHT") from None
    return None


def stored(db: Database, *, principal: str, key: str) -> tuple[str | None, StoredResponse] | None:
    """A completed record's fingerprint and response, if there is one (uploads compare after hashing)."""
    with db.transaction() as session:
        record = session.scalars(select(IdempotencyRecord).where(
            IdempotencyRecord.principal == principal, IdempotencyRecord.key == key,
            IdempotencyRecord.state == "done", IdempotencyRecord.expires_at > utcnow())).one_or_none()
        if record is None:
            return None
        return record.fingerprint, StoredResponse(record.status_code, record.response_body, record.location)


def begin_streamed(db: Database, *, principal: str, key: str | None) -> tuple[str | None, StoredResponse] | None:
    """For bodies fingerprinted only once read (uploads): the stored first answer, or claim the key.

    Returns None when there is no key or the key was just claimed; otherwise (fingerprint, response)
    of the first attempt, which the caller compares after hashing the body (`compare`).
    """
    if key is None:
        return None
    validate_key(key)
    prior = stored(db, principal=principal, key=key)
    if prior is None:
        claim(db, principal=principal, key=key, print_=None)
    return prior


def _reused() -> Unprocessable:
    return Unprocessable("This Idempotency-Key was used with a different request.", code="IDEMPOTENCY_KEY_REUSED")


def compare(stored_print: str | None, actual_print: str) -> None:
    """Raise IDEMPOTENCY_KEY_REUSED when a replayed key came with a different body."""
    if stored_print != actual_print:
        raise _reused()


def complete(db: Database, *, principal: str, key: str, print_: str | None, response: StoredResponse) -> None:
    """Record the response for replay; a 5xx releases the key instead."""
    with db.transaction() as session:
        record = session.scalars(select(IdempotencyRecord).where(
            IdempotencyRecord.principal == principal, IdempotencyRecord.key == key)).one_or_none()
        if record is None:
            return
        if response.status >= 500:
            session.delete(record)
            return
        record.state, record.status_code = "done", response.status
        record.response_body, record.location = response.body, response.location
        if print_ is not None:
            record.fingerprint = print_


def release(db: Database, *, principal: str, key: str) -> None:
    """Forget an in-flight claim (the attempt failed before it changed anything)."""
    with db.transaction() as session:
        session.execute(delete(IdempotencyRecord).where(
            IdempotencyRecord.principal == principal, IdempotencyRecord.key == key,
            IdempotencyRecord.state == "in_flight"))


def purge_expired(db: Database) -> int:
    """Delete records past their 24 hours; returns how many."""
    with db.transaction() as session:
        return session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= utcnow())).rowcount
