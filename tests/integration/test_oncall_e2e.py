"""On-call end to end: real Kafka, the worker, a real Prometheus scraping it, a real
Alertmanager, ``stormwatch page`` between them, and a local webhook receiver behind
Alertmanager (it stands in for Slack, PagerDuty and webhook targets, which cannot be
reached from here; their receivers become webhooks to it, one path each).

To keep it fast it replays a slice of the airline posts, 2015-02-22 12h to
2015-02-23 06h (2,165 posts), in two parts: up to a few minutes after the incident of
:data:`BRAND` near :data:`EVENT` opens, then the rest, in which it resolves (30 buckets
later). Between the parts the pager is restarted. Then it checks that

1. every PromQL expression of every dashboard panel returns data from that Prometheus;
2. the receiver got a firing alert for :data:`BRAND` with its labels and annotations, and
   later its resolve;
3. exactly one page per incident (none twice, the target's once), across the restart.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from stormwatch.config import REPO_ROOT, Settings
from stormwatch.ingest.producer import PostProducer
from stormwatch.local import run_file
from stormwatch.sinks import grafana
from tests.conftest import cli, settings_of, wait_for
from tests.oncall_servers import Receiver, alertmanager, free_port, prometheus, query
from tests.test_oncall_metrics import SLICE, slice_file

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

#: The brand whose incident must page. US Airways alerts in the replay today; switch to
#: "American" (EVENT 2015-02-23T01:00Z) once its incident is detected.
BRAND = "US Airways"
#: Roughly when the incident to page starts (the nearest opening of BRAND/* is taken).
EVENT = datetime(2015, 2, 22, 22, 0, tzinfo=UTC)
#: Where the crisis alerts of every severity arrive (the generic webhook receiver).
CRISIS = "/crisis-webhook"


class Pager:
    """``stormwatch page`` in a subprocess."""

    def __init__(self, env: dict[str, str], am: str, evidence: str, log: Path) -> None:
        self.args = [sys.executable, "-m", "stormwatch.cli", "page", "--alertmanager", am, "--resend", "2",
                     "--evidence-url", evidence]
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Pager:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(self.args, env=self.env, cwd=REPO_ROOT, stdout=fh,
                                         stderr=subprocess.STDOUT)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def split(path: Path, at: datetime, first: Path, second: Path) -> None:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    first.write_text("".join(x for x in lines if json.loads(x)["created_at"] < stamp), encoding="utf-8")
    second.write_text("".join(x for x in lines if json.loads(x)["created_at"] >= stamp), encoding="utf-8")


def inject_bad_records(settings: Settings, n: int = 3) -> None:
    """Malformed records straight onto posts.raw (past the connector's validation): the worker's DLQ."""
    async def send() -> None:
        async with PostProducer(settings) as prod:
            for i in range(n):
                await prod.send_raw(settings.topic("posts.raw"), b"broken", b'{"id": "bad-%d"' % i)

    asyncio.run(send())


def pages(rx: Receiver) -> Counter[str]:
    return Counter(a["labels"]["alert_id"] for n in rx.bodies(CRISIS) for a in n["alerts"]
                   if a["status"] == "firing")


def has_data(result: dict) -> bool:
    return any(not math.isnan(float(v)) for series in result["result"] for _, v in series["values"])


def test_replay_pages_once_resolves_and_every_dashboard_query_has_data(env, worker, data, tmp_path):
    posts = slice_file(data, tmp_path / "slice.jsonl")
    reference = run_file(posts).alerts
    opens = [a for a in reference if a.brand == BRAND and a.channel == "*" and a.event == "open"]
    assert opens, f"the local runner raises no alert for {BRAND} in {SLICE}"
    target = min(opens, key=lambda a: abs((a.started_at - EVENT).total_seconds()))
    resolve = next(a for a in reference if a.id == target.id and a.event == "resolve")
    split(posts, target.at + timedelta(minutes=5), tmp_path / "part1.jsonl", tmp_path / "part2.jsonl")

    metrics_port = free_port()
    # in place: the worker fixture starts its workers with this very dict
    env.update(STORMWATCH_METRICS_PORT=str(metrics_port), STORMWATCH_METRICS_LAG_INTERVAL="2")
    evidence = f"http://127.0.0.1:{metrics_port}"
    settings = settings_of(env)
    rx = Receiver()
    pagers: list[Pager] = []
    t0 = time.time()
    try:
        with alertmanager(tmp_path / "am", rx.url) as am, \
                prometheus(tmp_path / "prom", [f"127.0.0.1:{metrics_port}"], am) as prom:
            worker()
            wait_for(lambda: query(prom, 'up{job="stormwatch-worker"} == 1')["result"], 180, 1.0,
                     "Prometheus scraping the worker")
            pagers.append(Pager(env, am, evidence, tmp_path / "pager0.log").start())
            cli(env, "ingest", "replay", str(tmp_path / "part1.jsonl"), "--quiet")
            inject_bad_records(settings)
            wait_for(lambda: pages(rx)[target.id], 300, 1.0, f"a page for {target.id}")

            # restart the pager: it re-reads the topic and pushes the open incident again
            pagers[0].stop()
            pagers.append(Pager(env, am, evidence, tmp_path / "pager1.log").start())
            wait_for(lambda: "pushing" in (tmp_path / "pager1.log").read_text(), 120, 0.5,
                     "the restarted pager")
            time.sleep(6)  # three group intervals: a second page would have gone out by now
            assert pages(rx)[target.id] == 1

            cli(env, "ingest", "replay", str(tmp_path / "part2.jsonl"), "--quiet")
            wait_for(lambda: any(a["labels"]["alert_id"] == target.id and a["status"] == "resolved"
                                 for n in rx.bodies(CRISIS) for a in n["alerts"]), 300, 1.0,
                     f"the resolve of {target.id}")
            cli(env, "lag", "--wait", "--timeout", "300")
            evidence_json = json.load(urllib.request.urlopen(
                f"{evidence}/api/alerts/{urllib.request.quote(target.id)}", timeout=10))
            time.sleep(3)  # a few more scrapes and rule evaluations after the last bucket

            def value(expr: str) -> float:
                return float(query(prom, expr)["result"][0]["value"][1])

            # the counters Prometheus scraped are the replay's (one worker, no restart: exact)
            n_posts = sum(1 for _ in posts.open())
            assert value("sum(stormwatch_posts_ingested_total)") == n_posts + 3
            assert value('sum(stormwatch_posts_dlq_total{stage="enrich", reason="malformed_json"})') == 3
            # every closed bucket's end-to-end latency (post appended → detect done) is observed
            buckets = value('sum(stormwatch_series_buckets_total)')
            e2e = value('sum(stormwatch_processing_latency_seconds_count{stage="end_to_end"})')
            assert e2e == buckets > 0
            assert value(f'stormwatch_series_alert_open{{brand="{BRAND}", channel="all", '
                         f'severity="{target.severity}"}}') == 0

            # the repository's rules loaded and evaluate without error; Alertmanager is discovered
            with urllib.request.urlopen(f"{prom}/api/v1/rules", timeout=10) as resp:
                rules = [r for g in json.load(resp)["data"]["groups"] for r in g["rules"]]
            rules_file = REPO_ROOT / "deploy" / "prometheus" / "rules" / "stormwatch.yml"
            in_file = yaml.safe_load(rules_file.read_text())
            expected = sorted(r.get("record") or r["alert"] for g in in_file["groups"] for r in g["rules"])
            assert sorted(r["name"] for r in rules) == expected and len(expected) == 14, rules
            assert all(r["health"] == "ok" for r in rules), rules
            with urllib.request.urlopen(f"{prom}/api/v1/alertmanagers", timeout=10) as resp:
                active = json.load(resp)["data"]["activeAlertmanagers"]
            assert [m["url"] for m in active] == [f"{am}/api/v2/alerts"]

            # (1) every dashboard expression returns data from this Prometheus
            exprs = grafana.promql(grafana.dashboards(), {"brand": BRAND, "channel": ".*"})
            empty = [(uid, title, e) for uid, title, e in exprs
                     if not has_data(query(prom, e, start=t0, end=time.time(), step="1s"))]
            assert not empty, f"{len(empty)} of {len(exprs)} panel queries returned no data: {empty}"
    finally:
        for p in pagers:
            p.stop()
        rx.close()

    # (2) the firing page with its labels and annotations, then the resolve
    notes = rx.bodies(CRISIS)
    fired = next(a for n in notes for a in n["alerts"] if a["labels"]["alert_id"] == target.id)
    assert fired["status"] == "firing"
    labels = fired["labels"]
    assert labels["brand"] == BRAND and labels["channel"] == "all" and labels["severity"] == target.severity
    assert labels["alertname"] == "StormwatchCrisis" and labels["crisis_type"] and labels["team"] == "social"
    ann = fired["annotations"]
    assert f"observed {target.observed:g} vs expected {target.expected:.2f}" in ann["description"]
    assert ann["runbook_url"] and ann["summary"].startswith(BRAND)
    assert ann["evidence_url"] == f"{evidence}/api/alerts/{urllib.request.quote(target.id)}"
    assert evidence_json["id"] == target.id and evidence_json["event"] == "resolve"
    assert evidence_json["at"] == resolve.to_dict()["at"]
    resolved = [a for n in notes for a in n["alerts"] if a["status"] == "resolved"
                and a["labels"]["alert_id"] == target.id]
    assert len(resolved) == 1

    # (3) exactly one page per incident: the target's once, none twice (a per-channel
    # incident is inhibited by its brand-wide one, so it may not page at all)
    count = pages(rx)
    assert count[target.id] == 1 and max(count.values()) == 1, count
    assert set(count) <= {a.id for a in reference}
