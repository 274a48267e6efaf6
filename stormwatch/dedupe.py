"""Dedupe posts by id, with memory bounded by an event-time horizon.

The store is any mutable mapping: a dict in the local runner, a Faust table (backed
by a changelog topic) in the worker. Keys are ``brand`` + id, so eviction can walk
one brand's keys, which all live in that brand's partition.

>>> d = Deduper({}, horizon_seconds=3600)
>>> d.seen("United", "a", 1000.0), d.seen("United", "a", 1001.0), d.seen("American", "a", 1001.0)
(False, True, False)
>>> d.evict("United", now=1000.0 + 7200)
1
>>> d.seen("United", "a", 9000.0)
False
"""

from __future__ import annotations

from collections.abc import MutableMapping

SEP = "\x1f"


class Deduper:
    """Remembers (brand, post id) → event time for ``horizon_seconds`` of event time."""

    def __init__(self, store: MutableMapping[str, float], horizon_seconds: float = 2 * 86400) -> None:
        self.store = store
        self.horizon_seconds = horizon_seconds

    def seen(self, brand: str, post_id: str, t: float) -> bool:
        """True if this post was seen before; otherwise remember it and return False."""
        key = f"{brand}{SEP}{post_id}"
        if key in self.store:
            return True
        self.store[key] = t
        return False

    def evict(self, brand: str, now: float) -> int:
        """Forget ``brand``'s ids older than the horizon (event time); return how many."""
        prefix = f"{brand}{SEP}"
        cutoff = now - self.horizon_seconds
        old = [k for k, t in list(self.store.items()) if k.startswith(prefix) and t < cutoff]
        for k in old:
            del self.store[k]
        return len(old)
