"""The pipeline's steps as plain objects, shared by the Faust worker and the local runner.

* :class:`Enricher` — validate and score a batch of raw posts (stateless); with a watch
  config (:mod:`stormwatch.watch`) it also decides each post's brands from its text;
* :class:`Aggregator` — count into event-time buckets per brand, duplicates once;
* :class:`Detection` — one :class:`~stormwatch.detectors.monitor.SeriesMonitor` per series.

Each keeps its state in a mapping that the runtime provides: a dict in the local
runner, a Faust table (with a changelog topic) in the worker. The stateful steps
hand their outputs on in two phases — the state is written with the outputs still
pending, the runtime sends them, then ``ack`` forgets them — so a worker stopped in
between sends them again after a restart (at least once) instead of losing them.

>>> from stormwatch.nlp.lexicon import LexiconScorer
>>> ok, bad = Enricher(LexiconScorer()).enrich([
...     b'{"id":"1","created_at":"2015-02-23T01:00:00Z","channel":"twitter","brand":"A","text":"worst"}',
...     b'{"id":"2"'])
>>> ok.sentiment.label, (bad.reason, bad.stage)
('negative', ('malformed_json', 'enrich'))
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from stormwatch.buckets import BrandBuckets
from stormwatch.crisis.evidence import EvidenceConfig
from stormwatch.crisis.types import CrisisClassifier, default_classifier
from stormwatch.detectors.monitor import Reading, SeriesMonitor
from stormwatch.detectors.policy import PolicyConfig
from stormwatch.model import (
    Alert,
    DeadLetter,
    InvalidRecord,
    Post,
    ScoredPost,
    SeriesStats,
    loads_object,
    parse_post,
    raw_text,
    writable,
)
from stormwatch.nlp.base import Scorer
from stormwatch.positions import KEY as POSITION_KEY
from stormwatch.positions import Position, applied, with_position
from stormwatch.watch import WatchConfig

log = logging.getLogger(__name__)

#: How much of a rejected record a dead letter keeps (characters).
DLQ_RAW_CHARS = 2_000_000


def dead_letter(stage: str, raw: Any, reason: str, error: str, source: str = "") -> DeadLetter:
    return DeadLetter(stage=stage, reason=reason, error=writable(error),
                      raw=raw_text(raw, DLQ_RAW_CHARS), source=writable(source))


class Enricher:
    """Validate + score. One result per input, in order: a ScoredPost or its DeadLetter.

    A scorer that raises on a batch is retried post by post, so only the post that
    makes it fail (a poison message) is dead-lettered.
    """

    def __init__(self, scorer: Scorer, watch: WatchConfig | None = None,
                 crisis: CrisisClassifier | None = None) -> None:
        self.scorer = scorer
        self.crisis = crisis or default_classifier()
        self.unmatched = 0  # posts that named no watched brand (or came from an unwatched channel)
        self.set_watch(watch)

    def set_watch(self, watch: WatchConfig | None) -> None:
        """Use this watch config's brand queries from the next batch on (None: the posts' ``brand``)."""
        self.watch = watch
        self.matcher = watch.matcher() if watch is not None else None

    def enrich_matched(self, raws: Sequence[Any], sources: Sequence[str] | None = None
                       ) -> list[list[ScoredPost] | DeadLetter]:
        """One result per input: its DeadLetter, or one ScoredPost per brand it names.

        Without a watch config that is always the post itself, with the ``brand`` it came
        with. With one, the brands come from the config's queries over the text, in the
        config's order; the post's own ``brand`` field is ignored (and may be absent). A
        post naming two brands counts for both; one naming none (or on a channel the
        config does not watch) gives an empty list, is not scored, and is counted in
        :attr:`unmatched`.
        """
        matcher, watch = self.matcher, self.watch  # set_watch may swap them meanwhile
        if matcher is None or watch is None:
            return [r if isinstance(r, DeadLetter) else [r] for r in self.enrich(raws, sources)]
        parsed: list[tuple[Post, list[str]] | DeadLetter] = []
        for i, raw in enumerate(raws):
            try:
                data = dict(loads_object(raw))
                if not data.get("brand"):
                    data["brand"] = "-"  # decided below from the text
                post = parse_post(data)
            except InvalidRecord as exc:
                parsed.append(dead_letter("enrich", raw, exc.reason, exc.detail,
                                          sources[i] if sources else ""))
                continue
            brands = matcher.match(post.text, post.lang) if watch.watches_channel(post.channel) else []
            self.unmatched += not brands
            parsed.append((post, brands))
        todo = [p for p, brands in (x for x in parsed if not isinstance(x, DeadLetter)) if brands]
        scored = iter(self._score(todo))
        out: list[list[ScoredPost] | DeadLetter] = []
        for item in parsed:
            if isinstance(item, DeadLetter):
                out.append(item)
                continue
            post, brands = item
            if not brands:
                out.append([])
                continue
            sp = next(scored)
            out.append(sp if isinstance(sp, DeadLetter) else
                       [dataclasses.replace(sp, post=dataclasses.replace(post, brand=b)) for b in brands])
        return out

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
            return [ScoredPost(p, s, p.lang, crisis=self.crisis.classify(p.text, p.lang))
                    for p, s in zip(posts, sentiments, strict=True)]
        except Exception as exc:
            if len(posts) == 1:
                return [self._poison(posts[0], exc)]
        return [r for p in posts for r in self._score([p])]

    @staticmethod
    def _poison(post: Post, exc: Exception) -> DeadLetter:
        log.warning("scorer failed on post %s: %r", post.id, exc)
        return dead_letter("score", post.to_dict(), "scorer_error", repr(exc)[:500])


class Aggregator:
    """Event-time buckets (with id dedupe) for many brands; state lives in one mapping.

    Each step is two writes of the brand's state: :meth:`add` counts the post and
    returns the buckets pending to be handed on, :meth:`ack` forgets them once sent.
    """

    def __init__(self, buckets: MutableMapping[str, Any], bucket_seconds: int = 60,
                 lateness_seconds: int = 120) -> None:
        self.buckets = buckets
        self.bucket_seconds = bucket_seconds
        self.lateness_seconds = lateness_seconds

    def _load(self, brand: str) -> BrandBuckets:
        state = self.buckets.get(brand)
        if state is None:
            return BrandBuckets(brand, self.bucket_seconds, self.lateness_seconds)
        return BrandBuckets.from_state(state)

    def add(self, sp: ScoredPost, pos: Position | None = None) -> list[SeriesStats]:
        """Count one post of its brand; return its brand's pending (closed) buckets.

        With the post's input position ``pos``, a post the brand's state has already
        applied (a redelivery, or a copy enrich sent again) changes nothing.
        """
        state = self.buckets.get(sp.post.brand)
        b = self._load(sp.post.brand)
        if pos is not None and applied(state, pos):
            return b.pending()
        b.add(sp)
        self.buckets[sp.post.brand] = with_position(b.state_dict(), pos)
        return b.pending()

    def ack(self, brand: str) -> None:
        state = self.buckets.get(brand)
        b = self._load(brand)
        if b.pending_from is not None:
            b.ack()
            self.buckets[brand] = _keep_position(b.state_dict(), state)

    def flush(self) -> list[SeriesStats]:
        """Close every brand's open buckets (end of a finite replay) and hand them on."""
        out: list[SeriesStats] = []
        for brand in sorted(self.buckets):
            state = self.buckets[brand]
            b = self._load(brand)
            b.flush()
            out.extend(b.pending())
            b.ack()
            self.buckets[brand] = _keep_position(b.state_dict(), state)
        return out

    def totals(self) -> tuple[int, int]:
        """(late, duplicates) over every brand."""
        states = list(self.buckets.values())
        return (sum(int(s["late_total"]) for s in states), sum(int(s["duplicates"]) for s in states))


