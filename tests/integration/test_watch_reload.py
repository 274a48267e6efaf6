"""A changed watch config reaches a running worker and decides its next alert (real Kafka).

The worker polls the watch config file every second. Under version 1 (a minimum volume
no burst reaches) a burst raises nothing; the file is then changed to version 2
(minimum volume 0) while the worker runs, and the next burst opens an alert that
carries version 2. Brands come from the text (``@acme``), not from the posts' own
``brand`` field.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stormwatch.watch import parse_watch
from tests.conftest import cli, wait_for
from tests.integration.test_kafka_pipeline import alerts_of, stats_of

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

T0 = datetime(2015, 3, 1, tzinfo=UTC)
CONFIG = """\
brands:
  Acme:
    handles: ["@acme"]
    threshold: 0.999
    critical: 0.9999
    min_volume: {min_volume}
"""


def posts(start: int, end: int, burst: range) -> str:
    """One or two posts a minute, 12 a minute in ``burst`` (minutes after T0)."""
    lines = []
    for m in range(start, end):
        for k in range(12 if m in burst else 1 + m % 2):
            lines.append(json.dumps({
                "id": f"p{m}-{k}", "created_at": (T0 + timedelta(minutes=m, seconds=4 * k)).isoformat(),
                "channel": "twitter", "brand": "unknown", "text": f"@acme the app is down again ({m})"}))
    return "\n".join(lines) + "\n"


def caught_up(env: dict[str, str], minute: int) -> None:
    """Wait until the bucket ``minute`` of Acme has closed and the worker has consumed everything."""
    when = T0 + timedelta(minutes=minute)
    wait_for(lambda: any(s.series == "Acme/*" and s.bucket_start >= when for s in stats_of(env)), 400,
             every=3, what=f"Acme's bucket at minute {minute} on the stats topic")
    cli(env, "lag", "--wait", "--timeout", "300", timeout=350)


def test_config_change_reaches_running_worker_and_changes_its_next_decision(env, worker, tmp_path: Path):
    watch = tmp_path / "watch.yaml"
    watch.write_text(CONFIG.format(min_volume=1_000_000))
    v1 = parse_watch(watch.read_bytes()).version
    env.update({"STORMWATCH_WATCH": str(watch), "STORMWATCH_WATCH_POLL": "1",  # the worker fixture's env
                "STORMWATCH_DETECTOR": "poisson-window",
                "STORMWATCH_DETECTOR_PARAMS": '{"window": 5, "warmup": 30, "activation": 5}'})
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text(posts(0, 200, range(120, 126)))
    second.write_text(posts(200, 260, range(205, 211)))

    w = worker()
    cli(env, "ingest", "replay", str(first), "--quiet")
    caught_up(env, 195)
    assert alerts_of(env) == []  # version 1: the burst is under the minimum volume
    assert f"version {v1}" in w.log.read_text()

    watch.write_text(CONFIG.format(min_volume=0))
    v2 = parse_watch(watch.read_bytes()).version
    wait_for(lambda: f"version {v1} -> {v2}" in w.log.read_text(), 120, what="the worker to reload")
    assert w.alive()

    cli(env, "ingest", "replay", str(second), "--quiet")
    caught_up(env, 255)
    opened = wait_for(lambda: [a for a in alerts_of(env) if a.event == "open"], 120, what="an alert")
    assert {(a.id, a.config_version) for a in opened} == {
        ("Acme/*@2015-03-01T03:26Z", v2), ("Acme/twitter@2015-03-01T03:26Z", v2)}
