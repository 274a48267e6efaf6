"""What an alert shows as its evidence: a recent window of buckets against a decayed baseline.

:class:`EvidenceWindow` is pure and lives inside each series' monitor. It keeps the
non-empty buckets of the last ``window`` buckets (posts, negatives, reach, crisis
types, languages, terms) and the series' most negative and most reached posts in that
window. A bucket that leaves the window is added to the baseline: term counts per
language with exponential decay (``half_life`` buckets) and a bounded vocabulary
(the ``vocabulary`` heaviest terms per language), so the baseline never contains the
window it is compared with.

>>> from datetime import datetime, timedelta, UTC
>>> from stormwatch.model import SeriesStats
>>> t0 = datetime(2015, 2, 22, tzinfo=UTC)
>>> def b(i, terms, crisis=()):
...     n = max(t[2] for t in terms)
...     return SeriesStats("Acme", "*", t0 + timedelta(minutes=i), 60, n, negative=n // 2,
...                        langs=(("en", n),), terms=terms, crisis=crisis)
>>> w = EvidenceWindow(EvidenceConfig(window=5))
>>> for i in range(100):
...     w.observe(b(i, (("en", "flight", 4), ("en", "thanks", 2))))
>>> for i in range(100, 105):
...     w.observe(b(i, (("en", "computer", 6), ("en", "flight", 6)), (("outage", 5), ("service", 1))))
>>> w.dominant()
('outage', 0.833)
>>> [t["term"] for t in w.evidence()["burst_terms"]["en"]]
['computer']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stormwatch.crisis.terms import burst_terms, top_counts
from stormwatch.model import SeriesStats


@dataclass(frozen=True, slots=True)
class EvidenceConfig:
    """Sizes of the evidence. ``window`` and ``half_life`` count buckets."""

    window: int = 30
    max_window: int = 240
    half_life: float = 1440.0
    vocabulary: int = 250
    top_terms: int = 8
    min_term_posts: int = 3
    posts: int = 5
    languages: int = 3

    def __post_init__(self) -> None:
        if self.window < 1 or self.half_life <= 0 or self.vocabulary < 1 or self.posts < 0:
            raise ValueError("window, half_life and vocabulary must be > 0, posts >= 0")
        if self.max_window < self.window:
            raise ValueError("max_window must be >= window")


class EvidenceWindow:
    """Recent window + decayed baseline of one series. State as a JSON-able dict."""

    def __init__(self, config: EvidenceConfig | None = None) -> None:
        self.config = config or EvidenceConfig()
        # [bucket, posts, negative, retweets, {crisis: n}, {lang: n}, {lang: {term: n}}]
        self.ring: list[list[Any]] = []
        self.neg_posts: list[list[Any]] = []  # [P(negative), bucket, id, channel, text]
        self.reach_posts: list[list[Any]] = []  # [retweets, bucket, id, channel, text]
        self.base_terms: dict[str, dict[str, float]] = {}
        self.base_docs: dict[str, float] = {}
        self.base_t: int | None = None
        self.now: int | None = None
        self.bucket_seconds = 60

    def observe(self, stats: SeriesStats, hold_from: int | None = None) -> None:
        """Take one closed bucket (in order); older buckets leave the window into the baseline.

        While an incident is open, ``hold_from`` (its first bucket) keeps the window
        open back to it (at most ``max_window`` buckets): the evidence then covers the
        whole incident, and the incident never becomes part of the baseline.
        """
        t = int(stats.bucket_start.timestamp())
        self.now, self.bucket_seconds = t, stats.bucket_seconds
        c = self.config
        oldest = t - (c.window - 1) * stats.bucket_seconds
        if hold_from is not None:
            oldest = max(min(oldest, hold_from), t - (c.max_window - 1) * stats.bucket_seconds)
        while self.ring and self.ring[0][0] < oldest:
            self._to_baseline(self.ring.pop(0))
        if not stats.count and not any(p[1] < oldest for p in self.neg_posts + self.reach_posts):
            return  # a quiet bucket that changes nothing else (the common case)
        if stats.count:
            terms: dict[str, dict[str, int]] = {}
            for lang, term, n in stats.terms:
                terms.setdefault(lang, {})[term] = n
            self.ring.append([t, stats.count, stats.negative, stats.retweets, dict(stats.crisis),
                              dict(stats.langs), terms])
        keep = self.config.posts
        self.neg_posts = _merge(self.neg_posts, [[neg, t, pid, ch, text]
                                                 for pid, ch, neg, text in stats.negative_posts],
                                oldest, keep)
        self.reach_posts = _merge(self.reach_posts, [[n, t, pid, ch, text]
                                                     for pid, ch, n, text in stats.reached], oldest, keep)

    def _growth(self, t: int) -> float:
        """Weight of a post at ``t`` in the units of the baseline (as of ``base_t``)."""
        if self.base_t is None:
            return 1.0
        return 2.0 ** ((t - self.base_t) / (self.config.half_life * self.bucket_seconds))

    def _to_baseline(self, entry: list[Any]) -> None:
        # Decay without touching every weight: the baseline is kept in the units of time
        # base_t and newer posts weigh more (2^(age / half-life)); shares are unchanged by
        # the unit. The units are reset (one pass over the weights) once the factor is big.
        t, langs, terms = entry[0], entry[5], entry[6]
        if self.base_t is None:
            self.base_t = t
        g = self._growth(t)
        if g > 1e6:
            for vocab in self.base_terms.values():
                for term in vocab:
                    vocab[term] = round(vocab[term] / g, 6)
            self.base_docs = {k: round(v / g, 6) for k, v in self.base_docs.items()}
            self.base_t, g = t, 1.0
        for lang, n in langs.items():
            self.base_docs[lang] = self.base_docs.get(lang, 0.0) + n * g
        limit = self.config.vocabulary
        for lang, counts in terms.items():
            vocab = self.base_terms.setdefault(lang, {})
            for term, n in counts.items():
                vocab[term] = vocab.get(term, 0.0) + n * g
            if len(vocab) > limit + limit // 4:  # prune now and then, not on every bucket
                self.base_terms[lang] = dict(top_counts(vocab, limit))

    def baseline(self, lang: str, only: Mapping[str, Any] | None = None) -> tuple[dict[str, float], float]:
        """The decayed baseline of one language as of now: term → posts (the terms in ``only``,
        if given), and all posts."""
        g = self._growth(self.now) if self.now is not None else 1.0
        vocab = self.base_terms.get(lang, {})
        if only is not None:
            return ({k: vocab[k] / g for k in only if k in vocab}, self.base_docs.get(lang, 0.0) / g)
        return {k: v / g for k, v in vocab.items()}, self.base_docs.get(lang, 0.0) / g

    def baseline_posts(self) -> float:
        """Decayed posts in the baseline, all languages."""
        g = self._growth(self.now) if self.now is not None else 1.0
        return sum(self.base_docs.values()) / g

    def reach(self) -> int:
        """Retweets of the window's posts (the incident's, while one is open)."""
        return sum(e[3] for e in self.ring)

    def totals(self) -> dict[str, Any]:
        """Sums over the window: posts, negative, reach, crisis counts, languages, terms."""
        posts = negative = reach = 0
        crisis: dict[str, int] = {}
        langs: dict[str, int] = {}
        terms: dict[str, dict[str, int]] = {}
        for _, n, neg, rt, cr, lg, tm in self.ring:
            posts, negative, reach = posts + n, negative + neg, reach + rt
            for k, v in cr.items():
                crisis[k] = crisis.get(k, 0) + v
            for k, v in lg.items():
                langs[k] = langs.get(k, 0) + v
            for lang, counts in tm.items():
                into = terms.setdefault(lang, {})
                get = into.get
                for k, v in counts.items():
                    into[k] = get(k, 0) + v
        return {"posts": posts, "negative": negative, "reach": reach, "crisis": crisis,
                "langs": langs, "terms": terms}

    def dominant(self, totals: Mapping[str, Any] | None = None) -> tuple[str | None, float | None]:
        """The window's most frequent crisis type (ties by id) and its share of all its posts."""
        tot = totals or self.totals()
        if not tot["crisis"] or not tot["posts"]:
            return None, None
        ctype, n = sorted(tot["crisis"].items(), key=lambda kv: (-kv[1], kv[0]))[0]
        return ctype, round(n / tot["posts"], 3)

    def burst(self, totals: Mapping[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
        """Burst terms per language (the window's ``languages`` biggest), against the baseline."""
        tot = totals or self.totals()
        c = self.config
        out: dict[str, list[dict[str, Any]]] = {}
        for lang, n in top_counts(tot["langs"], c.languages):
            recent = tot["terms"].get(lang, {})
            base, docs = self.baseline(lang, only=recent)
            rows = burst_terms(recent, n, base, docs, top=c.top_terms, min_count=c.min_term_posts)
            if rows:
                out[lang] = rows
        return out

    def evidence(self) -> dict[str, Any]:
        """The alert's evidence (JSON-able, bounded by the config's sizes)."""
        tot = self.totals()
        posts = tot["posts"]
        crisis_mix = dict(sorted(tot["crisis"].items(), key=lambda kv: (-kv[1], kv[0])))
        typed = sum(crisis_mix.values())
        if posts > typed:
            crisis_mix["unclassified"] = posts - typed
        return {
            "since": _iso(self.ring[0][0]) if self.ring else None,
            "window_minutes": round(((self.now or 0) - self.ring[0][0]) / 60 + self.bucket_seconds / 60, 1)
            if self.ring else 0.0,
            "posts": posts,
            "negative_share": round(tot["negative"] / posts, 3) if posts else None,
            "reach": tot["reach"],
            "languages": dict(sorted(tot["langs"].items(), key=lambda kv: (-kv[1], kv[0]))),
            "crisis_mix": crisis_mix,
            "baseline_posts": {k: round(self.baseline(k)[1], 1) for k in sorted(self.base_docs)},
            "burst_terms": self.burst(tot),
            "most_reached": [_post(p, "retweets") for p in self.reach_posts],
            "most_negative": [_post(p, "negative") for p in self.neg_posts],
        }

    def state_dict(self) -> dict[str, Any]:
        return {"config": _config_dict(self.config), "ring": self.ring, "neg_posts": self.neg_posts,
                "reach_posts": self.reach_posts, "base_terms": self.base_terms,
                "base_docs": self.base_docs, "base_t": self.base_t, "now": self.now,
                "bucket_seconds": self.bucket_seconds}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> EvidenceWindow:
        w = cls(EvidenceConfig(**state["config"]))
        w.ring = [list(e) for e in state["ring"]]
        w.neg_posts = [list(p) for p in state["neg_posts"]]
        w.reach_posts = [list(p) for p in state["reach_posts"]]
        w.base_terms = {k: dict(v) for k, v in state["base_terms"].items()}
        w.base_docs = dict(state["base_docs"])
        w.base_t, w.now = state["base_t"], state["now"]
        w.bucket_seconds = int(state["bucket_seconds"])
        return w


def _config_dict(config: EvidenceConfig) -> dict[str, Any]:
    return {f: getattr(config, f) for f in EvidenceConfig.__slots__}  # asdict() is slow per bucket


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


def _merge(kept: list[list[Any]], new: list[list[Any]], oldest: int, keep: int) -> list[list[Any]]:
    """The ``keep`` highest-ranked posts still in the window (ties by id)."""
    rows = [p for p in kept if p[1] >= oldest] + new
    rows.sort(key=lambda p: (-p[0], p[2]))
    return rows[:keep]


def _post(p: list[Any], name: str) -> dict[str, Any]:
    return {"id": p[2], "channel": p[3], name: p[0], "text": p[4]}
