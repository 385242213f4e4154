"""Failed bearer credentials: a per-address limit decided before any work, and their audit aggregated.

The limit.  Failed attempts (bad API keys and tokens) are counted per client
address in a moving window in Redis, shared by every worker and instance.
Once an address is over the limit, a credential is refused (429) before any
key lookup, hashing of the key or signature check, unless it authenticated
recently: every credential that authenticates (and every token or key the
gateway hands out) is remembered for a while as an HMAC keyed with the app
secret — never the credential itself — so a known-good credential still
passes, is verified as usual, and is forgotten the moment it fails.

The audit.  The first few failures per address and window get their own
entry; later ones (refusals included) are counted in Redis and written as one
aggregate entry per address once the window is over, by the next failure or
the next authenticated request that looks.  A cap on entries per window holds
even against many addresses.

While Redis is down the same logic runs on per-process memory (as the API
rate limiter falls back), so intake goes on and audit writes stay bounded;
Redis is tried again with a growing back-off.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

log = logging.getLogger("gateway.auth")

PREFIX = "gateway-auth"
# One aggregate bucket for the addresses past the per-window entry cap.
OTHER_ADDRESSES = "*"
# Unflushed aggregate counts outlive their window this long in Redis, waiting for someone to write them.
AGGREGATE_TTL = 7 * 86400
LOCAL_KNOWN_GOOD = 10_000  # fingerprints this process remembers (also its memory while Redis is down)
MAX_BACKOFF = 60.0

# INCR the address's failures in this window; the first `first` (within the per-window cap) are audited
# one by one, the rest counted into the window's aggregate hash, which is queued for writing once due.
_NOTE = """
if ARGV[9] == '1' then redis.call('DEL', KEYS[5]) end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
local individual = 0
if n <= tonumber(ARGV[2]) then
  local e = redis.call('INCR', KEYS[2])
  if e == 1 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
  if e <= tonumber(ARGV[3]) then individual = 1 end
