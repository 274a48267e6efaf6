"""Terms of a post, and which terms burst in a recent window against a decayed baseline.

Posts are cut into lower-case word terms (handles, links, numbers and stop words out);
each term counts once per post, so counts are "posts that mention the term". A
window's counts are compared with the series' baseline by Dunning's log-likelihood
ratio (G²) on the 2×2 table *posts with / without the term* × *window / baseline*.
A term is kept only when it really burst: its share of posts at least ``min_ratio``
(2) times its baseline share and its G² at least ``min_score`` (3.84, the 5 % level
of a χ² test with one degree of freedom) — so an everyday term ("flight") that a busy
window merely mentions a little more often is no burst term. Ties go by term, so the
ranking is the same in every runtime.

>>> tokens("@united My flight was Cancelled Flightled AGAIN!!! #fail http://t.co/x 3 hrs")
['cancelled', 'fail', 'flight', 'flightled', 'hour']
>>> base = {"flight": 300.0, "bag": 40.0, "thanks": 200.0}
>>> recent = {"flight": 30, "computer": 12, "system": 9, "thanks": 3}
>>> [t["term"] for t in burst_terms(recent, 60, base, 1000.0, top=3)]  # flight: 50 % vs 30 %
['computer', 'system']
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: Most terms one post contributes (its first distinct ones).
MAX_TERMS_PER_POST = 40

_NOISE = re.compile(r"https?://\S+|www\.\S+|[@＠]\w+|&\w+;|<[^>]{1,20}>")
_WORD = re.compile(r"[^\W\d_][\w']*[^\W_]|[^\W\d_]{2}", re.UNICODE)

STOPWORDS_EN = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being
below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
during each few for from further get got had hadn't has hasn't have haven't having he her here hers
herself him himself his how i i'm i've if in into is isn't it it's its itself just let's me more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she should
so some such than that that's the their theirs them themselves then there these they they're this
those through to too under until up us very was wasn't we we're were weren't what when where which
while who whom why will with won't would you you're your yours yourself yourselves im ive dont cant
amp yes ok okay hi hey please thank thanks via rt also still one even really u ur
may might must shall pls plz
""".split())  # noqa: SIM905

STOPWORDS_DE = frozenset("""
aber alle allem allen aller alles als also am an ander andere anderem anderen anderer anderes auch
auf aus bei bin bis bist da damit dann das dass dem den denn der des dich die dir doch dort du durch
ein eine einem einen einer eines er es etwas euch euer eure für gegen gewesen hab habe haben hat
hatte hier hin hinter ich ihm ihn ihnen ihr ihre im in ist ja jede jedem jeden jeder jetzt kann kein
keine man mein meine mich mir mit muss nach nicht nichts noch nun nur ob oder ohne schon sehr sein
seine sich sie sind so soll über um und uns unser unter vom von vor war waren was weil wenn werden
wie wieder will wir wird wo zu zum zur mal heute gibt geht gerade immer bitte danke
""".split())  # noqa: SIM905

_NOT_PLURAL = ("ss", "us", "is", "ics", "'s", "news", "always", "series", "yes")


def _singular(w: str) -> str:
    """Crude English plural folding (flights → flight, cities → city, bags → bag).

    >>> [_singular(w) for w in ("flights", "cities", "bags", "status", "news", "was")]
    ['flight', 'city', 'bag', 'status', 'news', 'was']
    """
    if len(w) < 4 or not w.endswith("s") or w.endswith(_NOT_PLURAL):
        return w
    if w.endswith("ies") and len(w) >= 5:
        return w[:-3] + "y"
    return w[:-1]

#: English short forms folded into their word (after plural folding).
_FOLD_EN = {"hrs": "hour", "mins": "minute"}

STOPWORDS = {"en": STOPWORDS_EN, "de": STOPWORDS_DE}
_ALL_STOPWORDS = STOPWORDS_EN | STOPWORDS_DE


def tokens(text: str, lang: str | None = None) -> list[str]:
    """The distinct terms of one post, sorted (stop words of ``lang``, or of all known
    languages when it is unknown, left out)."""
    stop = STOPWORDS.get(lang or "", _ALL_STOPWORDS)
    out: dict[str, None] = {}
    for m in _WORD.finditer(_NOISE.sub(" ", text.lower())):
        w = m.group().strip("'")
        if len(w) < 3 or w in stop:
            continue
        if lang in (None, "en"):
            w = _FOLD_EN.get(w, _singular(w))
        out[w] = None
        if len(out) >= MAX_TERMS_PER_POST:
            break
    return sorted(out)


def _xlogx_ratio(o: float, e: float) -> float:
    return o * math.log(o / e) if o > 0 and e > 0 else 0.0


def g2(a: float, n1: float, c: float, n2: float) -> float:
    """Dunning's G² for a term seen in ``a`` of ``n1`` window posts and ``c`` of ``n2`` baseline posts.

    >>> round(g2(10, 100, 10, 1000), 2), g2(5, 100, 50, 1000)
    (22.91, 0.0)
    """
    b, d = max(n1 - a, 0.0), max(n2 - c, 0.0)
    n = n1 + n2
    if n <= 0:
        return 0.0
    row_term, row_rest = a + c, b + d
    cells = ((a, row_term * n1 / n), (b, row_rest * n1 / n), (c, row_term * n2 / n), (d, row_rest * n2 / n))
    return max(0.0, 2.0 * sum(_xlogx_ratio(o, e) for o, e in cells))


def burst_terms(recent: Mapping[str, float], recent_docs: float, base: Mapping[str, float],
                base_docs: float, top: int = 10, min_count: float = 3.0,
                smoothing: float = 0.5, min_ratio: float = 2.0,
                min_score: float = 3.84) -> list[dict[str, Any]]:
    """The ``top`` terms whose share of posts rose most clearly against the baseline.

    ``recent``/``base`` map term → posts that mention it; ``*_docs`` are the post totals.
    A term needs ``min_count`` window posts, a share ``min_ratio`` times its baseline
    share and a G² of ``min_score``; baseline counts get ``smoothing`` added so a
    term never seen before has a finite ratio. Each row: term, count, share,
    baseline_share, ratio (share / baseline share) and score (G²), rounded.
    """
    if recent_docs <= 0:
        return []
    rows = []
    base_n = max(base_docs, 0.0) + smoothing
    for term, count in recent.items():
        if count < min_count:
            continue
        share = count / recent_docs
        c = base.get(term, 0.0) + smoothing
        base_share = min(c / base_n, 1.0)
        if share <= base_share or share < min_ratio * base_share:
            continue
        score = g2(float(count), float(recent_docs), c, base_n)
        if score < min_score:
            continue
        rows.append((-round(score, 6), term, count, share, base_share))
    rows.sort()
    return [{"term": term, "count": count, "share": round(share, 4), "baseline_share": round(bs, 5),
             "ratio": round(share / bs, 2), "score": round(-neg, 2)}
            for neg, term, count, share, bs in rows[:top]]


def top_counts(counts: Mapping[str, float], k: int) -> list[tuple[str, float]]:
    """The ``k`` largest counts, ties by term (deterministic pruning of a vocabulary).

    >>> top_counts({"b": 2, "a": 2, "c": 5}, 2)
    [('c', 5), ('a', 2)]
    """
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def add_counts(into: dict[str, float], items: Iterable[tuple[str, float]]) -> None:
    for term, n in items:
        into[term] = into.get(term, 0.0) + n
