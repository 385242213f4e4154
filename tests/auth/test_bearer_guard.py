"""The bearer guard's audit bookkeeping on Redis and on process memory: entries per window stay bounded even
when the failures come from ever new addresses, and every failure is accounted for exactly once."""

from __future__ import annotations

import pytest
from limits import parse
from limits.storage import RedisStorage

from gateway.auth.bearer_guard import BearerGuard, GuardPolicy

SECRET = "a test secret that is long enough to key fingerprints"


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["redis", "memory"])
def storage(request, redis_url):
    """The limiter's Redis storage, or none (the guard then keeps everything in process memory)."""
    return RedisStorage(redis_url, socket_connect_timeout=1, socket_timeout=1) if request.param == "redis" else None


def _mine(guard, due, window_start):
    # Windows of other tests that happen to be due go back untouched.
    guard.restore([a for a in due if a.window_start != window_start])
    return [a for a in due if a.window_start == window_start]


def _guard(storage, clock, *, first=2, max_entries=5) -> BearerGuard:
    policy = GuardPolicy(limit=parse("1000 per minute"), known_good_ttl=3600, audit_first=first, audit_window=60,
                         audit_max_entries=max_entries)
    return BearerGuard(storage, secret=SECRET, policy=policy, clock=clock)


def test_entries_per_window_are_capped_and_every_failure_is_counted(storage):
    # A window of our own, far ahead, so no other test's windows mix in.
    start = 60 * (4_000_000_000 // 60)
    clock = Clock(start + 5.0)
    guard = _guard(storage, clock)
    singly = 0
    for i in range(10):  # ten addresses, four failures each
        for _ in range(4):
            audit_this, due = guard.failed(f"2001:db8:ffff::{i + 1:x}", "rgw_bad")
            singly += audit_this
            assert _mine(guard, due, start) == []
    clock.now += 61
    mine = _mine(guard, guard.failed("2001:db8:ffff::99", None)[1], start)
    # At most max_entries entries (single or aggregate) for addresses, plus one for the rest.
    assert singly + len([a for a in mine if a.address is not None]) <= 5
    assert [a.address for a in mine].count(None) == 1
    assert singly + sum(a.count for a in mine) == 40
    # Claimed once: nothing is written twice.
    clock.now += 61
    assert _mine(guard, guard.failed("2001:db8:ffff::98", None)[1], start) == []


def test_fingerprints_are_keyed_and_never_the_credential(storage):
    guard, other = _guard(storage, Clock(0.0)), BearerGuard(None, secret="another secret, also long enough!!",
                                                            policy=_guard(None, Clock(0.0)).policy)
    credential = "rgw_abcdefghijklmnop_" + "A" * 40
    assert guard.fingerprint(credential) != other.fingerprint(credential)
    assert credential not in guard.fingerprint(credential) and len(guard.fingerprint(credential)) == 64


def test_a_credential_this_process_saw_authenticate_costs_no_failure_lookup(storage):
    """The address's failure window is read only for credentials not known here: an API client's ordinary
    request makes no round trip for it, and a credential that then fails is looked up again."""
    guard = _guard(storage, Clock(1000.0))
    reads = []
    backend = guard._primary if guard._primary is not None else guard._memory
    windows = backend.windows
    original = windows.get_window_stats

    def counted(*args, **kwargs):
        reads.append(args)
        return original(*args, **kwargs)

    windows.get_window_stats = counted
    credential = "rgw_known_" + "B" * 40
    assert guard.refusal("192.0.2.10", credential) is None
    assert len(reads) == 1  # not known yet: the window is read
    guard.succeeded(credential)
    for _ in range(5):
        assert guard.refusal("192.0.2.10", credential) is None
    assert len(reads) == 1
    guard.failed("192.0.2.10", credential)  # revoked since, say: forgotten as known good
    assert guard.refusal("192.0.2.10", credential) is None
    assert len(reads) == 2