class Detection:
    """One monitor per series, created on first sight; state lives in one mapping.

    With a watch config, each series' alert policy comes from it (preset and overrides
    for its brand and channel) and is applied at every bucket, so a config swapped in
    with :meth:`set_watch` decides the very next bucket; its warm-up applies to series
    created after it. Alerts then carry the config's version.
    """

    def __init__(self, monitors: MutableMapping[str, Any], detector: str = "poisson-window",
                 params: Mapping[str, Any] | None = None, policy: PolicyConfig | None = None,
                 watch: WatchConfig | None = None, bucket_seconds: int = 60,
                 evidence: EvidenceConfig | None = None) -> None:
        self.monitors = monitors
        self.detector = detector
        self.params = dict(params or {})
        self.policy = policy or PolicyConfig()
        self.evidence = evidence
        self.watch = watch
        self.bucket_seconds = bucket_seconds

    def set_watch(self, watch: WatchConfig | None) -> None:
        """Decide the next buckets with this watch config."""
        self.watch = watch

    def _create(self, stats: SeriesStats) -> SeriesMonitor:
        if self.watch is None:
            return SeriesMonitor.create(self.detector, self.params, self.policy, self.evidence)
        d = self.watch.detect(stats.brand, stats.channel)
        return SeriesMonitor.create(self.detector, d.detector_params(self.bucket_seconds, self.params),
                                    d.policy(self.bucket_seconds, self.policy), self.evidence)
        #: The reading of the last bucket :meth:`observe` applied (None for a repeat).
        self.last: Reading | None = None

    def observe(self, stats: SeriesStats, pos: Position | None = None) -> list[Alert]:
        """Feed one bucket to its series' monitor; return the alerts not yet handed on.

        With the record's input position ``pos``, a bucket already applied changes nothing.
        """
        state = self.monitors.get(stats.series)
        mon = SeriesMonitor.from_state(state) if state is not None else self._create(stats)
        self.last = None
        if pos is not None and applied(state, pos):
            return list(mon.outbox)
        watch = self.watch
        if watch is not None:
            mon.policy.config = watch.policy(stats.brand, stats.channel, self.bucket_seconds, self.policy)
        new = mon.observe(stats)
        if watch is not None and new:
            mon.outbox[-len(new):] = [dataclasses.replace(a, config_version=watch.version) for a in new]
        self.last = mon.reading
        self.monitors[stats.series] = with_position(mon.state_dict(), pos)
        return list(mon.outbox)

    def ack(self, series: str) -> None:
        """The alerts returned for ``series`` have been handed on: forget them."""
        state = self.monitors.get(series)
        if state is not None and state["outbox"]:
            mon = SeriesMonitor.from_state(state)
            mon.outbox = []
            self.monitors[series] = _keep_position(mon.state_dict(), state)


def _keep_position(new: dict[str, Any], old: Mapping[str, Any] | None) -> dict[str, Any]:
    """``new`` state carrying over the input position ``old`` had applied."""
    if old and POSITION_KEY in old:
        new[POSITION_KEY] = old[POSITION_KEY]
    return new
