"""Signed checkpoints of the audit chain, kept outside the database, and the full trail check.

A checkpoint says "the chain held `seq` entries and the last one's hash was
`head`", with the time, its own number, the digest of the checkpoint before it
and an HMAC-SHA256 signature under a key derived from GATEWAY_AUDIT_CHAIN_KEY.
Checkpoints live in a CheckpointStore (S3 with Object Lock in production), one
object per checkpoint, written once and never changed:

    checkpoints/000000000042.json
    {"at":"2026-11-30T05:13:19.123456Z","head":"<64 hex>","key":"<key fingerprint>",
     "kind":"records-gateway/audit-checkpoint","mac":"<64 hex>","number":42,
     "prev":"<sha256 of checkpoint 41>","seq":4200,"v":1}

Whoever holds the database can rewrite it, but not the checkpoints: a database
whose chain is shorter than a checkpoint, or whose entry at a checkpoint's seq
has another hash, was truncated or rolled back.  HMAC rather than Ed25519: the
verifier must hold the chain key anyway to recompute the keyed entry hashes, so
a public key would let no one verify more, and there is one secret to manage.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from gateway.audit import chain
from gateway.audit.chain import GENESIS
from gateway.audit.service import Anchor, VerifyReport, verify_chain
from gateway.clock import utcnow
from gateway.db import Database
from gateway.storage import CheckpointStore, StorageUnavailable, StoredObjectMissing
from gateway.storage.checkpoints import PREFIX

FORMAT = 1
KIND = "records-gateway/audit-checkpoint"
NAME = re.compile(re.escape(PREFIX) + r"(\d{12})\.json")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class CheckpointInvalid(ValueError):
    """A stored checkpoint is unreadable, malformed or not signed with our key."""


def _canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def timestamp(at: datetime) -> str:
    """A UTC instant as checkpoints write it."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Checkpoint:
    """One signed statement of the chain's length and head."""

    number: int
    seq: int
    head: str
    at: str
    prev: str
    key: str
    mac: str = ""

    @property
    def name(self) -> str:
        """The object name in the store."""
        return name_for(self.number)

    def body(self) -> dict:
        """The signed fields."""
        return {"v": FORMAT, "kind": KIND, "number": self.number, "seq": self.seq, "head": self.head,
                "at": self.at, "prev": self.prev, "key": self.key}

    def digest(self) -> str:
        """What the next checkpoint's `prev` must be."""
        return hashlib.sha256(_canonical({**self.body(), "mac": self.mac})).hexdigest()

    def anchor(self) -> Anchor:
        """What this checkpoint asks of the chain in the database."""
        return Anchor(number=self.number, seq=self.seq, head=self.head, at=self.at)

    def summary(self) -> dict:
        """For reports: number, seq, head, time."""
        return {k: v for k, v in asdict(self).items() if k in {"number", "seq", "head", "at"}}


def name_for(number: int) -> str:
    """checkpoints/000000000042.json: zero-padded, so names sort in checkpoint order."""
    return f"{PREFIX}{number:012d}.json"


def _mac(chain_key: str, body: dict) -> str:
    return hmac.new(chain.checkpoint_key(chain_key), _canonical(body), hashlib.sha256).hexdigest()


def new_checkpoint(chain_key: str, *, previous: Checkpoint | None, seq: int, head: str,
                   at: datetime) -> Checkpoint:
    """The signed checkpoint that follows `previous`."""
    unsigned = Checkpoint(number=(previous.number + 1) if previous else 1, seq=seq, head=head,
                          at=timestamp(at), prev=previous.digest() if previous else GENESIS,
                          key=chain.key_fingerprint(chain_key))
    return Checkpoint(**{**asdict(unsigned), "mac": _mac(chain_key, unsigned.body())})


def serialize(checkpoint: Checkpoint) -> bytes:
    """The stored bytes: canonical JSON of the signed fields and the signature."""
    return _canonical({**checkpoint.body(), "mac": checkpoint.mac}) + b"\n"


