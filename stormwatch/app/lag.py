"""Consumer lag of the worker's group: how many records each input topic still holds for it.

``stormwatch lag`` prints it; ``--wait`` blocks until the worker has caught up with
everything written so far (the demo and the benchmarks use this).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from stormwatch.config import Settings

T = TypeVar("T")

#: The topics the worker consumes, in pipeline order.
INPUTS = ("posts.raw", "posts.scored", "stats")


#: Below this offset gap the records are counted: transaction markers take offsets too.
SMALL_GAP = 100


async def _records_between(consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int) -> int:
    consumer.assign([tp])
    consumer.seek(tp, start)
    n = 0
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=500)
        n += sum(len(v) for v in batch.values())
        if not batch:
            break
    return n


#: How long a lag read retries errors the broker says will pass (a group coordinator not
#: elected yet on a broker that has just started, a leader moving).
RETRY_S = 30.0


async def _retrying(call: Callable[[], Awaitable[T]], within_s: float = RETRY_S) -> T:
    """``await call()``, again every 0.5 s while it raises a retriable Kafka error, for at
    most ``within_s`` seconds; then the last error is raised.

    >>> from aiokafka.errors import GroupCoordinatorNotAvailableError, GroupAuthorizationFailedError
    >>> tries = []
    >>> async def flaky(error):
    ...     tries.append(error)
    ...     if len(tries) < 3:
    ...         raise error()
    ...     return "read"
    >>> asyncio.run(_retrying(lambda: flaky(GroupCoordinatorNotAvailableError))), len(tries)
    ('read', 3)
    >>> tries.clear()
    >>> asyncio.run(_retrying(lambda: flaky(GroupAuthorizationFailedError)))  # not one that passes
    Traceback (most recent call last):
    ...
    aiokafka.errors.GroupAuthorizationFailedError: ...
    """
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await call()
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(0.5)


class LagReader:
    """Reads the group's lag as often as asked over one admin client and one consumer.

    A benchmark polling every second, or a worker exporting the metric, would otherwise
    open (bootstrap, fetch metadata) and close two clients per read.
    ``async with LagReader(settings) as r: await r.partitions()``.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka, isolation_level="read_committed")
        try:
            await admin.start()
            await consumer.start()
        except BaseException:
            await consumer.stop()
            await admin.close()
            raise
        self._admin, self._consumer = admin, consumer

    async def close(self) -> None:
        admin, consumer, self._admin, self._consumer = self._admin, self._consumer, None, None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()

    async def __aenter__(self) -> LagReader:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def partitions(self) -> dict[tuple[str, int], tuple[int, int, int]]:
        """Per input partition: (committed offset, end offset, records not yet committed)."""
        if self._admin is None or self._consumer is None:
            await self.start()
        admin, consumer, s = self._admin, self._consumer, self.settings
        assert admin is not None and consumer is not None
        committed = await _retrying(lambda: admin.list_consumer_group_offsets(s.app_id))
        tps = [TopicPartition(s.topic(t), p) for t in INPUTS for p in range(s.partitions)]
        ends = await consumer.end_offsets(tps)
        out = {}
        try:
            for tp in tps:
                meta = committed.get(tp)
                done = meta.offset if meta is not None and meta.offset >= 0 else 0
                gap = max(0, ends[tp] - done)
                if 0 < gap <= SMALL_GAP:
                    gap = await _records_between(consumer, tp, done, ends[tp])
                out[tp.topic[len(s.topic_prefix):], tp.partition] = (done, ends[tp], gap)
        finally:
            consumer.unsubscribe()  # no background fetching between reads
        return out

    async def topics(self) -> dict[str, int]:
        """Records not yet committed, per input topic (:func:`per_topic`)."""
        return per_topic(await self.partitions())


async def partition_lag(settings: Settings) -> dict[tuple[str, int], tuple[int, int, int]]:
    """Per input partition: (committed offset, end offset, records not yet committed)."""
    async with LagReader(settings) as reader:
        return await reader.partitions()


def per_topic(lag: dict[tuple[str, int], tuple[int, int, int]]) -> dict[str, int]:
    """Sum :func:`partition_lag` per input topic (0 for a topic with no partition listed).

    >>> per_topic({("posts.raw", 0): (5, 9, 4), ("posts.raw", 1): (3, 3, 0), ("stats", 0): (1, 2, 1)})
    {'posts.raw': 4, 'posts.scored': 0, 'stats': 1}
    """
    out = dict.fromkeys(INPUTS, 0)
    for (topic, _), (_, _, n) in lag.items():
        out[topic] = out.get(topic, 0) + n
    return out


