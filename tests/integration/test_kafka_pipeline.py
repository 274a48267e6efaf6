"""The whole path on the real broker: replay connector → Kafka → Faust worker → alerts.

These tests start a worker subprocess against the broker at STORMWATCH_KAFKA (the
session fixture starts deploy/kafka/kafka.sh if none answers) with their own topic
prefix and app id, so they never see each other's records.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from stormwatch.local import run_file
from stormwatch.model import Alert, SeriesStats
from stormwatch.sinks.console import read_topic
from tests.conftest import cli, settings_of, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def values(env: dict[str, str], topic: str, idle: float = 2.0) -> list[bytes]:
    async def collect() -> list[bytes]:
        return [v async for v in read_topic(settings_of(env), topic, idle)]

    return asyncio.run(collect())


def alerts_of(env: dict[str, str]) -> list[Alert]:
    return [Alert.from_dict(json.loads(v)) for v in values(env, "alerts")]


def stats_of(env: dict[str, str]) -> list[SeriesStats]:
    return [SeriesStats.from_dict(json.loads(v)) for v in values(env, "stats")]


def per_series(stats: list[SeriesStats]) -> dict[str, list[SeriesStats]]:
    out: dict[str, list[SeriesStats]] = {}
    for s in stats:
        out.setdefault(s.series, []).append(s)
    return out


def by_incident(alerts: list[Alert]) -> dict[str, list[str]]:
    """Each incident's events in order (the alerts topic is keyed, so ordered, by alert id)."""
    out: dict[str, list[str]] = {}
    for a in alerts:
        out.setdefault(a.id, []).append(a.event)
    return out


def utc(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


def test_airline_replay_through_kafka_equals_local_runner(env, worker, data, tmp_path):
    posts = data / "posts" / "airline_posts_unlabelled.jsonl"
    reference = run_file(posts, settings_of(env), keep_stats=True)
    w = worker()
    out = json.loads(cli(env, "ingest", "replay", str(posts), "--quiet").stdout)
    assert out["posts"] == 9843 and out["dead_lettered"] == 0
    expected_buckets = len(reference.stats)
    wait_for(lambda: len(values(env, "stats", 1.0)) >= expected_buckets, 600,
             every=5, what=f"{expected_buckets} closed buckets on the stats topic")
    assert w.alive()
    stats = stats_of(env)
    assert len(stats) == expected_buckets
    assert per_series(stats) == per_series(reference.stats)  # every bucket, in order, field by field
    # The detect agent may still be working through the last buckets.
    wait_for(lambda: len(values(env, "alerts", 1.0)) >= len(reference.alerts), 300, every=3,
             what=f"{len(reference.alerts)} alert events")
    alerts = alerts_of(env)
    assert by_incident(alerts) == by_incident(reference.alerts)
    assert {(a.id, a.event): a for a in alerts} == {(a.id, a.event): a for a in reference.alerts}

    opened = {a.id: a for a in alerts if a.event == "open" and a.channel == "*"}
    american = [a for a in opened.values() if a.brand == "American"]
    # American's posts only start on 2015-02-22 ~19h: that start is no crisis.
    assert all(a.started_at >= utc("2015-02-22T23:00:00") for a in american)
