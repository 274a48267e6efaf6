"""Event-time buckets per brand × channel and per brand, closed by a watermark.

One :class:`BrandBuckets` holds one brand's open buckets. Posts arrive late and out
of order: the watermark is the latest event time seen minus the allowed lateness,
and a bucket closes once the watermark passes its end. A post for a bucket that has
already closed is *late*: it is not counted in a bucket, but in the ``late`` field of
the next bucket that closes (and so in the ``late`` metric), never dropped silently.
Quiet minutes close as buckets with a count of zero, so detectors see silence too.

A post whose id is already counted in its (open) bucket is a duplicate and is not
counted again; the ids live in the same state as the counts, so the two can never
disagree after a restart. Closed buckets stay in the state as *pending* until the
runtime has handed them on and calls :meth:`BrandBuckets.ack`: a worker stopped in
between sends them again after its restart instead of losing them.

>>> from datetime import datetime, UTC
>>> from stormwatch.model import Post, ScoredPost, Sentiment
>>> def sp(i, minute, second=0):
...     t = datetime(2015, 2, 23, 1, minute, second, tzinfo=UTC)
...     post = Post(id=str(i), created_at=t, channel="twitter", brand="American", text="x")
...     return ScoredPost(post, Sentiment("negative", 0.9, 0.9, "m"))
>>> b = BrandBuckets("American", bucket_seconds=60, lateness_seconds=60)
>>> b.add(sp(1, 0)), b.add(sp(1, 0)), b.add(sp(2, 1, 30)), b.pending(), b.duplicates
(True, False, True, [], 1)
>>> b.add(sp(3, 2, 5))
True
>>> [(s.series, s.bucket_start.minute, s.count) for s in b.pending()]
[('American/*', 0, 1), ('American/twitter', 0, 1)]
>>> b.ack(); b.pending()
[]
>>> b.add(sp(4, 0, 10))  # its bucket (01:00) has closed: late
False
>>> b.flush()
>>> [(s.series, s.bucket_start.minute, s.count, s.late) for s in b.pending()]
[('American/*', 1, 1, 1), ('American/twitter', 1, 1, 1),
 ('American/*', 2, 1, 0), ('American/twitter', 2, 1, 0)]
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from stormwatch.crisis.terms import tokens, top_counts
from stormwatch.model import ALL_CHANNELS, ScoredPost, SeriesStats

#: How many sample posts (the most negative ones) a bucket keeps per series.
SAMPLES = 3
#: How many of its most retweeted posts a bucket keeps per series.
REACHED = 3
#: Longest sample text kept in a bucket, in characters.
SAMPLE_CHARS = 280
#: Distinct terms an open bucket counts per language (later new terms are not counted).
BUCKET_VOCABULARY = 1000
#: Terms a closed bucket reports per language (its most frequent).
BUCKET_TERMS = 40
#: The language key for posts without one.
UNKNOWN_LANG = "und"


def _new_acc() -> list[Any]:
    # count, negative, neutral, positive, negative_score_sum, retweets, samples, post ids,
    # crisis counts, language counts, term counts per language, most reached posts
    return [0, 0, 0, 0, 0.0, 0, [], [], {}, {}, {}, []]


class BrandBuckets:
    """Open buckets and the watermark of one brand. Pure: no I/O, state as a dict."""

    def __init__(self, brand: str, bucket_seconds: int = 60, lateness_seconds: int = 120) -> None:
        if bucket_seconds <= 0 or lateness_seconds < 0:
            raise ValueError("bucket_seconds must be > 0 and lateness_seconds >= 0")
        self.brand = brand
        self.bucket_seconds = int(bucket_seconds)
        self.lateness_seconds = int(lateness_seconds)
        self.open: dict[int, dict[str, list[Any]]] = {}
        self.max_t: float | None = None
        self.next_close: int | None = None  # start of the oldest bucket not yet closed
        self.channels: list[str] = []
        # per channel, the first bucket it is reported in: the oldest bucket still open when
        # it first appeared (a closed bucket already handed on before it did not list it,
        # and a batch that hands buckets on later must not list it either)
        self.channel_from: dict[str, int] = {}
        self.late: dict[str, int] = {}  # late posts not yet reported in a closed bucket
        self.late_total = 0
        self.duplicates = 0
        # Closed buckets not yet acknowledged: [pending_from, next_close)
        self.pending_from: int | None = None
        self.closed: dict[int, dict[str, list[Any]]] = {}
        self.closed_late: dict[int, dict[str, int]] = {}

    def _bucket(self, t: float) -> int:
        return int(t // self.bucket_seconds) * self.bucket_seconds

    def add(self, sp: ScoredPost) -> bool:
        """Count one scored post; False if it was a duplicate or late (not counted in a bucket).

        Buckets that its arrival closes become :meth:`pending`.
        """
        t = sp.post.ts
        b = self._bucket(t)
        channel = sp.post.channel
        if self.next_close is not None and b < self.next_close:
            if channel not in self.channels:
                self._add_channel(channel)
            for key in (ALL_CHANNELS, channel):
                self.late[key] = self.late.get(key, 0) + 1
            self.late_total += 1
            return False
        per_channel = self.open.get(b)
        if per_channel is not None and sp.post.id in per_channel[ALL_CHANNELS][7]:
            self.duplicates += 1
            return False
        if channel not in self.channels:
            self._add_channel(channel)
        if self.next_close is None:
            self.next_close = b
        if per_channel is None:
            per_channel = self.open[b] = {}
        terms = tokens(sp.post.text, sp.lang)
        for key in (ALL_CHANNELS, channel):
            acc = per_channel.get(key)
            if acc is None:
                acc = per_channel[key] = _new_acc()
            _count(acc, sp, terms)
        per_channel[ALL_CHANNELS][7].append(sp.post.id)
        if self.max_t is None or t > self.max_t:
            self.max_t = t
        self._close_until(self.max_t - self.lateness_seconds)
        return True

    def _add_channel(self, channel: str) -> None:
        self.channels.append(channel)
        self.channels.sort()
        if self.next_close is not None:
            self.channel_from[channel] = self.next_close

    def flush(self) -> None:
        """Close every open bucket (end of a finite replay); they become pending."""
        if self.open:
            self._close_until(max(self.open) + self.bucket_seconds)

    def _close_until(self, watermark: float) -> None:
        if self.next_close is None:
            return
        while self.next_close + self.bucket_seconds <= watermark:
            start = self.next_close
            if self.pending_from is None:
                self.pending_from = start
            accs = self.open.pop(start, None)
            if accs:
                self.closed[start] = accs
            if self.late:
                self.closed_late[start], self.late = self.late, {}
            self.next_close = start + self.bucket_seconds

    def pending(self) -> list[SeriesStats]:
        """The closed buckets not yet acknowledged, in order: each series of each bucket."""
        out: list[SeriesStats] = []
        if self.pending_from is None or self.next_close is None:
            return out
        for start in range(self.pending_from, self.next_close, self.bucket_seconds):
            accs = self.closed.get(start, {})
            late = self.closed_late.get(start, {})
            for key in [ALL_CHANNELS, *self.channels]:
                if start >= self.channel_from.get(key, start):
                    out.append(self._stats(start, key, accs.get(key), late.get(key, 0)))
        return out

    def ack(self) -> None:
        """The pending buckets have been handed on: forget them."""
        self.pending_from = None
        self.closed = {}
        self.closed_late = {}

    def _stats(self, start: int, channel: str, acc: list[Any] | None, late: int) -> SeriesStats:
        when = datetime.fromtimestamp(start, tz=UTC)
        if acc is None:
            return SeriesStats(self.brand, channel, when, self.bucket_seconds, 0, late=late)
        count, neg, neu, pos, neg_sum, retweets, samples = acc[:7]
        crisis, langs, terms, reached = acc[8:12]
        return SeriesStats(
            brand=self.brand, channel=channel, bucket_start=when,
            bucket_seconds=self.bucket_seconds, count=count, negative=neg, neutral=neu,
            positive=pos, negative_score_sum=round(neg_sum, 6), retweets=retweets, late=late,
            samples=tuple((s[1], s[2]) for s in samples),
            negative_posts=tuple((s[1], s[3], round(s[0], 4), s[2]) for s in samples),
            crisis=tuple(sorted(crisis.items())), langs=tuple(sorted(langs.items())),
            terms=tuple((lang, term, n) for lang in sorted(terms)
                        for term, n in top_counts(terms[lang], BUCKET_TERMS)),
            reached=tuple((pid, ch, n, text) for n, pid, ch, text in reached),
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "brand": self.brand, "bucket_seconds": self.bucket_seconds,
            "lateness_seconds": self.lateness_seconds,
            "open": {str(b): v for b, v in self.open.items()},
            "max_t": self.max_t, "next_close": self.next_close, "channels": self.channels,
            "channel_from": self.channel_from,
            "late": self.late, "late_total": self.late_total, "duplicates": self.duplicates,
            "pending_from": self.pending_from,
            "closed": {str(b): v for b, v in self.closed.items()},
            "closed_late": {str(b): v for b, v in self.closed_late.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> BrandBuckets:
        obj = cls(state["brand"], state["bucket_seconds"], state["lateness_seconds"])
        obj.open = {int(b): {ch: _acc(acc) for ch, acc in v.items()} for b, v in state["open"].items()}
        obj.max_t = state["max_t"]
        obj.next_close = state["next_close"]
        obj.channels = list(state["channels"])
        obj.channel_from = {k: int(v) for k, v in state.get("channel_from", {}).items()}
        obj.late = dict(state["late"])
        obj.late_total = int(state["late_total"])
        obj.duplicates = int(state["duplicates"])
        obj.pending_from = state["pending_from"]
        obj.closed = {int(b): {ch: _acc(acc) for ch, acc in v.items()} for b, v in state["closed"].items()}
        obj.closed_late = {int(b): dict(v) for b, v in state["closed_late"].items()}
        return obj


def _acc(acc: list[Any]) -> list[Any]:
    """An accumulator from a state written before the evidence fields existed, completed."""
    acc = list(acc)
    acc[6] = [s if len(s) > 3 else [*s, ""] for s in acc[6]]
    return acc + _new_acc()[len(acc):]


def _count(acc: list[Any], sp: ScoredPost, terms: list[str]) -> None:
    s = sp.sentiment
    post = sp.post
    acc[0] += 1
    acc[1 + ("negative", "neutral", "positive").index(s.label)] += 1
    acc[4] += s.negative
    acc[5] += post.retweets
    samples: list[Any] = acc[6]
    if s.label == "negative" and (len(samples) < SAMPLES or s.negative > samples[-1][0]):
        samples.append([s.negative, post.id, post.text[:SAMPLE_CHARS], post.channel])
        samples.sort(key=lambda x: -x[0])
        del samples[SAMPLES:]
    if sp.crisis is not None:
        acc[8][sp.crisis] = acc[8].get(sp.crisis, 0) + 1
    lang = sp.lang or UNKNOWN_LANG
    acc[9][lang] = acc[9].get(lang, 0) + 1
    vocab = acc[10].setdefault(lang, {})
    for term in terms:
        if term in vocab:
            vocab[term] += 1
        elif len(vocab) < BUCKET_VOCABULARY:
            vocab[term] = 1
    reached: list[Any] = acc[11]
    if post.retweets > 0 and (len(reached) < REACHED or post.retweets > reached[-1][0]):
        reached.append([post.retweets, post.id, post.channel, post.text[:SAMPLE_CHARS]])
        reached.sort(key=lambda x: -x[0])
        del reached[REACHED:]
