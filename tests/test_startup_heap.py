"""gateway.startup_heap: what a process built at start leaves the collector's full passes; garbage does not."""

from __future__ import annotations

import gc
import weakref

from gateway.startup_heap import freeze_startup_heap


class _Node:
    pass


def test_start_up_objects_are_frozen_and_start_up_garbage_is_collected_first():
    kept = [{"n": n} for n in range(1000)]
    cycle = _Node()
    cycle.me = cycle  # garbage only a collection finds (a reference cycle)
    gone = weakref.ref(cycle)
    del cycle
    gc.unfreeze()
    try:
        freeze_startup_heap()
        assert gone() is None  # collected before the freeze, not kept forever
        assert gc.get_freeze_count() >= len(kept)
        assert not any(obj is kept for obj in gc.get_objects())  # out of every generation the collector walks
    finally:
        gc.unfreeze()