def parse(data: bytes, chain_key: str) -> Checkpoint:
    """Read and check one stored checkpoint; CheckpointInvalid says what is wrong with it."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise CheckpointInvalid("is not JSON") from None
    if not isinstance(raw, dict) or raw.get("kind") != KIND or raw.get("v") != FORMAT:
        raise CheckpointInvalid("is not an audit checkpoint of a known format")
    ints, hexes = ("number", "seq"), ("head", "prev", "mac")
    if (any(type(raw.get(k)) is not int or raw[k] < 1 for k in ints)
            or any(not isinstance(raw.get(k), str) or not _HEX64.fullmatch(raw[k]) for k in hexes)
            or not isinstance(raw.get("at"), str) or not isinstance(raw.get("key"), str)):
        raise CheckpointInvalid("is malformed")
    checkpoint = Checkpoint(**{k: raw[k] for k in ("number", "seq", "head", "at", "prev", "key", "mac")})
    ours = chain.key_fingerprint(chain_key)
    if not hmac.compare_digest(checkpoint.key, ours):
        raise CheckpointInvalid(f"is signed with another chain key (fingerprint {checkpoint.key[:16]!r}, "
                                f"configured {ours!r})")
    if not hmac.compare_digest(checkpoint.mac, _mac(chain_key, checkpoint.body())):
        raise CheckpointInvalid("has a signature that does not match its contents (forged or altered)")
    return checkpoint


@dataclass
class CheckpointScan:
    """Every checkpoint in the store, checked on its own and as a chain."""

    valid: list[Checkpoint] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    listed: int = 0

    @property
    def latest(self) -> Checkpoint | None:
        """The newest checkpoint that is signed with our key."""
        return self.valid[-1] if self.valid else None


def scan_checkpoints(store: CheckpointStore, chain_key: str, *, after: Checkpoint | None = None) -> CheckpointScan:
    """Read the checkpoints (all, or those after `after`), check signatures, numbering, links and growth."""
    scan = CheckpointScan()
    expected = after.number + 1 if after else 1
    previous, prev_digest = after, after.digest() if after else GENESIS
    for stored in store.list(after=after.name if after else None):
        scan.listed += 1
        match = NAME.fullmatch(stored.name)
        if match is None:
            scan.problems.append(f"unexpected object {stored.name!r} among the checkpoints")
            continue
        number = int(match.group(1))
        if number != expected:
            scan.problems.append(f"checkpoints {expected}..{number - 1} are missing from the store")
            prev_digest = None
        expected = number + 1
        if stored.versions > 1:
            scan.problems.append(f"checkpoint {number} was overwritten ({stored.versions} versions; "
                                 "the first, locked one is used)")
        if stored.delete_marked:
            scan.problems.append(f"checkpoint {number} was deleted (a delete marker hides it; "
                                 "the locked version is intact and used)")
        try:
            checkpoint = parse(store.get(stored.name, stored.first_version), chain_key)
        except CheckpointInvalid as error:
            scan.problems.append(f"checkpoint {number} {error}")
            prev_digest = None
            continue
        if checkpoint.number != number:
            scan.problems.append(f"checkpoint {number} calls itself number {checkpoint.number}")
        if prev_digest is not None and checkpoint.prev != prev_digest:
            scan.problems.append(f"checkpoint {number} does not link to checkpoint {number - 1}")
        if previous is not None and checkpoint.seq <= previous.seq:
            scan.problems.append(f"checkpoint {number} records {checkpoint.seq} entries, no more than "
                                 f"checkpoint {previous.number} ({previous.seq}): checkpoints only grow")
        scan.valid.append(checkpoint)
        previous, prev_digest = checkpoint, checkpoint.digest()
    return scan


def verify_trail(db: Database, store: CheckpointStore | None, chain_key: str, *,
                 stale_after: timedelta | None = None, max_problems: int = 50) -> VerifyReport:
    """The whole check behind `gateway audit verify`: the checkpoints, then the chain against them.

    `store=None` checks the database alone (and says that a truncation or a
    roll-back then cannot be ruled out).
    """
    report = VerifyReport(max_problems=max_problems)
    scan = CheckpointScan()
    if store is None:
        report.warnings.append("checkpoints not read (--database-only): removal of the newest entries, an "
                               "emptied table or a roll-back of the audit tables cannot be ruled out")
    else:
        try:
            scan = scan_checkpoints(store, chain_key)
        except (StorageUnavailable, StoredObjectMissing) as error:
            report.problem(f"the checkpoints could not be read ({error}): removal of the newest entries or a "
                           "roll-back of the audit tables cannot be ruled out")
    for text in scan.problems:
        report.problem(text)
    anchors: dict[int, list[Anchor]] = defaultdict(list)
    for checkpoint in scan.valid:
        anchors[checkpoint.seq].append(checkpoint.anchor())
    with db.transaction() as session:
        verify_chain(session, chain_key=chain_key, anchors=anchors, report=report)
    latest = scan.latest
    report.checkpoints = len(scan.valid)
    if report.legacy_entries:
        # Anyone holding the database can recompute unkeyed hashes; only a checkpoint covering them,
        # or a keyed entry after them, pins them down.
        report.warnings.append(f"{report.legacy_entries} entries carry the unkeyed hash of the code before "
                               "migration 0009; checkpoints and the keyed entries after them anchor them")
    if latest is not None:
        report.latest_checkpoint = latest.summary()
        report.unanchored = max(report.last_seq - latest.seq, 0)
        written = datetime.strptime(latest.at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        if stale_after is not None and report.unanchored and utcnow() - written > stale_after:
            report.warnings.append(f"the newest checkpoint is from {latest.at} and {report.unanchored} entries "
                                   "are newer: is the relay (which writes checkpoints) running?")
    else:
        report.unanchored = report.last_seq
        if store is not None and report.last_seq:
            report.warnings.append("no checkpoint has been written yet, so the whole trail could be removed "
                                   "unnoticed (the relay writes them; so does `gateway audit checkpoint`)")
    return report
