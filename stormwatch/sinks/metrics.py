"""Prometheus metrics of a worker: what it ingested, scored, dead-lettered, saw and raised.

One :class:`PipelineMetrics` per worker, in its own registry (so several apps in one
process never clash). The Faust agents call its ``record_*`` methods with the records
they already hold; nothing here reads Kafka except :func:`lag_reader`, and nothing
serves HTTP (:mod:`stormwatch.sinks.web` does).

Label values come only from validated records (a post's brand and channel after
:func:`~stormwatch.model.parse_post`, a bucket's series), never from post text, and
they are capped: at most :data:`MAX_BRANDS` brands and :data:`MAX_CHANNELS` channels
per worker, later ones are counted under ``other`` (see :class:`LabelCap`). The
all-channel series (``brand/*``) carries ``channel="all"``: ``*`` is a regex
operator in Grafana's template variables.

>>> from datetime import UTC, datetime
>>> from stormwatch.model import SeriesStats
>>> from stormwatch.detectors.monitor import Reading
>>> m = PipelineMetrics()
>>> st = SeriesStats("Acme", "*", datetime(2015, 2, 22, tzinfo=UTC), 60, 12, negative=9)
>>> m.record_bucket(st, Reading(12.0, 3.0, 0.5, 6.5, 0.99, 0.75, "warning"))
>>> m.value("stormwatch_series_expected_posts", brand="Acme", channel="all")
3.0
>>> m.value("stormwatch_series_alert_open", brand="Acme", channel="all", severity="warning")
1.0
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stormwatch.detectors.monitor import Reading
from stormwatch.model import ALL_CHANNELS, SENTIMENTS, Alert, DeadLetter, ScoredPost, SeriesStats
from stormwatch.sinks.web import Evidence, serve

#: Most distinct brands one worker reports; the rest are summed under ``other``.
MAX_BRANDS = 50
#: Most distinct channels one worker reports; the rest are summed under ``other``.
MAX_CHANNELS = 20
#: Label value of records whose brand or channel is unknown (they failed validation).
UNKNOWN = "-"
OTHER = "other"
SEVERITIES = ("warning", "critical")
#: The ``stage`` label of the latency histogram: each agent, and ``end_to_end`` — from the
#: append to ``posts.raw`` of the post that closed a bucket until ``detect`` has handled it.
STAGES = ("enrich", "aggregate", "detect", "end_to_end")
#: Record header carrying a post's append time to ``posts.raw`` (epoch seconds) down the pipeline.
APPENDED = "stormwatch-appended"
#: Latency buckets (seconds): from a few milliseconds to ten minutes behind.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def appended_header(ts: float | None) -> dict[str, bytes]:
    """Headers for an output record: the append time of the post it comes from.

    >>> appended_at(appended_header(1424643720.5))
    1424643720.5
    """
    return {APPENDED: repr(float(ts)).encode()} if ts else {}


def appended_at(headers: Any, default: float | None = None) -> float | None:
    """The append time a record's headers carry (a mapping or (key, value) pairs), else ``default``.

    >>> appended_at(None, 7.0), appended_at([("stormwatch-appended", b"x")], 7.0)
    (7.0, 7.0)
    """
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    for key, value in items:
        if key == APPENDED:
            try:
                return float(value.decode() if isinstance(value, bytes) else value)
            except ValueError:
                return default
    return default


class LabelCap:
    """Admit at most ``limit`` distinct label values, first come first served.

    Values in ``allowed`` (the watch config's brands, when there is one) are always
    admitted and do not use up the cap.

    >>> cap = LabelCap(2)
    >>> [cap(v) for v in ["a", "b", "c", "a"]]
    ['a', 'b', 'other', 'a']
    """

    def __init__(self, limit: int, allowed: Iterable[str] = ()) -> None:
        self.limit = limit
        self.allowed = frozenset(allowed)
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.allowed or value in self.seen:
            return value
        if len(self.seen) < self.limit:
            self.seen.add(value)
            return value
        return OTHER


def channel_label(channel: str) -> str:
    """The ``channel`` label of a series: ``all`` for the all-channel series.

    >>> channel_label("*"), channel_label("twitter")
    ('all', 'twitter')
    """
    return "all" if channel == ALL_CHANNELS else channel


class PipelineMetrics:
    """The worker's metrics. Names carry their unit; counters end in ``_total``."""

    def __init__(self, registry: CollectorRegistry | None = None, max_brands: int = MAX_BRANDS,
                 max_channels: int = MAX_CHANNELS, brands: Iterable[str] = ()) -> None:
        self.registry = registry or CollectorRegistry()
        self.brand = LabelCap(max_brands, brands)
        self.channel = LabelCap(max_channels)
        r = self.registry
        bc = ["brand", "channel"]
        self.ingested = Counter("stormwatch_posts_ingested_total",
                                "Records read from posts.raw (brand/channel '-' when invalid)", bc,
                                registry=r)
        self.scored = Counter("stormwatch_posts_scored_total", "Posts scored, by sentiment label",
                              [*bc, "sentiment"], registry=r)
        self.dlq = Counter("stormwatch_posts_dlq_total", "Records sent to posts.dlq",
                           [*bc, "stage", "reason"], registry=r)
        self.buckets = Counter("stormwatch_series_buckets_total", "Closed buckets per series", bc, registry=r)
        self.bucket_posts = Counter("stormwatch_series_posts_total", "Posts in closed buckets, by sentiment",
                                    [*bc, "sentiment"], registry=r)
        self.late = Counter("stormwatch_series_late_posts_total", "Posts later than their bucket", bc,
                            registry=r)
        self.retweets = Counter("stormwatch_series_retweets_total", "Retweets of the posts in closed buckets "
                                "(reach)", bc, registry=r)
        self.observed = Gauge("stormwatch_series_observed_posts", "Posts in the series' latest bucket", bc,
                              registry=r)
        self.expected = Gauge("stormwatch_series_expected_posts", "Detector's expected posts for that bucket",
                              bc, registry=r)
        self.lower = Gauge("stormwatch_series_expected_lower_posts", "Lower edge of the expected band", bc,
                           registry=r)
        self.upper = Gauge("stormwatch_series_expected_upper_posts", "Upper edge of the expected band", bc,
                           registry=r)
        self.negative = Gauge("stormwatch_series_negative_ratio", "Negative share over recent buckets (0-1)",
                              bc, registry=r)
        self.score = Gauge("stormwatch_series_detector_score", "Detector score of the latest bucket (0-1)",
                           bc, registry=r)
        self.bucket_time = Gauge("stormwatch_series_bucket_timestamp_seconds",
                                 "Event time (start) of the series' latest closed bucket", bc, registry=r)
        self.open = Gauge("stormwatch_series_alert_open", "1 while the series has an open incident of this "
                          "severity", [*bc, "severity"], registry=r)
        self.alert_events = Counter("stormwatch_alert_events_total", "Alert state changes sent to alerts",
                                    [*bc, "event", "severity"], registry=r)
        self.lag = Gauge("stormwatch_consumer_lag_records",
                         "Records the worker's group has not committed yet, per input topic", ["topic"],
                         registry=r)
        self.stalled = Gauge("stormwatch_stalled_partitions",
                             "This worker's input partitions holding records without a commit for "
                             "STORMWATCH_STALL_SECONDS, per topic", ["topic"], registry=r)
        self.latency = Histogram("stormwatch_processing_latency_seconds",
                                 "From a record's append to the stage's input topic until the stage has "
                                 "handed on its output", ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        for stage in STAGES:  # exported from the start, so dashboards see the series before traffic
            self.latency.labels(stage)

    def _bc(self, brand: str, channel: str) -> tuple[str, str]:
        return self.brand(brand), self.channel(channel_label(channel))

    def record_enriched(self, results: Sequence[ScoredPost | DeadLetter | Sequence[ScoredPost]]) -> None:
        """Count one enrich batch: every record as ingested, the valid ones as scored.

        With a watch config an item is the list of copies of one post, one per brand it
        names; a post naming none is ingested under ``-``.
        """
        for item in results:
            if isinstance(item, DeadLetter):  # counted as a dead letter where it is sent (record_dead)
                self.ingested.labels(UNKNOWN, UNKNOWN).inc()
                continue
            copies = [item] if isinstance(item, ScoredPost) else item
            if not copies:
                self.ingested.labels(UNKNOWN, UNKNOWN).inc()
            for sp in copies:
                bc = self._bc(sp.post.brand, sp.post.channel)
                self.ingested.labels(*bc).inc()
                self.scored.labels(*bc, sp.sentiment.label).inc()

    def record_dead(self, dl: DeadLetter, brand: str = UNKNOWN, channel: str = UNKNOWN) -> None:
        """Count one dead letter (its reason is one of a fixed set of codes)."""
        bc = (UNKNOWN, UNKNOWN) if brand == UNKNOWN else self._bc(brand, channel)
        self.dlq.labels(*bc, dl.stage, dl.reason).inc()

    def record_latency(self, stage: str, appended_at: Iterable[float | None],
                       now: float | None = None) -> None:
        """Observe ``now`` minus each input record's Kafka timestamp (epoch seconds)."""
        now = time.time() if now is None else now
        for ts in appended_at:
            if ts:
                self.latency.labels(stage).observe(max(0.0, now - ts))

    def record_bucket(self, st: SeriesStats, reading: Reading | None) -> None:
        """One closed bucket of a series and what its monitor made of it."""
        bc = self._bc(st.brand, st.channel)
        self.buckets.labels(*bc).inc()
        for label in SENTIMENTS:
            self.bucket_posts.labels(*bc, label).inc(getattr(st, label))
        self.late.labels(*bc).inc(st.late)
        self.retweets.labels(*bc).inc(st.retweets)
        self.bucket_time.labels(*bc).set(st.bucket_start.timestamp())
        if reading is None:  # a repeat the monitor had already applied
            return
        self.observed.labels(*bc).set(reading.observed)
        for gauge, value in ((self.expected, reading.expected), (self.lower, reading.lower),
                             (self.upper, reading.upper), (self.score, reading.score),
                             (self.negative, reading.negative_share)):
            if value is not None:
                gauge.labels(*bc).set(value)
        for sev in SEVERITIES:
            self.open.labels(*bc, sev).set(1.0 if reading.open_severity == sev else 0.0)

    def record_alert(self, alert: Alert) -> None:
        self.alert_events.labels(*self._bc(alert.brand, alert.channel), alert.event, alert.severity).inc()

    def record_lag(self, lag: dict[str, int]) -> None:
        for topic, n in lag.items():
            self.lag.labels(topic).set(n)

    def record_stalled(self, stalled: Iterable[tuple[str, int]]) -> None:
        """Set the stalled-partition count of every input topic (0 where none is).

        >>> m = PipelineMetrics()
        >>> m.record_stalled([("posts.raw", 3), ("posts.raw", 5)])
        >>> m.value("stormwatch_stalled_partitions", topic="posts.raw"), m.value(
        ...     "stormwatch_stalled_partitions", topic="stats")
        (2.0, 0.0)
        """
        from stormwatch.app.lag import INPUTS

        counts = dict.fromkeys(INPUTS, 0)
        for topic, _ in stalled:
            counts[topic] = counts.get(topic, 0) + 1
        for topic, n in counts.items():
            self.stalled.labels(topic).set(n)

    def value(self, name: str, **labels: str) -> float | None:
        """One sample's current value (tests and doctests)."""
        return self.registry.get_sample_value(name, labels)



class Telemetry:
    """What the worker's agents call: the metrics plus the evidence for the JSON panels.

    Each method takes records the agent already has; ``appended_at`` are the input
    records' Kafka timestamps (epoch seconds) for the latency histogram.
    """

    def __init__(self, metrics: PipelineMetrics | None = None, evidence: Evidence | None = None) -> None:
        self.metrics = metrics or PipelineMetrics()
        self.evidence = evidence or Evidence()

    def enriched(self, results: Sequence[ScoredPost | DeadLetter | Sequence[ScoredPost]],
                 appended_at: Sequence[float | None]) -> None:
        self.metrics.record_enriched(results)
        self.metrics.record_latency("enrich", appended_at)

    def dead(self, dl: DeadLetter) -> None:
        self.metrics.record_dead(dl)

    def aggregated(self, appended_at: float | None) -> None:
        self.metrics.record_latency("aggregate", [appended_at])

    def detected(self, st: SeriesStats, reading: Reading | None, alerts: Sequence[Alert],
                 appended_at: float | None, post_appended_at: float | None = None) -> None:
        """One bucket through ``detect``; ``post_appended_at`` is when the post that closed it
        was appended to ``posts.raw`` (the end-to-end latency)."""
        self.metrics.record_bucket(st, reading)
        self.evidence.add_bucket(st)
        for alert in alerts:
            self.metrics.record_alert(alert)
            self.evidence.add_alert(alert)
        self.metrics.record_latency("detect", [appended_at])
        self.metrics.record_latency("end_to_end", [post_appended_at])

    def serve(self, host: str, port: int) -> Any:
        """Serve ``/metrics`` and the JSON routes (see :mod:`stormwatch.sinks.web`)."""
        return serve(self.metrics.registry, self.evidence, host, port)
