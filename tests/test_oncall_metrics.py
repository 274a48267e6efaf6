"""Worker metrics and the JSON panel server, fed by the pure pipeline objects like the agents do."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stormwatch import nlp
from stormwatch.config import Settings
from stormwatch.ingest.readers import iter_file
from stormwatch.model import DeadLetter, SeriesStats
from stormwatch.pipeline import Aggregator, Detection, Enricher
from stormwatch.sinks.metrics import MAX_BRANDS, OTHER, PipelineMetrics, Telemetry

#: The replay slice the end-to-end test uses too (a US Airways incident opens and resolves).
SLICE = ("2015-02-22T12", "2015-02-23T06")


def slice_file(data: Path, out: Path, start: str = SLICE[0], end: str = SLICE[1]) -> Path:
    lines = [line for line in (data / "posts" / "airline_posts_unlabelled.jsonl").open(encoding="utf-8")
             if start <= json.loads(line)["created_at"] < end]
    out.write_text("".join(lines), encoding="utf-8")
    return out


def run_like_worker(path: Path, tele: Telemetry) -> list:
    """Enrich → aggregate → detect over dicts, calling the telemetry where the agents call it."""
    s = Settings(scorer="lexicon")
    enricher = Enricher(nlp.make(s.scorer))
    agg = Aggregator({}, s.bucket_seconds, s.lateness_seconds)
    det = Detection({}, s.detector, s.detector_params, s.policy)
    raws = [raw for _, raw in iter_file(path)] + [b'{"id": "broken"']
    alerts = []
    results = enricher.enrich(raws)
    tele.enriched(results, [None] * len(results))
    for item in results:
        if isinstance(item, DeadLetter):
            tele.dead(item)
            continue
        for st in agg.add(item):
            raised = det.observe(st)
            det.ack(st.series)
            tele.detected(st, det.last, raised, None)
            alerts += raised
        agg.ack(item.post.brand)
    return alerts


@pytest.fixture(scope="module")
def replayed(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Telemetry, list, int]:
    path = slice_file(data, tmp_path_factory.mktemp("slice") / "slice.jsonl")
    tele = Telemetry()
    alerts = run_like_worker(path, tele)
    return tele, alerts, sum(1 for _ in path.open())


def test_post_counters_add_up_by_brand_channel_and_sentiment(replayed) -> None:
    tele, _, n = replayed
    m = tele.metrics
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in m.registry.collect() for s in fam.samples}
    ingested = sum(v for (name, _), v in samples.items() if name == "stormwatch_posts_ingested_total")
    scored = sum(v for (name, _), v in samples.items() if name == "stormwatch_posts_scored_total")
    assert ingested == n + 1  # every line plus the broken record
    assert scored == n
    assert m.value("stormwatch_posts_ingested_total", brand="-", channel="-") == 1
    assert m.value("stormwatch_posts_dlq_total", brand="-", channel="-", stage="enrich",
                   reason="malformed_json") == 1
    us = sum(m.value("stormwatch_posts_scored_total", brand="US Airways", channel="twitter", sentiment=s) or 0
             for s in ("negative", "neutral", "positive"))
    assert us == m.value("stormwatch_posts_ingested_total", brand="US Airways", channel="twitter") > 100


def test_series_gauges_follow_the_monitor_and_open_alerts_close(replayed) -> None:
    tele, alerts, _ = replayed
    m = tele.metrics
    lab = {"brand": "US Airways", "channel": "all"}
    assert {a.event for a in alerts if a.brand == "US Airways"} == {"open", "resolve"}
    assert m.value("stormwatch_series_expected_posts", **lab) > 0
    assert m.value("stormwatch_series_expected_upper_posts", **lab) >= m.value(
        "stormwatch_series_expected_lower_posts", **lab)
    assert 0 <= m.value("stormwatch_series_detector_score", **lab) <= 1
    assert 0 <= m.value("stormwatch_series_negative_ratio", **lab) <= 1
    # every incident in the slice has resolved by its end: nothing open
    assert m.value("stormwatch_series_alert_open", **lab, severity="warning") == 0
    opened = sum(1 for a in alerts if a.event == "open" and a.brand == "US Airways" and a.channel == "*")
    assert m.value("stormwatch_alert_events_total", **lab, event="open", severity="warning") == opened
    assert m.value("stormwatch_series_bucket_timestamp_seconds", **lab) >= datetime(
        2015, 2, 23, 5, tzinfo=UTC).timestamp()


def test_brand_labels_are_capped() -> None:
    m = PipelineMetrics(max_brands=3)
    t0 = datetime(2015, 2, 22, tzinfo=UTC)
    for i in range(MAX_BRANDS):
        m.record_bucket(SeriesStats(f"brand{i}", "*", t0, 60, 1), None)
    brands = {s.labels["brand"] for fam in m.registry.collect() for s in fam.samples if "brand" in s.labels}
    assert brands == {"brand0", "brand1", "brand2", OTHER}
    assert m.value("stormwatch_series_buckets_total", brand=OTHER, channel="all") == MAX_BRANDS - 3


def test_web_server_serves_metrics_and_json_panels(replayed) -> None:
    tele, alerts, _ = replayed
    server = tele.serve("127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
        assert 'stormwatch_series_expected_posts{brand="US Airways",channel="all"}' in text
        assert "stormwatch_processing_latency_seconds_bucket" in text
        url = f"{base}/api/top-posts?brand=US%20Airways&limit=5"
        top = json.load(urllib.request.urlopen(url, timeout=10))
        assert len(top) == 5 and all(p["brand"] == "US Airways" and p["text"] for p in top)
        assert [p["bucket"] for p in top] == sorted((p["bucket"] for p in top), reverse=True)
        aid = next(a.id for a in alerts if a.brand == "US Airways")
        one = json.load(urllib.request.urlopen(f"{base}/api/alerts/{urllib.request.quote(aid)}", timeout=10))
        assert one["id"] == aid and one["event"] == "resolve"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/api/alerts/none", timeout=10)
        assert err.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
