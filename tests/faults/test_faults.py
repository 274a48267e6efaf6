"""Faults against the real broker and workers: poison, slow batches, a killed worker, a broker
restart, and Alertmanager or its webhook receiver down (the paging path).

The pipeline's guarantee (docs/architecture.md, "Delivery guarantee"): at least once
from Kafka, applied once by the stateful stages, alerts idempotent by id. Each test here
checks exactly that under one fault: every bucket equals the local runner's (nothing
lost, nothing counted twice) and every incident is paged once. Workers load the
``tests.faults.faulty`` plugin where a test needs a scorer or detector that fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from stormwatch.app.topics import ensure_topics
from stormwatch.config import REPO_ROOT
from stormwatch.local import run_file
from stormwatch.model import Alert, dumps
from tests.conftest import cli, settings_of, wait_for
from tests.faults.faulty import POISON_COUNT
from tests.integration.test_kafka_pipeline import (
    alerts_of,
    buckets_of,
    once,
    replay_through,
    stats_of,
    values,
)
from tests.integration.test_oncall_e2e import Pager as PagerProcess
from tests.oncall_servers import Receiver, alertmanager, free_port
from tests.test_oncall_metrics import slice_file

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

T0 = datetime(2026, 3, 2, tzinfo=UTC)
PLUGIN = {"STORMWATCH_PLUGINS": "tests.faults.faulty"}


def synthetic(path: Path, minutes: range, per_minute: dict[int, int], start: int = 0,
              extra: dict[int, list[str]] | None = None) -> int:
    """Posts of brand Acme: ``per_minute.get(m, 2)`` a minute; ``extra`` texts at given minutes."""
    lines, i = [], start
    for m in minutes:
        texts = ["the app works fine today"] * per_minute.get(m, 2) + (extra or {}).get(m, [])
        for k, text in enumerate(texts):
            when = T0 + timedelta(minutes=m, seconds=k % 60)
            lines.append(json.dumps({"id": f"a{i}", "created_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                     "channel": "twitter", "brand": "Acme", "text": text}))
            i += 1
    path.write_text("\n".join(lines) + "\n")
    return i


def dead_letters(env: dict[str, str]) -> list[dict]:
    return [json.loads(v) for v in values(env, "posts.dlq")]


def caught_up(env: dict[str, str], timeout: float = 180) -> None:
    cli(env, "lag", "--wait", "--timeout", str(timeout), timeout=timeout + 30)


def test_poison_post_and_poison_bucket_go_to_the_dlq_and_the_agents_keep_consuming(env, worker, tmp_path):
    env.update({**PLUGIN, "STORMWATCH_SCORER": "faulty", "STORMWATCH_DETECTOR": "faulty-seasonal",
                "STORMWATCH_DETECTOR_PARAMS": json.dumps({"warmup": 30, "cooldown": 0})})
    w = worker()
    # Wave 1: a post that makes the scorer raise, and a minute with a count that makes the
    # detector raise (after its warm-up, so the detector really sees it).
    first = tmp_path / "wave1.jsonl"
    n = synthetic(first, range(0, 90), {60: POISON_COUNT}, extra={30: ["POISON-SCORER here"]})
    assert json.loads(cli(env, "ingest", "replay", str(first), "--quiet").stdout)["posts"] == n
    # The poison minute is a bucket of two series: Acme on twitter, and Acme on all channels.
    dlq = wait_for(lambda: (d := dead_letters(env)) and len(d) >= 3 and d, 120, what="three dead letters")
    assert Counter((d["stage"], d["reason"]) for d in dlq) == Counter(
        {("score", "scorer_error"): 1, ("detect", "detector_error"): 2})
    scorer_dl = next(d for d in dlq if d["stage"] == "score")
    assert "poisoned post" in scorer_dl["error"] and "POISON-SCORER" in scorer_dl["raw"]
    buckets = [json.loads(d["raw"]) for d in dlq if d["stage"] == "detect"]
    assert all("poisoned bucket" in d["error"] for d in dlq if d["stage"] == "detect")
    assert sorted((b["channel"], b["count"]) for b in buckets) == [("*", POISON_COUNT),
                                                                    ("twitter", POISON_COUNT)]

    # Waves 2-4, each after the previous one was processed: the agents did not die slowly.
    # The last wave has a burst the (still working) detector must page.
    for wave, minutes in enumerate([range(90, 150), range(150, 210), range(210, 300)], start=2):
        f = tmp_path / f"wave{wave}.jsonl"
        n = synthetic(f, minutes, {250: 40, 251: 40, 252: 40}, start=n)
        cli(env, "ingest", "replay", str(f), "--quiet")
        caught_up(env)
        assert w.alive()
    stats = buckets_of([s for s in stats_of(env) if s.channel == "*"])
    counts = {k[1]: s.count for k, s in stats.items()}
    want = {T0 + timedelta(minutes=m): (40 if m in (250, 251, 252) else POISON_COUNT if m == 60 else 2)
            for m in range(0, 297)}  # the last minutes are still open (watermark)
    assert {t: counts.get(t) for t in want} == want  # minute 30: 2, the poison post is not counted
    opened = [a for a in once(alerts_of(env)) if a.event == "open" and a.channel == "*"]
    assert [a.started_at for a in opened] == [T0 + timedelta(minutes=250)]
    assert len(dead_letters(env)) == 3


def replay_with_slow_scorer(env: dict[str, str], path: Path, seconds: int) -> tuple[int, float]:
    """Replay 30 minutes of Acme posts, one of which makes the ``faulty`` scorer's batch take
    ``seconds``; returns the post count and when the replay started (``time.monotonic``)."""
    n = synthetic(path, range(0, 30), {}, extra={10: [f"SLOW-SCORER:{seconds} the model is slow"]})
    t = time.monotonic()
    cli(env, "ingest", "replay", str(path), "--quiet")
    return n, t


def test_a_batch_slower_than_the_poll_interval_causes_no_rebalance_and_no_duplicates(env, worker, tmp_path):
    env.update({**PLUGIN, "STORMWATCH_SCORER": "faulty", "STORMWATCH_MAX_POLL_INTERVAL": "8",
                "STORMWATCH_SESSION_TIMEOUT": "8"})
    w = worker()
    n, t = replay_with_slow_scorer(env, tmp_path / "slow.jsonl", 20)
    caught_up(env)
    assert time.monotonic() - t >= 20  # the slow batch really was slow
    assert w.alive()
    scored = [json.loads(v)["post"]["id"] for v in values(env, "posts.scored")]
    assert len(scored) == n and len(set(scored)) == n  # every post scored once
    log = w.log.read_text()
    # One assignment at start (each table resumes once); a rebalance would add more.
    assert log.count("resuming ") == 2, log[-3000:]


def test_a_stalled_partition_makes_the_worker_exit_and_its_restart_finishes_the_work(env, worker, tmp_path):
    """A model batch that never returns stands in for the consumer stall of docs/reliability.md
    ("Known limit"): records wait on a partition whose commit does not move. The worker
    says which partition, exits with 75 for its supervisor, and a new worker (here without
    the hang) scores every post."""
    from stormwatch.app.lag import STALL_EXIT_CODE

    env.update({**PLUGIN, "STORMWATCH_SCORER": "faulty", "STORMWATCH_STALL_SECONDS": "8",
                "STORMWATCH_METRICS_LAG_INTERVAL": "2"})
    w = worker()
    n, t = replay_with_slow_scorer(env, tmp_path / "stuck.jsonl", 3600)  # a model that hangs
    wait_for(lambda: not w.alive(), 120, what="the stalled worker to exit")
    assert time.monotonic() - t >= 8
    assert w.proc is not None and w.proc.returncode == STALL_EXIT_CODE
    log = w.log.read_text()
    stalled = re.search(r"stalled partitions: posts\.raw\[(\d+)\] at offset (\d+) with (\d+) records "
                        r"waiting", log)
    assert stalled, log[-3000:]
    assert int(stalled.group(2)) + int(stalled.group(3)) == n  # nothing committed past the hung batch
    env["STORMWATCH_SCORER"] = "lexicon"  # the restarted worker's model answers
    second = worker()
    caught_up(env)
    assert second.alive()
    scored = [json.loads(v)["post"]["id"] for v in values(env, "posts.scored")]
    assert set(scored) == {f"a{i}" for i in range(n)}  # nothing lost


def test_kill_9_one_of_two_workers_mid_replay_loses_nothing_and_pages_once(env, worker, data):
    env.update({"STORMWATCH_SESSION_TIMEOUT": "10"})  # in place: the worker fixture reads this dict
    first, second = worker(), worker()

    def kill() -> None:
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL

    replay_through(env, data / "posts" / "airline_posts_unlabelled.jsonl", kill, fraction=4)
    assert second.alive()
    assert "resuming " in second.log.read_text()  # it took over partitions from the changelogs


def kafka_sh(command: str, port: str) -> None:
    subprocess.run([str(REPO_ROOT / "deploy" / "kafka" / "kafka.sh"), command], check=True, timeout=120,
                   env={**os.environ, "KAFKA_PORT": port}, capture_output=True)


def test_broker_restart_mid_replay_recovers_by_itself_and_loses_nothing(env, worker, data, kafka):
    port = kafka.rsplit(":", 1)[1]
    w = worker()
    outage: list[float] = []

    def restart_broker() -> None:
        down = time.monotonic()
        kafka_sh("stop", port)
        time.sleep(5)
        kafka_sh("start", port)
        outage.append(time.monotonic() - down)

    try:
        replay_through(env, data / "posts" / "airline_posts_unlabelled.jsonl", restart_broker)
    finally:
        kafka_sh("start", port)  # whatever happened, leave a broker for the other tests
    assert w.alive(), w.log.read_text()[-3000:]
    print(f"broker away for {outage[0]:.1f} s; nothing lost")


def publish_alerts(env: dict[str, str], alerts: list[Alert]) -> None:
    """Alert records onto the (compacted, keyed by id) alerts topic, as the worker writes them."""
    settings = settings_of(env)

    async def send() -> None:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka, enable_idempotence=True)
        await producer.start()
        try:
            sent = [await producer.send(settings.topic("alerts"), key=a.id.encode(), value=dumps(a))
                    for a in alerts]  # all at once, as a worker closing a bucket writes them
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    asyncio.run(send())


#: The receivers every crisis alert of a US Airways incident goes to (deploy/alertmanager).
CRISIS_PATHS = ("/crisis-webhook", "/social-slack", "/airlines-slack")
_RETRY = re.compile(r"unavailable \((.*)\); retrying in (\d+(?:\.\d+)?) s")


def notified(rx: Receiver, path: str, status: str) -> Counter[str]:
    """Alert ids in the notifications ``path`` accepted (answered 200) with ``status``."""
    return Counter(a["labels"]["alert_id"] for n in rx.delivered(path) for a in n["alerts"]
                   if a["status"] == status)


def test_alertmanager_then_its_webhook_receiver_down_for_a_while_pages_once_when_back(env, data, tmp_path):
    # Real Alert records: the local runner over a slice of the airline posts. The topic first
    # holds everything up to the last incident's opening (an earlier incident already resolved,
    # the last one firing); its resolve comes later, while the webhook receiver is down.
    alerts = run_file(slice_file(data, tmp_path / "slice.jsonl")).alerts
    cut = max(i for i, a in enumerate(alerts) if a.event == "open") + 1
    firing = [a.id for a in alerts[:cut] if a.event == "open" and a.channel == "*"][-1]
    resolved_before = {a.id for a in alerts[:cut] if a.event == "resolve"}
    assert resolved_before and [a.event for a in alerts[cut:]] == ["resolve"] * len(alerts[cut:]) != []
    publish_alerts(env, alerts[:cut])

    # The receiver stands in for Slack and the generic webhook (SaaS that cannot be reached
    # from here); Alertmanager is the real one, but not started yet: its port is closed.
    rx = Receiver()
    am_port = free_port()
    am_url = f"http://127.0.0.1:{am_port}"
    pager = PagerProcess(env, am_url, "http://127.0.0.1:9464", tmp_path / "pager.log")
    log = tmp_path / "pager.log"

    def retries() -> list[tuple[str, float]]:
        text = log.read_text() if log.exists() else ""
        return [(m.group(1), float(m.group(2))) for m in _RETRY.finditer(text)]

    try:
        t0 = time.monotonic()
        pager.start()
        # Five failed pushes (0.5 + 1 + 2 + 4 s of backoff so far, 8 s next), 4 s more: then
        # start it (about 12 s closed), leaving it ~4 s to be ready before the next retry.
        wait_for(lambda: len(retries()) >= 5, 60, 0.2, "five retries of the pager")
        time.sleep(4)
        assert pager.proc is not None and pager.proc.poll() is None, log.read_text()[-3000:]
        with alertmanager(tmp_path / "am", rx.url, port=am_port) as am:
            assert am == am_url
            am_up = time.monotonic()
            wait_for(lambda: all(notified(rx, p, "firing")[firing] for p in CRISIS_PATHS), 60, 0.2,
                     f"the page of {firing}")
            paged = time.monotonic()
            delays = [d for _, d in retries()]
            assert delays[:5] == [0.5, 1.0, 2.0, 4.0, 8.0] and all(d <= 30 for d in delays), delays
            assert all("Connection refused" in reason for reason, _ in retries())
            # (its log line may come a moment after the page: old alerts skip group_wait)
            back = wait_for(lambda: re.search(r"back: \d+ alerts sent after (\d+) retries \((\d+\.\d) s\)",
                                              log.read_text()), 10, 0.1, "the pager's log saying it is back")
            assert isinstance(back, re.Match) and int(back.group(1)) == len(delays), log.read_text()[-3000:]

            # Now Alertmanager is up but its webhook receiver answers 503: the resolve is
            # retried by Alertmanager itself and accepted once the receiver is back.
            rx.down = True
            failed_before = rx.codes.count(503)
            publish_alerts(env, alerts[cut:])
            wait_for(lambda: rx.codes.count(503) - failed_before >= 2 * len(CRISIS_PATHS), 60, 0.2,
                     "Alertmanager retrying the webhook")
            time.sleep(max(0.0, 8 - (time.monotonic() - paged)))  # the receiver is down ~8 s
            rx.down = False
            receiver_back = time.monotonic()
            wait_for(lambda: all(notified(rx, p, "resolved")[firing] for p in CRISIS_PATHS), 60, 0.2,
                     f"the resolve of {firing}")
            resolved_at = time.monotonic()
            time.sleep(5)  # more than two group intervals and pager re-sends: a repeat would show
            assert pager.proc.poll() is None, log.read_text()[-3000:]
    finally:
        pager.stop()
        rx.close()

    for path in CRISIS_PATHS:
        # Exactly one firing and one resolved notification, for the incident that was open;
        # the per-channel twin is inhibited, the already resolved incident is never paged.
        assert notified(rx, path, "firing") == {firing: 1}, (path, rx.delivered(path))
        assert notified(rx, path, "resolved") == {firing: 1}, (path, rx.delivered(path))
        assert not resolved_before & (set(notified(rx, path, "firing")) | set(notified(rx, path, "resolved")))
    failed = [n for (_, p, n), code in zip(rx.calls, rx.codes, strict=True) if code == 503]
    assert failed and all(a["status"] == "resolved" for n in failed for a in n["alerts"])
    print(f"Alertmanager's port closed for {am_up - t0:.1f} s from the pager's start; the pager got through "
          f"after {len(retries())} retries, {back.group(2)} s after its first try; the page went out "
          f"{paged - am_up:.1f} s after Alertmanager was up. Webhook receiver down "
          f"{receiver_back - paged:.1f} s: {len(failed)} notification attempts refused; the resolve "
          f"accepted {resolved_at - receiver_back:.1f} s after it was back.")
