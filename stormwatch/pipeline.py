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

Between :meth:`~Aggregator.begin_batch` and :meth:`~Aggregator.end_batch` a stateful step
keeps the state it changes in memory and writes each key once at the end (the Faust
worker: one changelog record per key and batch instead of one per record). The runtime
sends the batch's outputs and acknowledges them before ``end_batch``; a worker stopped
before that redoes the whole batch from the state it last wrote, and sends the same
outputs again.

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
from collections.abc import Callable, Mapping, MutableMapping, Sequence
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
from stormwatch.nlp.lang import detect_or_none
from stormwatch.positions import KEY as POSITION_KEY
from stormwatch.positions import Position, applied, batched, is_marker, position_of, with_position
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
        self._crisis = self.crisis = crisis or default_classifier()
        self.unmatched = 0  # posts that named no watched brand (or came from an unwatched channel)
        self.set_watch(watch)

    def set_watch(self, watch: WatchConfig | None) -> None:
        """Use this watch config's brand queries (None: the posts' ``brand``) and crisis-type
        rules (its ``crisis_types`` section, else the ones the enricher was made with) from
        the next batch on."""
        self.watch = watch
        self.matcher = watch.matcher() if watch is not None else None
        rules = watch.sections.get("crisis_types") if watch is not None else None
        self.crisis = rules if rules is not None else self._crisis

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
        # A post's declared language, else the one detected offline (py3langid).
        langs = [p.lang or detect_or_none(p.text) for p in posts]
        try:
            sentiments = self.scorer.score([p.text for p in posts], langs)
            return [ScoredPost(p, s, lang, crisis=self.crisis.classify(p.text, lang))
                    for p, s, lang in zip(posts, sentiments, langs, strict=True)]
        except Exception as exc:
            if len(posts) == 1:
                return [self._poison(posts[0], exc)]
        return [r for p in posts for r in self._score([p])]

    @staticmethod
    def _poison(post: Post, exc: Exception) -> DeadLetter:
        log.warning("scorer failed on post %s: %r", post.id, exc)
        return dead_letter("score", post.to_dict(), "scorer_error", repr(exc)[:500])


class _Held:
    """The state objects one batch changed, by key, with the position each has applied.

    A record that raises while it is applied may leave its key's object half changed;
    :meth:`redo` rebuilds that object from the stored state and the batch's earlier
    records of the key, so a failed record changes nothing, as outside a batch.
    """

    def __init__(self) -> None:
        self.objs: dict[str, tuple[Any, Position | None]] = {}
        self.inputs: dict[str, list[tuple[Any, Position | None]]] = {}

    def applied(self, key: str, item: Any, pos: Position | None) -> None:
        self.inputs.setdefault(key, []).append((item, pos))


