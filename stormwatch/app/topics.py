"""The topics: names, partitions, retention and cleanup, created explicitly and idempotently.

Every topic has the same partition count: Faust co-partitions them, and the worker
writes each output to the partition of the input it came from, so one brand's
posts, stats, alerts and table state all live in one partition (and one transaction).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from stormwatch.config import Settings

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str]
    doc: str


TOPICS = (
    TopicSpec("posts.raw", {"retention.ms": str(7 * DAY_MS)}, "validated posts, keyed by brand"),
    TopicSpec("posts.scored", {"retention.ms": str(7 * DAY_MS)}, "posts with sentiment, keyed by brand"),
    TopicSpec("stats", {"retention.ms": str(30 * DAY_MS)}, "closed buckets per series"),
    TopicSpec("alerts", {"cleanup.policy": "compact", "min.compaction.lag.ms": str(DAY_MS)},
              "alert state changes, keyed by alert id (compacted)"),
    TopicSpec("posts.dlq", {"retention.ms": str(30 * DAY_MS), "max.message.bytes": str(8 * 1024 * 1024)},
              "rejected records with the reason"),
)

#: The worker's tables. Their changelog topics are created here, before the worker
#: subscribes, so the partition assignment never races a topic still being created.
TABLES = ("buckets", "monitors")


def changelog_topics(settings: Settings) -> list[str]:
    return [f"{settings.app_id}-{table}-changelog" for table in TABLES]


async def ensure_topics(settings: Settings, timeout_s: float = 30.0, tables: bool = False) -> list[str]:
    """Create the project's topics that are missing (and the worker's changelogs if
    ``tables``); return the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(settings.topic(t.name), settings.partitions, 1, topic_configs=t.config)
               for t in TOPICS if settings.topic(t.name) not in existing]
        if tables:
            new += [NewTopic(name, settings.partitions, 1, topic_configs={"cleanup.policy": "compact"})
                    for name in changelog_topics(settings) if name not in existing]
        for topic in new:
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass  # another process created it in the meantime
        await _check_partitions(admin, settings, tables)
    finally:
        await admin.close()
    return created


async def _check_partitions(admin: AIOKafkaAdminClient, settings: Settings, tables: bool) -> None:
    names = [settings.topic(t.name) for t in TOPICS] + (changelog_topics(settings) if tables else [])
    for _ in range(50):  # a new topic's partitions show up in the metadata after a moment
        described = await admin.describe_topics(names)
        if all(d["partitions"] for d in described):
            break
        await asyncio.sleep(0.2)
    for d in described:
        n = len(d["partitions"])
        if n != settings.partitions:
            raise RuntimeError(
                f"topic {d['topic']!r} has {n} partitions but STORMWATCH_PARTITIONS={settings.partitions}: "
                "all topics must have the same count (delete the topics or change the setting)")


async def delete_topics(kafka: str, prefix: str, timeout_s: float = 20.0) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a throwaway run's topics and
    its tables' changelogs: tests and benchmarks use a fresh app id as that prefix)."""
    if not prefix:
        raise ValueError("refusing to delete every topic: give a prefix")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
        if names:
            await admin.delete_topics(names, timeout_ms=int(timeout_s * 1000))
        return names
    finally:
        await admin.close()


def main(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    try:
        created = asyncio.run(ensure_topics(settings))
    except Exception as exc:
        print(f"stormwatch topics: cannot reach Kafka at {settings.kafka}: {exc!r}", file=sys.stderr)
        return 1
    for t in TOPICS:
        name = settings.topic(t.name)
        mark = "created" if name in created else "exists"
        print(f"{name:<24}{settings.partitions:>3} partitions  {mark:<8} {t.doc}")
    return 0
