"""The pipeline's steps as plain objects, shared by the Faust worker and the local runner.

* :class:`Enricher` — validate and score a batch of raw posts (stateless);
* :class:`Aggregator` — dedupe by id and count into event-time buckets, per brand;
* :class:`Detection` — one :class:`~stormwatch.detectors.monitor.SeriesMonitor` per series.

Each keeps its state in mappings that the runtime provides: dicts in the local
runner, Faust tables (with changelog topics) in the worker.

>>> from stormwatch.nlp.lexicon import LexiconScorer
>>> ok, bad = Enricher(LexiconScorer()).enrich([
...     b'{"id":"1","created_at":"2015-02-23T01:00:00Z","channel":"twitter","brand":"A","text":"worst"}',
...     b'{"id":"2"'])
>>> ok.sentiment.label, (bad.reason, bad.stage)
('negative', ('malformed_json', 'enrich'))
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from stormwatch.buckets import BrandBuckets
from stormwatch.dedupe import Deduper
from stormwatch.detectors.monitor import SeriesMonitor
from stormwatch.detectors.policy import PolicyConfig
from stormwatch.model import (
    Alert,
    DeadLetter,
    InvalidRecord,
    Post,
    ScoredPost,
    SeriesStats,
    parse_post,
    raw_text,
)
from stormwatch.nlp.base import Scorer

log = logging.getLogger(__name__)

#: How much of a rejected record a dead letter keeps (characters).
DLQ_RAW_CHARS = 2_000_000


def dead_letter(stage: str, raw: Any, reason: str, error: str, source: str = "") -> DeadLetter:
    return DeadLetter(stage=stage, reason=reason, error=error,
                      raw=raw_text(raw, DLQ_RAW_CHARS), source=source)


class Enricher:
    """Validate + score. One result per input, in order: a ScoredPost or its DeadLetter.

    A scorer that raises on a batch is retried post by post, so only the post that
    makes it fail (a poison message) is dead-lettered.
    """

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer

    def enrich(self, raws: Sequence[Any], sources: Sequence[str] | None = None
               ) -> list[ScoredPost | DeadLetter]:
        results: list[ScoredPost | DeadLetter | Post] = []
        for i, raw in enumerate(raws):
            try:
                results.append(parse_post(raw))
            except InvalidRecord as exc:
                results.append(dead_letter("enrich", raw, exc.reason, exc.detail,
                                           sources[i] if sources else ""))
        posts = [r for r in results if isinstance(r, Post)]
        scored = iter(self._score(posts))
        return [next(scored) if isinstance(r, Post) else r for r in results]

    def _score(self, posts: list[Post]) -> list[ScoredPost | DeadLetter]:
        if not posts:
            return []
        try:
            sentiments = self.scorer.score([p.text for p in posts], [p.lang for p in posts])
            return [ScoredPost(p, s, p.lang) for p, s in zip(posts, sentiments, strict=True)]
        except Exception as exc:
            if len(posts) == 1:
                return [self._poison(posts[0], exc)]
        return [r for p in posts for r in self._score([p])]

    @staticmethod
    def _poison(post: Post, exc: Exception) -> DeadLetter:
        log.warning("scorer failed on post %s: %r", post.id, exc)
        return dead_letter("score", post.to_dict(), "scorer_error", repr(exc)[:500])


class Aggregator:
    """Dedupe + event-time buckets for many brands; state lives in two mappings."""

    def __init__(self, buckets: MutableMapping[str, Any], seen: MutableMapping[str, float],
                 bucket_seconds: int = 60, lateness_seconds: int = 120,
                 dedupe_hours: float = 48.0, evict_every: int = 1000) -> None:
        self.buckets = buckets
        self.deduper = Deduper(seen, dedupe_hours * 3600.0)
        self.bucket_seconds = bucket_seconds
        self.lateness_seconds = lateness_seconds
        self.evict_every = evict_every
        self.duplicates = 0
        self._since_evict = 0

    def add(self, sp: ScoredPost) -> list[SeriesStats]:
        """Count one post of its brand; return the buckets that closed."""
        brand = sp.post.brand
        if self.deduper.seen(brand, sp.post.id, sp.post.ts):
            self.duplicates += 1
            return []
        state = self.buckets.get(brand)
        b = (BrandBuckets.from_state(state) if state is not None
             else BrandBuckets(brand, self.bucket_seconds, self.lateness_seconds))
        closed = b.add(sp)
        self.buckets[brand] = b.state_dict()
        self._since_evict += 1
        if self._since_evict >= self.evict_every and b.max_t is not None:
            self._since_evict = 0
            self.deduper.evict(brand, b.max_t)
        return closed

    def flush(self) -> list[SeriesStats]:
        out: list[SeriesStats] = []
        for brand in sorted(self.buckets):
            b = BrandBuckets.from_state(self.buckets[brand])
            out.extend(b.flush())
            self.buckets[brand] = b.state_dict()
        return out

    def late_total(self) -> int:
        return sum(int(s.get("late_total", 0)) for s in self.buckets.values())


class Detection:
    """One monitor per series, created on first sight; state lives in one mapping."""

    def __init__(self, monitors: MutableMapping[str, Any], detector: str = "poisson-window",
                 params: Mapping[str, Any] | None = None, policy: PolicyConfig | None = None) -> None:
        self.monitors = monitors
        self.detector = detector
        self.params = dict(params or {})
        self.policy = policy or PolicyConfig()

    def observe(self, stats: SeriesStats) -> list[Alert]:
        state = self.monitors.get(stats.series)
        mon = (SeriesMonitor.from_state(state) if state is not None
               else SeriesMonitor.create(self.detector, self.params, self.policy))
        alerts = mon.observe(stats)
        self.monitors[stats.series] = mon.state_dict()
        return alerts