def behind(lag: dict[tuple[str, int], tuple[int, int, int]]) -> str:
    """The partitions still behind, for an error message.

    >>> behind({("posts.raw", 3): (714, 1825, 1111), ("stats", 0): (2, 2, 0)})
    'posts.raw[3] committed 714 of 1825 (1111 behind)'
    """
    return ", ".join(f"{t}[{p}] committed {done} of {end} ({n} behind)"
                     for (t, p), (done, end, n) in sorted(lag.items()) if n) or "none"


#: The exit status of a worker that gives up on a stalled partition (EX_TEMPFAIL: try again).
STALL_EXIT_CODE = 75


class StallWatch:
    """Which partitions have had records waiting without a commit for ``after_s`` seconds.

    Fed the lag reads (:meth:`LagReader.partitions`) of the partitions this worker owns.
    A partition is stalled when it has records waiting and its committed offset has not
    moved for ``after_s`` seconds; moving, or having nothing to do, clears it. A slow
    model batch stalls every partition of its agent for as long as it runs, so
    ``after_s`` belongs well above the slowest batch (the default is twice the longest
    poll interval). Pure: the caller passes the time.

    >>> w = StallWatch(after_s=60)
    >>> w.observe(0, {("posts.raw", 3): (714, 900, 186), ("stats", 0): (5, 5, 0)})
    {}
    >>> w.observe(59, {("posts.raw", 3): (714, 950, 236)})
    {}
    >>> w.observe(60, {("posts.raw", 3): (714, 990, 276)})
    {('posts.raw', 3): 60.0}
    >>> w.observe(61, {("posts.raw", 3): (715, 990, 275)})  # it moved
    {}
    """

    def __init__(self, after_s: float) -> None:
        if after_s <= 0:
            raise ValueError(f"a stall needs a positive number of seconds, got {after_s}")
        self.after_s = after_s
        self._since: dict[tuple[str, int], tuple[int, float]] = {}  # (committed, since when)

    def observe(self, now: float, parts: dict[tuple[str, int], tuple[int, int, int]]
                ) -> dict[tuple[str, int], float]:
        """Stalled partitions with the seconds their commit has not moved."""
        since: dict[tuple[str, int], tuple[int, float]] = {}
        for tp, (committed, _, waiting) in parts.items():
            if not waiting:
                continue
            prev = self._since.get(tp)
            since[tp] = prev if prev is not None and prev[0] == committed else (committed, now)
        self._since = since  # partitions not listed (moved to another worker, caught up) are forgotten
        return {tp: float(now - t) for tp, (_, t) in sorted(since.items()) if now - t >= self.after_s}


async def consumer_lag(settings: Settings) -> dict[str, int]:
    """Records not yet committed by the worker's group, per input topic."""
    return per_topic(await partition_lag(settings))


async def caught_up_at(settings: Settings, timeout_s: float, settle_s: float = 3.0
                      ) -> tuple[dict[str, int], float]:
    """Wait until the lag is zero on every input twice, ``settle_s`` apart.

    Returns the lag and the ``time.monotonic()`` of the first of those zero reads: when
    the worker had caught up, not when this noticed it for sure.
    """
    deadline = time.monotonic() + timeout_s
    zero_since: float | None = None
    async with LagReader(settings) as reader:
        while True:
            parts = await reader.partitions()
            lag = per_topic(parts)
            now = time.monotonic()
            if sum(lag.values()) == 0:
                zero_since = zero_since or now
                if now - zero_since >= settle_s:
                    return lag, zero_since
            else:
                zero_since = None
            if now > deadline:
                raise TimeoutError(f"worker still behind after {timeout_s:.0f} s: {lag}; {behind(parts)}")
            await asyncio.sleep(0.5 if zero_since is None else 1.0)


async def wait_caught_up(settings: Settings, timeout_s: float, settle_s: float = 3.0) -> dict[str, int]:
    """Wait until the lag is zero on every input twice, ``settle_s`` apart (:func:`caught_up_at`)."""
    return (await caught_up_at(settings, timeout_s, settle_s))[0]


def main(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    try:
        lag = (asyncio.run(wait_caught_up(settings, args.timeout)) if args.wait
               else asyncio.run(consumer_lag(settings)))
    except TimeoutError as exc:
        print(f"stormwatch lag: {exc}", file=sys.stderr)
        return 1
    for topic, n in lag.items():
        print(f"{settings.topic(topic):<28}{n:>10}")
    return 0
