"""Emerging topics: a new term cluster that bursts before the total volume moves.

A volume alert needs many more posts than usual; a new topic can show earlier, as a
few terms that suddenly appear in many of the posts of an otherwise normal stream
("computer", "system" in an airline's mentions). :class:`TopicWatch` is the small
state machine for it, one per series inside its monitor: while no volume incident is
open and the baseline has seen ``baseline_posts`` posts, it opens a topic when at
least one term of the evidence window has ``min_posts`` posts, ``min_ratio`` times its
baseline share and a log-likelihood score (G²) of ``min_score``; the cluster is every
term that qualifies (at most ``terms``). It resolves after ``clear_buckets`` buckets
without a qualifying term; a new topic opens only after ``cooldown`` buckets.

>>> w = TopicWatch(TopicConfig(clear_buckets=2, cooldown=0))
>>> rows = {"en": [{"term": "computer", "count": 9, "ratio": 40.0, "score": 55.0}]}
>>> w.step(0, rows, baseline_posts=1000, volume_open=False)[0]
'open'
>>> w.step(1, {}, 1000, False), w.step(2, {}, 1000, False)[0]
(None, 'resolve')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class TopicConfig:
    enabled: bool = True
    min_score: float = 30.0
    min_posts: int = 6
    min_ratio: float = 8.0
    baseline_posts: float = 300.0
    terms: int = 5
    clear_buckets: int = 30
    cooldown: int = 360

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: (event, start bucket, cluster rows) or nothing
TopicDecision = tuple[str, int, list[dict[str, Any]]] | None


class TopicWatch:
    """Open/resolve state of one series' emerging topic. State as a dict."""

    def __init__(self, config: TopicConfig | None = None) -> None:
        self.config = config or TopicConfig()
        self.open_start: int | None = None
        self.cluster: list[dict[str, Any]] = []
        self.quiet = 0
        self.cooldown_left = 0

    def qualifying(self, burst: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The cluster: qualifying burst terms of every language, strongest first (ties by term)."""
        c = self.config
        rows = [{**r, "lang": lang} for lang, rs in burst.items() for r in rs
                if r["score"] >= c.min_score and r["count"] >= c.min_posts and r["ratio"] >= c.min_ratio]
        rows.sort(key=lambda r: (-r["score"], r["term"]))
        return rows[:c.terms]

    def step(self, bucket: int, burst: Mapping[str, list[dict[str, Any]]], baseline_posts: float,
             volume_open: bool) -> TopicDecision:
        """Advance by one bucket with the evidence window's burst terms per language."""
        c = self.config
        if not c.enabled:
            return None
        cluster = self.qualifying(burst) if baseline_posts >= c.baseline_posts else []
        if self.open_start is not None:
            if cluster:
                self.quiet = 0
                self.cluster = cluster
                return None
            self.quiet += 1
            if self.quiet >= c.clear_buckets:
                start, rows = self.open_start, self.cluster
                self.open_start, self.cluster, self.quiet = None, [], 0
                self.cooldown_left = c.cooldown
                return ("resolve", start, rows)
            return None
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            return None
        if cluster and not volume_open:
            self.open_start, self.cluster, self.quiet = bucket, cluster, 0
            return ("open", bucket, cluster)
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"config": self.config.as_dict(), "open_start": self.open_start, "cluster": self.cluster,
                "quiet": self.quiet, "cooldown_left": self.cooldown_left}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TopicWatch:
        w = cls(TopicConfig(**state["config"]))
        w.open_start = state["open_start"]
        w.cluster = [dict(r) for r in state["cluster"]]
        w.quiet = int(state["quiet"])
        w.cooldown_left = int(state["cooldown_left"])
        return w