def _covered(last: Position | None, pos: Position | None) -> bool:
    """Whether a state at ``last`` already holds the record at ``pos``."""
    return pos is not None and last is not None and applied(with_position({}, last), pos)


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
        self._held: _Held | None = None

    def _load(self, brand: str) -> BrandBuckets:
        state = self.buckets.get(brand)
        if state is None:
            return BrandBuckets(brand, self.bucket_seconds, self.lateness_seconds)
        return BrandBuckets.from_state(state)

    def begin_batch(self) -> None:
        """Keep changed brands in memory until :meth:`end_batch` (see the module's doc)."""
        self._held = _Held()

    def end_batch(self, before_write: Callable[[str], None] | None = None) -> None:
        """Write each brand the batch changed, once (``before_write(brand)`` first)."""
        held, self._held = self._held, None
        for brand, (b, pos) in (held.objs if held else {}).items():
            if before_write is not None:
                before_write(brand)
            self.buckets[brand] = batched(with_position(b.state_dict(), pos))

    def _get(self, brand: str) -> tuple[BrandBuckets, Position | None]:
        if self._held is not None and brand in self._held.objs:
            return self._held.objs[brand]
        return self._load(brand), position_of(self.buckets.get(brand))

    def _put(self, brand: str, b: BrandBuckets, pos: Position | None) -> None:
        if self._held is not None:
            self._held.objs[brand] = (b, pos)
        else:
            self.buckets[brand] = with_position(b.state_dict(), pos)

    def add(self, sp: ScoredPost, pos: Position | None = None) -> list[SeriesStats]:
        """Count one post of its brand; return its brand's pending (closed) buckets.

        With the post's input position ``pos``, a post the brand's state has already
        applied (a redelivery, or a copy enrich sent again) changes nothing.
        """
        return self._count(sp, pos).pending()

    def count(self, sp: ScoredPost, pos: Position | None = None) -> None:
        """:meth:`add` without building the pending buckets (a batch asks once, at its end)."""
        self._count(sp, pos)

    def _count(self, sp: ScoredPost, pos: Position | None) -> BrandBuckets:
        brand = sp.post.brand
        b, last = self._get(brand)
        if _covered(last, pos):
            return b
        try:
            b.add(sp)
        except Exception:
            if self._held is not None:
                self._redo(brand)
            raise
        self._put(brand, b, pos if pos is not None else last)
        if self._held is not None:
            self._held.applied(brand, sp, pos)
        return b

    def pending(self, brand: str) -> list[SeriesStats]:
        """The brand's closed buckets not yet acknowledged."""
        return self._get(brand)[0].pending()

    def _redo(self, brand: str) -> None:
        held = self._held
        assert held is not None
        held.objs.pop(brand, None)
        b, last = self._load(brand), position_of(self.buckets.get(brand))
        for sp, pos in held.inputs.get(brand, []):
            if not _covered(last, pos):
                b.add(sp)
                last = pos if pos is not None else last
        held.objs[brand] = (b, last)

    def ack(self, brand: str) -> None:
        b, last = self._get(brand)
        if b.pending_from is not None:
            b.ack()
            self._put(brand, b, last)

    def flush(self) -> list[SeriesStats]:
        """Close every brand's open buckets (end of a finite replay) and hand them on."""
        out: list[SeriesStats] = []
        for brand in sorted(b for b in self.buckets if not is_marker(b)):
            state = self.buckets[brand]
            b = self._load(brand)
            b.flush()
            out.extend(b.pending())
            b.ack()
            self.buckets[brand] = _keep_position(b.state_dict(), state)
        return out

    def totals(self) -> tuple[int, int]:
        """(late, duplicates) over every brand."""
        states = [s for k, s in self.buckets.items() if not is_marker(k)]
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
        #: The reading of the last bucket :meth:`observe` applied (None for a repeat).
        self.last: Reading | None = None
        self._held: _Held | None = None

    def set_watch(self, watch: WatchConfig | None) -> None:
        """Decide the next buckets with this watch config."""
        self.watch = watch

    def _create(self, stats: SeriesStats) -> SeriesMonitor:
        if self.watch is None:
            return SeriesMonitor.create(self.detector, self.params, self.policy, self.evidence)
        d = self.watch.detect(stats.brand, stats.channel)
        return SeriesMonitor.create(self.detector, d.detector_params(self.bucket_seconds, self.params),
                                    d.policy(self.bucket_seconds, self.policy), self.evidence)

    def begin_batch(self) -> None:
        """Keep changed monitors in memory until :meth:`end_batch` (see the module's doc)."""
        self._held = _Held()

    def end_batch(self, before_write: Callable[[str], None] | None = None) -> None:
        """Write each monitor the batch changed, once (``before_write(series)`` first)."""
        held, self._held = self._held, None
        for series, (mon, pos) in (held.objs if held else {}).items():
            if before_write is not None:
                before_write(series)
            self.monitors[series] = batched(with_position(mon.state_dict(), pos))

    def _get(self, stats: SeriesStats) -> tuple[SeriesMonitor, Position | None]:
        if self._held is not None and stats.series in self._held.objs:
            return self._held.objs[stats.series]
        state = self.monitors.get(stats.series)
        mon = SeriesMonitor.from_state(state) if state is not None else self._create(stats)
        return mon, position_of(state)

    def _put(self, series: str, mon: SeriesMonitor, pos: Position | None) -> None:
        if self._held is not None:
            self._held.objs[series] = (mon, pos)
        else:
            self.monitors[series] = with_position(mon.state_dict(), pos)

    def observe(self, stats: SeriesStats, pos: Position | None = None) -> list[Alert]:
        """Feed one bucket to its series' monitor; return the alerts not yet handed on.

        With the record's input position ``pos``, a bucket already applied changes nothing.
        """
        mon, last = self._get(stats)
        self.last = None
        if _covered(last, pos):
            return list(mon.outbox)
        try:
            self._apply(mon, stats)
        except Exception:
            if self._held is not None:
                self._redo(stats)
            raise
        self.last = mon.reading
        self._put(stats.series, mon, pos if pos is not None else last)
        if self._held is not None:
            self._held.applied(stats.series, stats, pos)
        return list(mon.outbox)

    def _apply(self, mon: SeriesMonitor, stats: SeriesStats) -> None:
        watch = self.watch
        if watch is not None:
            mon.policy.config = watch.policy(stats.brand, stats.channel, self.bucket_seconds, self.policy)
        new = mon.observe(stats)
        if watch is not None and new:
            mon.outbox[-len(new):] = [dataclasses.replace(a, config_version=watch.version) for a in new]

    def _redo(self, stats: SeriesStats) -> None:
        held = self._held
        assert held is not None
        held.objs.pop(stats.series, None)
        state = self.monitors.get(stats.series)
        mon = SeriesMonitor.from_state(state) if state is not None else self._create(stats)
        last = position_of(state)
        for st, pos in held.inputs.get(stats.series, []):
            if not _covered(last, pos):
                self._apply(mon, st)
                last = pos if pos is not None else last
        held.objs[stats.series] = (mon, last)

    def ack(self, series: str) -> None:
        """The alerts returned for ``series`` have been handed on: forget them."""
        if self._held is not None and series in self._held.objs:
            self._held.objs[series][0].outbox = []
            return
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