end
if individual == 0 then
  local field = ARGV[1]
  if redis.call('HEXISTS', KEYS[3], field) == 0 then
    local e = redis.call('INCR', KEYS[2])
    if e == 1 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
    if e > tonumber(ARGV[3]) then field = ARGV[10] end
  end
  redis.call('HINCRBY', KEYS[3], field, 1)
  redis.call('EXPIRE', KEYS[3], ARGV[5])
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[7])
end
return {individual, redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[8], 'LIMIT', 0, 10)}
"""
# Take a due window's counts exactly once (another worker claiming the same window gets nothing).
_CLAIM = """
local counts = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return counts
"""


@dataclass(frozen=True)
class GuardPolicy:
    """The limit, how long a good credential is remembered, and how failures are audited."""

    limit: RateLimitItem
    known_good_ttl: int
    audit_first: int
    audit_window: int
    audit_max_entries: int


@dataclass(frozen=True)
class Aggregate:
    """Failed attempts from one address (None: the addresses past the cap) in one window, not audited singly."""

    window_start: int
    address: str | None
    count: int


def normalize_address(address: str | None) -> str:
    """One spelling per address, so `2001:DB8::1` and `2001:db8:0::1` share a bucket."""
    try:
        return ipaddress.ip_address(address or "").compressed
    except ValueError:
        return "unknown"


class _RedisBackend:
    def __init__(self, storage: RedisStorage):
        self.storage = storage
        self.client = storage.get_connection()
        self.windows = MovingWindowRateLimiter(storage)
        self.note_script = self.client.register_script(_NOTE)
        self.claim_script = self.client.register_script(_CLAIM)

    def is_known(self, fp: str) -> bool:
        return bool(self.client.exists(f"{PREFIX}:good:{fp}"))

    def remember(self, fp: str, ttl: int) -> None:
        self.client.set(f"{PREFIX}:good:{fp}", b"1", ex=ttl)

    def note(self, address, fp, *, first, policy: GuardPolicy, window, now) -> tuple[bool, list[int]]:
        keys = [f"{PREFIX}:fail:{window}:{address}", f"{PREFIX}:entries:{window}", f"{PREFIX}:agg:{window}",
                f"{PREFIX}:agg-due", f"{PREFIX}:good:{fp or '-'}"]
        w = policy.audit_window
        args = [address, first, policy.audit_max_entries, 2 * w + 60, AGGREGATE_TTL, (window + 1) * w, window,
                now, "1" if fp else "0", OTHER_ADDRESSES]
        individual, due = self.note_script(keys=keys, args=args)
        return bool(individual), [int(d) for d in due]

    def due(self, now: float, policy: GuardPolicy) -> list[int]:
        return [int(d) for d in self.client.zrangebyscore(f"{PREFIX}:agg-due", "-inf", now, start=0, num=10)]

    def claim(self, window: int) -> dict[str, int]:
        flat = self.claim_script(keys=[f"{PREFIX}:agg:{window}", f"{PREFIX}:agg-due"], args=[window])
        text = [item.decode() if isinstance(item, bytes) else str(item) for item in flat]
        return {text[i]: int(text[i + 1]) for i in range(0, len(text), 2)}

    def restore(self, window: int, counts: dict[str, int], due_at: int) -> None:
        pipe = self.client.pipeline()
        for address, count in counts.items():
            pipe.hincrby(f"{PREFIX}:agg:{window}", address, count)
        pipe.expire(f"{PREFIX}:agg:{window}", AGGREGATE_TTL)
        pipe.zadd(f"{PREFIX}:agg-due", {str(window): due_at})
        pipe.execute()


class _MemoryBackend:
    """The same bookkeeping in this process only (while Redis is down); known-good lives in the local cache."""

    def __init__(self):
        self.windows = MovingWindowRateLimiter(MemoryStorage())
        self.lock = threading.Lock()
        self.failures: dict[tuple[int, str], int] = {}
        self.entries: dict[int, int] = {}
        self.aggregates: dict[int, dict[str, int]] = {}
        self.pruned_at = 0

    def is_known(self, fp: str) -> bool:
        return False  # the guard's local cache already answered

    def remember(self, fp: str, ttl: int) -> None:
        pass

    def note(self, address, fp, *, first, policy: GuardPolicy, window, now) -> tuple[bool, list[int]]:
        with self.lock:
            if window > self.pruned_at:  # once per window: counters of finished windows are no longer needed
                self.failures = {key: n for key, n in self.failures.items() if key[0] >= window}
                self.entries = {key: n for key, n in self.entries.items() if key >= window}
                self.pruned_at = window
            n = self.failures[(window, address)] = self.failures.get((window, address), 0) + 1
            if n <= first:
                e = self.entries[window] = self.entries.get(window, 0) + 1
                if e <= policy.audit_max_entries:
                    return True, self._due(now, policy)
            counts = self.aggregates.setdefault(window, {})
            field = address
            if field not in counts:
                e = self.entries[window] = self.entries.get(window, 0) + 1
                if e > policy.audit_max_entries:
                    field = OTHER_ADDRESSES
            counts[field] = counts.get(field, 0) + 1
            return False, self._due(now, policy)

    def _due(self, now: float, policy: GuardPolicy) -> list[int]:
        return [w for w in sorted(self.aggregates) if (w + 1) * policy.audit_window <= now][:10]

    def due(self, now: float, policy: GuardPolicy) -> list[int]:
        with self.lock:
            return self._due(now, policy)

    def claim(self, window: int) -> dict[str, int]:
        with self.lock:
            return self.aggregates.pop(window, {})

    def restore(self, window: int, counts: dict[str, int], due_at: int) -> None:
        with self.lock:
            mine = self.aggregates.setdefault(window, {})
            for address, count in counts.items():
                mine[address] = mine.get(address, 0) + count


class BearerGuard:
    """Decides, before any work, whether a bearer credential from an address may be checked at all."""

    def __init__(self, storage: Storage | None, *, secret: str, policy: GuardPolicy, clock=time.time):
        self.policy = policy
        self.clock = clock
        self._key = hashlib.sha256(b"gateway bearer fingerprint\x00" + secret.encode()).digest()
        self._primary = _RedisBackend(storage) if isinstance(storage, RedisStorage) else None
        self._memory = _MemoryBackend()
        self._dead_until = 0.0
        self._backoff = 1.0
        self._known: OrderedDict[str, tuple[float, float]] = OrderedDict()  # fp → (expires, refreshed)
        self._known_lock = threading.Lock()
        self._next_sweep = 0.0

    @classmethod
    def from_settings(cls, settings, storage: Storage | None) -> BearerGuard:
        """Built once per app, on the rate limiter's own storage."""
        return cls(storage, secret=settings.secret_key, policy=GuardPolicy(
            limit=parse(settings.bearer_failure_rate_limit), known_good_ttl=settings.bearer_known_good_ttl,
            audit_first=settings.bearer_failure_audit_first, audit_window=settings.bearer_failure_audit_window,
            audit_max_entries=settings.bearer_failure_audit_max_entries))

    def fingerprint(self, credential: str) -> str:
        """Keyed, so a leaked Redis reveals nothing and cannot be matched against guessed keys."""
        return hmac.new(self._key, credential.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    # The decision before any work.

    def refusal(self, address: str | None, credential: str) -> int | None:
        """Seconds to wait when this address is over its failure limit and the credential is not known good."""
        address = normalize_address(address)
        fp = self.fingerprint(credential)
        # A credential this process saw authenticate is never held back (as below, past the limit): asking Redis
        # for the address's failures first would only cost every ordinary request a round trip.
        if self._known_here(fp):
            return None
        stats = self._run(lambda b: b.windows.get_window_stats(self.policy.limit, "bearer-failures", address))
        if stats.remaining > 0:
            return None
        if self._known_good(fp):
            return None
        now = self.clock()
        window = int(now // self.policy.audit_window)
        # Counted into the aggregate only: a refusal never writes to the database.
        self._run(lambda b: b.note(address, None, first=0, policy=self.policy, window=window, now=now))
        return max(1, int(stats.reset_time - now + 0.999))

    def _known_here(self, fp: str) -> bool:
        """Known good in this process's own cache (no Redis)."""
        now = self.clock()
        with self._known_lock:
            entry = self._known.get(fp)
            return entry is not None and entry[0] > now

    def _known_good(self, fp: str) -> bool:
        now = self.clock()
        if self._known_here(fp):
            return True
        if self._alive():
            known = self._run(lambda b: b.is_known(fp))
            if known:
                self._cache(fp, now, refreshed=0.0)
            return known
        return False

    # What happened after the check.

    def succeeded(self, credential: str) -> None:
        """Remember a credential that authenticated (or that the gateway just handed out)."""
        fp, now, ttl = self.fingerprint(credential), self.clock(), self.policy.known_good_ttl
        with self._known_lock:
            entry = self._known.get(fp)
        # Redis is refreshed at most every quarter TTL per process: not a write per request.
        if entry is not None and now - entry[1] < ttl / 4:
            return
        self._run(lambda b: b.remember(fp, ttl))
        self._cache(fp, now, refreshed=now)

    def failed(self, address: str | None, credential: str | None) -> tuple[bool, list[Aggregate]]:
        """Count a failure: (audit this one on its own?, aggregates now due for writing).

        With a credential it also counts toward the address's limit and is forgotten as known-good.
        """
        address = normalize_address(address)
        fp = None
        if credential is not None:
            fp = self.fingerprint(credential)
            with self._known_lock:
                self._known.pop(fp, None)
            self._run(lambda b: b.windows.hit(self.policy.limit, "bearer-failures", address))
        now = self.clock()
        window = int(now // self.policy.audit_window)
        individual, due = self._run(lambda b: b.note(address, fp, first=self.policy.audit_first,
                                                     policy=self.policy, window=window, now=now))
        return individual, self._claim(due) + self._claim_memory(now)

    def due_aggregates(self) -> list[Aggregate]:
        """Aggregates whose window is over; looked for at most a few times per window by this process."""
        now = self.clock()
        if now < self._next_sweep:
            return []
        self._next_sweep = now + max(1.0, self.policy.audit_window / 4)
        return self._claim(self._run(lambda b: b.due(now, self.policy))) + self._claim_memory(now)

    def restore(self, aggregates: list[Aggregate]) -> None:
        """Put back counts whose audit entry could not be written; they are written next time."""
        by_window: dict[int, dict[str, int]] = {}
        for agg in aggregates:
            by_window.setdefault(agg.window_start, {})[agg.address or OTHER_ADDRESSES] = agg.count
        for start, counts in by_window.items():
            window, due_at = start // self.policy.audit_window, start + self.policy.audit_window
            self._run(lambda b, w=window, c=counts, d=due_at: b.restore(w, c, d))

    def _claim(self, windows: list[int]) -> list[Aggregate]:
        out: list[Aggregate] = []
        for window in windows:
            out.extend(self._aggregates(window, self._run(lambda b, w=window: b.claim(w))))
        return out

    def _claim_memory(self, now: float) -> list[Aggregate]:
        # Counts kept in memory during a Redis outage are written once their window is over, Redis back or not.
        if not self._alive():
            return []  # _run already used memory
        out: list[Aggregate] = []
        for window in self._memory.due(now, self.policy):
            out.extend(self._aggregates(window, self._memory.claim(window)))
        return out

    def _aggregates(self, window: int, counts: dict[str, int]) -> list[Aggregate]:
        start = window * self.policy.audit_window
        return [Aggregate(start, None if address == OTHER_ADDRESSES else address, count)
                for address, count in sorted(counts.items())]

    def _cache(self, fp: str, now: float, *, refreshed: float) -> None:
        with self._known_lock:
            self._known[fp] = (now + self.policy.known_good_ttl, refreshed)
            self._known.move_to_end(fp)
            while len(self._known) > LOCAL_KNOWN_GOOD:
                self._known.popitem(last=False)

    # Redis, or this process's memory while Redis is down.

    def _alive(self) -> bool:
        return self._primary is not None and time.monotonic() >= self._dead_until

    def _run(self, operation):
        if self._alive():
            try:
                result = operation(self._primary)
                self._backoff = 1.0
                return result
            except Exception as error:  # any storage failure: carry on in memory, never fail open
                log.warning("bearer guard storage unreachable; using process memory",
                            extra={"exception_type": type(error).__name__, "retry_in": self._backoff})
                self._dead_until = time.monotonic() + self._backoff
                self._backoff = min(MAX_BACKOFF, self._backoff * 2)
        return operation(self._memory)
