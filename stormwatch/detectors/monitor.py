"""One watched series: its volume detector and alert policy, turning buckets into alerts.

>>> from datetime import datetime, timedelta, UTC
>>> from stormwatch.model import SeriesStats
>>> mon = SeriesMonitor.create("poisson-window", {"window": 5, "warmup": 30, "activation": 5},
...                            PolicyConfig(0.999, critical=0.9999, min_volume=10, persist=2))
>>> t0 = datetime(2015, 2, 22, tzinfo=UTC)
>>> def bucket(i, n):
...     return SeriesStats("Acme", "*", t0 + timedelta(minutes=i), 60, n, negative=n)
>>> quiet = [a for i in range(120) for a in mon.observe(bucket(i, 1 + i % 2))]
>>> burst = [a for i in range(120, 130) for a in mon.observe(bucket(i, 12))]
>>> quiet, [(a.event, a.id) for a in burst]
([], [('open', 'Acme/*@2015-02-22T02:01Z')])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stormwatch.crisis.emerging import TopicConfig, TopicWatch
from stormwatch.crisis.evidence import EvidenceConfig, EvidenceWindow
from stormwatch.crisis.playbooks import playbook_id
from stormwatch.detectors import base
from stormwatch.detectors.policy import AlertPolicy, PolicyConfig
from stormwatch.model import Alert, SeriesStats, alert_id, series_key

#: How many recent sample posts a monitor keeps as evidence for its alerts.
EVIDENCE = 5


@dataclass(frozen=True, slots=True)
class Reading:
    """What the monitor made of its latest bucket (for metrics and backtest plots; not state).

    ``score`` and the band are None while the series has not reached its activation
    volume; ``open_severity`` is the severity of the open incident, or None.
    """

    observed: float
    expected: float | None
    lower: float | None
    upper: float | None
    score: float | None
    negative_share: float | None
    open_severity: str | None


class SeriesMonitor:
    """Detector + policy + the evidence of one series. State as a dict."""

    def __init__(self, detector: base.Detector, policy: AlertPolicy,
                 evidence: EvidenceWindow | None = None, topics: TopicWatch | None = None) -> None:
        self.detector = detector
        self.policy = policy
        self.evidence = evidence or EvidenceWindow()
        self.topics = topics or TopicWatch()
        self.last_bucket: int | None = None
        self.posts = 0.0  # posts seen; the detector starts at policy.config.activation_posts
        self.samples: list[list[str]] = []
        self.neg: list[float] = [0.0, 0.0]  # negatives, posts over the detector's recent buckets
        self.outbox: list[Alert] = []  # alerts raised but not yet acknowledged by the runtime
        self.reading: Reading | None = None  # the latest bucket's reading, read by the metrics

    @classmethod
    def create(cls, detector: str, params: Mapping[str, Any] | None = None,
               policy: PolicyConfig | None = None, evidence: EvidenceConfig | None = None,
               topics: TopicConfig | None = None) -> SeriesMonitor:
        return cls(base.make(detector, **dict(params or {})), AlertPolicy(policy),
                   EvidenceWindow(evidence), TopicWatch(topics))

    def observe(self, stats: SeriesStats) -> list[Alert]:
        """Feed one closed bucket; return the alert state changes it causes.

        A bucket at or before the last one seen is ignored (idempotent replays). The
        alerts are also kept in :attr:`outbox` until the runtime empties it.
        """
        bucket = int(stats.bucket_start.timestamp())
        self.reading = None
        if self.last_bucket is not None and bucket <= self.last_bucket:
            return []
        self.last_bucket = bucket
        self.evidence.observe(stats, hold_from=self.policy.open_start)
        self.posts += stats.count
        if self.posts < self.policy.config.activation_posts:
            self.reading = Reading(float(stats.count), None, None, None, None, None, None)
            return []
        x = {"t": float(bucket), "value": float(stats.count)}
        score = self.detector.score_one(x)
        warming = self.detector.warming_up
        self.detector.learn_one(x)
        exp = self.detector.expectation()  # about this bucket: some detectors set it when learning
        decay = 0.9
        self.neg = [self.neg[0] * decay + stats.negative, self.neg[1] * decay + stats.count]
        for pid, text in stats.samples:
            self.samples.append([pid, text])
        del self.samples[:-EVIDENCE]
        volume = exp.observed if exp is not None else float(stats.count)
        decision = self.policy.step(bucket, score, volume, warming, reach=self.evidence.reach())
        self.reading = Reading(
            volume, exp.expected if exp else None, exp.lower if exp else None, exp.upper if exp else None,
            score, self.neg[0] / self.neg[1] if self.neg[1] else None,
            self.policy.severity if self.policy.is_open else None)
        out = self._topic(stats, bucket)
        if decision is None:
            return out
        event, severity, start = decision
        started = datetime.fromtimestamp(start, tz=UTC)
        observed = exp.observed if exp else float(stats.count)
        crisis_type, crisis_share = self.evidence.dominant()
        alert = Alert(
            id=alert_id(series_key(stats.brand, stats.channel), started),
            event=event, brand=stats.brand, channel=stats.channel, severity=severity,
            started_at=started, at=stats.bucket_start,
            observed=round(observed, 3),
            expected=round(exp.expected, 3) if exp else 0.0,
            lower=round(exp.lower, 3) if exp else 0.0,
            upper=round(exp.upper, 3) if exp else 0.0,
            score=round(score, 6), detector=self.detector.name,
            threshold=self.policy.config.threshold,
            negative_share=round(self.neg[0] / self.neg[1], 3) if self.neg[1] else None,
            samples=tuple((pid, text) for pid, text in self.samples),
            crisis_type=crisis_type, crisis_share=crisis_share, playbook=playbook_id(crisis_type),
            evidence=self.evidence.evidence(),
        )
        self.outbox.append(alert)
        return [*out, alert]

    def _topic(self, stats: SeriesStats, bucket: int) -> list[Alert]:
        """The emerging-topic watch for this bucket (burst terms only computed when needed)."""
        if not self.topics.config.enabled or (stats.count == 0 and self.topics.open_start is None):
            return []
        ev = self.evidence
        burst = ev.burst() if stats.count else {}
        decision = self.topics.step(bucket, burst, ev.baseline_posts(), self.policy.is_open)
        if decision is None:
            return []
        event, start, cluster = decision
        top = cluster[0]
        started = datetime.fromtimestamp(start, tz=UTC)
        crisis_type, crisis_share = ev.dominant()
        lang_posts = ev.totals()["langs"].get(top["lang"], 0)
        alert = Alert(
            id=alert_id(series_key(stats.brand, stats.channel), started) + "#topic",
            event=event, kind="emerging", brand=stats.brand, channel=stats.channel, severity="warning",
            started_at=started, at=stats.bucket_start, observed=float(top["count"]),
            expected=round(top["baseline_share"] * lang_posts, 3), lower=0.0, upper=0.0,
            score=round(top["score"] / (top["score"] + self.topics.config.min_score), 6),
            detector="burst-terms", threshold=0.5,
            negative_share=round(self.neg[0] / self.neg[1], 3) if self.neg[1] else None,
            samples=tuple((pid, text) for pid, text in self.samples),
            crisis_type=crisis_type, crisis_share=crisis_share, playbook=playbook_id(crisis_type),
            evidence={**ev.evidence(), "emerging_terms": cluster},
        )
        self.outbox.append(alert)
        return [alert]

    def state_dict(self) -> dict[str, Any]:
        return {"detector": self.detector.state_dict(), "policy": self.policy.state_dict(),
                "last_bucket": self.last_bucket, "posts": self.posts, "samples": self.samples,
                "neg": self.neg, "outbox": [a.to_dict() for a in self.outbox],
                "evidence": self.evidence.state_dict(), "topics": self.topics.state_dict()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SeriesMonitor:
        ev, topics = state.get("evidence"), state.get("topics")
        mon = cls(base.restore(state["detector"]), AlertPolicy.from_state(state["policy"]),
                  EvidenceWindow.from_state(ev) if ev is not None else None,
                  TopicWatch.from_state(topics) if topics is not None else None)
        mon.last_bucket = state["last_bucket"]
        mon.posts = float(state["posts"])
        mon.samples = [list(s) for s in state["samples"]]
        mon.neg = [float(v) for v in state["neg"]]
        mon.outbox = [Alert.from_dict(a) for a in state["outbox"]]
        return mon

