"""Writing audit checkpoints: when due (the relay's housekeeping) or on demand (`gateway audit checkpoint`).

Due means: entries exist that no checkpoint covers, and either
`every_entries` of them have piled up or `every_seconds` have passed since this
process last wrote one.  Before signing, the writer checks every entry since
the previous checkpoint (keyed hashes, links, no gaps, the previous checkpoint's
entry unchanged), so a checkpoint never vouches for a chain that was already
cut or rewritten; it then refuses and says why.

Appends never wait for any of this: the writer reads committed entries in its
own short transaction, takes no lock, and talks to S3 only after that
transaction has ended.  Housekeeping runs the step on a background thread, so
a slow or absent S3 never holds up the relay's publishing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from gateway.audit.checkpoints import NAME, Checkpoint, CheckpointInvalid, new_checkpoint, parse, serialize
from gateway.audit.models import AuditEvent
from gateway.audit.service import verify_chain
from gateway.clock import utcnow
from gateway.db import Database
from gateway.storage import CheckpointExists, CheckpointStore, StorageUnavailable, StoredObjectMissing

log = logging.getLogger("gateway.audit.checkpoints")

POLL_SECONDS = 1.0
_ATTEMPTS = 3


class ChainBroken(Exception):
    """The chain since the last checkpoint, or the newest checkpoint itself, does not check out."""

    def __init__(self, problems: list[str]):
        super().__init__(problems[0] if problems else "the audit chain does not verify")
        self.problems = problems


@dataclass(frozen=True)
class CheckpointResult:
    """What one write attempt did."""

    written: bool
    # The checkpoint just written, or else the newest one in the store.
    checkpoint: Checkpoint | None

    def as_dict(self) -> dict:
        """For `gateway audit checkpoint --json`."""
        data: dict = {"written": self.written, "checkpoint": None}
        if self.checkpoint is not None:
            data["checkpoint"] = {**self.checkpoint.summary(), "name": self.checkpoint.name}
        return data


class Checkpointer:
    """Signs the chain's head into the CheckpointStore when due; one per process."""

    def __init__(self, db: Database, store: CheckpointStore, chain_key: str, *, every_entries: int = 100,
                 every_seconds: float = 60.0, clock: Callable[[], datetime] = utcnow,
                 monotonic: Callable[[], float] = time.monotonic):
        self.db, self.store, self.chain_key = db, store, chain_key
        self.every_entries, self.every_seconds = every_entries, every_seconds
        self.clock, self.monotonic = clock, monotonic
        self._latest: Checkpoint | None = None
        self._last_written = float("-inf")
        self._not_before = float("-inf")
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings, db: Database, store: CheckpointStore) -> Checkpointer:
        """Cadence and key from settings."""
        return cls(db, store, settings.audit_chain_key, every_entries=settings.audit_checkpoint_every_entries,
                   every_seconds=settings.audit_checkpoint_every_seconds)

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint in the store; only names after the one already known are listed."""
        newer = [s for s in self.store.list(after=self._latest.name if self._latest else None)
                 if NAME.fullmatch(s.name)]
        if not newer:
            return self._latest
        try:
            self._latest = parse(self.store.get(newer[-1].name, newer[-1].first_version), self.chain_key)
        except CheckpointInvalid as error:
            raise ChainBroken([f"the newest checkpoint {newer[-1].name} {error}"]) from None
        return self._latest

    def unanchored(self) -> int:
        """How many entries no checkpoint covers yet."""
        with self.db.transaction() as session:
            last = session.scalar(select(func.max(AuditEvent.seq))) or 0
        latest = self._latest if self._latest is not None else self.latest()
        return max(last - (latest.seq if latest else 0), 0)

    def due(self) -> bool:
        """True when enough entries, or enough time, went by without a checkpoint."""
        pending = self.unanchored()
        if not pending:
            return False
        return pending >= self.every_entries or self.monotonic() - self._last_written >= self.every_seconds

    def write(self) -> CheckpointResult:
        """Check the entries since the newest checkpoint and sign the head (nothing when nothing is new)."""
        for _ in range(_ATTEMPTS):
            latest = self.latest()
            anchored = latest.seq if latest else 0
            with self.db.transaction() as session:
                report = verify_chain(session, chain_key=self.chain_key, since=max(anchored, 1),
                                      anchors={latest.seq: [latest.anchor()]} if latest else None)
            if not report.ok:
                raise ChainBroken(report.problems)
            if report.last_seq <= anchored:
                return CheckpointResult(False, latest)
            checkpoint = new_checkpoint(self.chain_key, previous=latest, seq=report.last_seq,
                                        head=report.last_hash, at=self.clock())
            try:
                self.store.put(checkpoint.name, serialize(checkpoint))
            except CheckpointExists:
                continue  # another writer took this number first; link to theirs and try again
            self._latest, self._last_written = checkpoint, self.monotonic()
            log.info("audit checkpoint written", extra={"checkpoint": checkpoint.number, "seq": checkpoint.seq})
            return CheckpointResult(True, checkpoint)
        raise StorageUnavailable("other writers kept taking the next checkpoint number")

    # -- the relay's periodic step ------------------------------------------------------------

    def tick(self) -> None:
        """Start one due-check-and-write in the background unless one is running or it is too soon."""
        now = self.monotonic()
        if now < self._not_before or (self._thread is not None and self._thread.is_alive()):
            return
        self._not_before = now + POLL_SECONDS
        self._thread = threading.Thread(target=self.step, name="audit-checkpoint", daemon=True)
        self._thread.start()

    def step(self) -> None:
        """Write a checkpoint if due; never raises (failures are logged and retried later)."""
        try:
            if self.due():
                self.write()
        except ChainBroken as error:
            self._not_before = self.monotonic() + self.every_seconds
            log.error("audit checkpoint refused: the chain does not verify",
                      extra={"problems": len(error.problems), "first_problem": error.problems[0]})
        except (StorageUnavailable, StoredObjectMissing) as error:
            self._not_before = self.monotonic() + self.every_seconds
            log.warning("audit checkpoint store unavailable", extra={"exception_type": type(error).__name__})
        except Exception as error:
            self._not_before = self.monotonic() + self.every_seconds
            log.error("audit checkpoint failed", extra={"exception_type": type(error).__name__})

    def join(self, timeout: float | None = None) -> None:
        """Wait for a background step to finish (tests, shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)
