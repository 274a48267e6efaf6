"""``stormwatch alerts``: print the alerts topic as JSON lines (committed records only)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from stormwatch.config import Settings
from stormwatch.model import Alert


async def read_records(settings: Settings, name: str,
                       idle_timeout: float | None) -> AsyncIterator[ConsumerRecord]:
    """Every committed record of a topic from the beginning, until ``idle_timeout`` s pass quietly
    (``None``: follow the topic for ever)."""
    topic = settings.topic(name)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka, isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if parts is None:
            await consumer._client.force_metadata_update()  # new topic: refresh once
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return  # the topic does not exist (yet)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            wait = 1.0 if idle_timeout is None else idle_timeout
            batch = await consumer.getmany(*tps, timeout_ms=int(wait * 1000))
            if not batch:
                if idle_timeout is None:
                    continue
                return
            for records in batch.values():
                for rec in records:
                    yield rec
    finally:
        await consumer.stop()


async def read_topic(settings: Settings, name: str, idle_timeout: float | None) -> AsyncIterator[bytes]:
    """The values of :func:`read_records`."""
    async for rec in read_records(settings, name, idle_timeout):
        yield rec.value


async def read_alerts(settings: Settings, idle_timeout: float = 10.0) -> list[Alert]:
    return [Alert.from_dict(json.loads(v)) async for v in read_topic(settings, "alerts", idle_timeout)]


def main(args: argparse.Namespace) -> int:
    settings = Settings.from_env()

    async def run() -> None:
        async for value in read_topic(settings, "alerts", args.timeout):
            sys.stdout.write(value.decode("utf-8") + "\n")
            sys.stdout.flush()

    asyncio.run(run())
    return 0
