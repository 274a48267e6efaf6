"""Micro-batching helpers for scoring a stream with a transformer: plain objects, no I/O.

- :func:`dedupe`: score each distinct text once (retweets, copy-paste campaigns);
- :func:`length_batches`: group texts of similar token length so padding is small;
- :class:`MicroBatcher`: collect posts and flush by size or by age (the Faust agent
  does the same with ``stream.take(n, within=t)``; the local runner can use this);
- :class:`TextCache`: a bounded memory of recent text → result, so a duplicate that
  arrives in a later batch is not scored again.

>>> uniq, inverse = dedupe(["a", "b", "a"])
>>> uniq, inverse
(['a', 'b'], [0, 1, 0])
>>> length_batches([5, 1, 9, 2], batch_size=2)
[[1, 3], [0, 2]]
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
V = TypeVar("V")


def dedupe(items: Sequence[T]) -> tuple[list[T], list[int]]:
    """Distinct items in first-seen order, and for each input the index of its distinct item."""
    index: dict[T, int] = {}
    inverse = []
    for item in items:
        inverse.append(index.setdefault(item, len(index)))
    return list(index), inverse


def length_batches(lengths: Sequence[int], batch_size: int = 64,
                   max_tokens: int | None = None) -> list[list[int]]:
    """Indices sorted by length, cut into batches of at most ``batch_size`` items and,
    when ``max_tokens`` is set, at most ``max_tokens`` padded tokens per batch.

    >>> length_batches([3, 3, 3, 10], batch_size=8, max_tokens=12)
    [[0, 1, 2], [3]]
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # sorted ascending, so the padded width of the batch is the newest length
        too_many = len(current) >= batch_size
        too_wide = max_tokens is not None and current and (len(current) + 1) * lengths[i] > max_tokens
        if too_many or too_wide:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class MicroBatcher(Generic[T]):
    """Collects items; a batch is ready when it holds ``size`` items or its oldest item
    waited ``max_wait`` seconds.

    >>> b = MicroBatcher(size=2, max_wait=10.0, clock=lambda: 0.0)
    >>> b.add("x") is None
    True
    >>> b.add("y")
    ['x', 'y']
    >>> b.add("z"); b.due(now=5.0), b.due(now=10.0)
    (False, True)
    >>> b.flush()
    ['z']
    """

    def __init__(self, size: int = 64, max_wait: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.max_wait = max_wait
        self._clock = clock
        self._items: list[T] = []
        self._first = 0.0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> list[T] | None:
        """Add one item; returns the full batch when ``size`` is reached."""
        if not self._items:
            self._first = self._clock()
        self._items.append(item)
        return self.flush() if len(self._items) >= self.size else None

    def due(self, now: float | None = None) -> bool:
        """True when the oldest waiting item has waited ``max_wait`` seconds."""
        now = self._clock() if now is None else now
        return bool(self._items) and now - self._first >= self.max_wait

    def flush(self) -> list[T]:
        """Take everything that is waiting (possibly nothing)."""
        items, self._items = self._items, []
        return items


class TextCache(Generic[V]):
    """Bounded LRU memory of key → value (e.g. text → Sentiment).

    >>> c = TextCache(maxsize=2)
    >>> c.put("a", 1); c.put("b", 2); c.get("a"); c.put("c", 3)
    1
    >>> c.get("b") is None, len(c)
    (True, 2)
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, V] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Hashable) -> V | None:
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: Hashable, value: V) -> None:
        if self.maxsize <= 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)
