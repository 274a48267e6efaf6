"""Consumer lag read from the real broker, over one pair of clients read after read."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stormwatch.app.lag import LagReader, caught_up_at
from stormwatch.app.topics import TOPICS, changelog_topics, delete_topics, ensure_topics
from tests.conftest import settings_of

pytestmark = [pytest.mark.kafka]


async def produce(settings, topic: str, partition: int, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka)
    await producer.start()
    try:
        for i in range(n):
            await producer.send_and_wait(settings.topic(topic), b"x%d" % i, partition=partition)
    finally:
        await producer.stop()


async def commit(settings, offsets: dict[tuple[str, int], int]) -> None:
    """Commit offsets for the worker's group, as a worker would (manual assignment)."""
    tps = {TopicPartition(settings.topic(t), p): o for (t, p), o in offsets.items()}
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka, group_id=settings.app_id,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


def test_one_reader_follows_commits_and_holds_no_partition(env):
    s = settings_of(env)

    async def scenario() -> None:
        await ensure_topics(s)
        await produce(s, "posts.raw", 1, 150)  # a gap above SMALL_GAP: the offset difference
        await produce(s, "stats", 2, 7)        # a small gap: the records are counted
        async with LagReader(s) as reader:
            parts = await reader.partitions()
            assert parts["posts.raw", 1] == (0, 150, 150)
            assert parts["stats", 2] == (0, 7, 7)
            assert await reader.topics() == {"posts.raw": 150, "posts.scored": 0, "stats": 7}
            assert reader._consumer.assignment() == set()  # counting left nothing assigned

            await commit(s, {("posts.raw", 1): 100, ("stats", 2): 7})
            parts = await reader.partitions()  # the same clients see the new commits
            assert parts["posts.raw", 1] == (100, 150, 50)
            assert await reader.topics() == {"posts.raw": 50, "posts.scored": 0, "stats": 0}

            await commit(s, {("posts.raw", 1): 150})
            before = time.monotonic()
            lag, at = await caught_up_at(s, timeout_s=30, settle_s=1.0)
            assert lag == {"posts.raw": 0, "posts.scored": 0, "stats": 0}
            # the time of the first zero read, not of the settle read a second later
            assert before <= at <= time.monotonic() - 1.0

    asyncio.run(scenario())


def test_caught_up_at_names_the_partitions_behind_on_timeout(env):
    s = settings_of(env)

    async def scenario() -> None:
        await ensure_topics(s)
        await produce(s, "posts.scored", 3, 5)
        with pytest.raises(TimeoutError, match=r"posts\.scored\[3\] committed 0 of 5 \(5 behind\)"):
            await caught_up_at(s, timeout_s=1.0, settle_s=1.0)

    asyncio.run(scenario())


def test_delete_topics_removes_a_runs_topics_and_changelogs_only(env):
    s = settings_of(env)
    other = settings_of({**env, "STORMWATCH_APP_ID": env["STORMWATCH_APP_ID"] + "x",
                         "STORMWATCH_TOPIC_PREFIX": "keep" + env["STORMWATCH_TOPIC_PREFIX"]})

    async def run() -> tuple[list[str], list[str]]:
        await ensure_topics(s, tables=True)
        kept = await ensure_topics(other)
        deleted = await delete_topics(s.kafka, s.app_id + ".")  # the topics, not the changelogs
        deleted += await delete_topics(s.kafka, s.app_id + "-")  # the changelogs
        await delete_topics(s.kafka, other.topic_prefix)
        return deleted, kept

    deleted, kept = asyncio.run(run())
    assert deleted == sorted(s.topic(t.name) for t in TOPICS) + sorted(changelog_topics(s))
    assert len(kept) == len(TOPICS) and not set(kept) & set(deleted)
    with pytest.raises(ValueError, match="prefix"):
        asyncio.run(delete_topics(s.kafka, ""))
