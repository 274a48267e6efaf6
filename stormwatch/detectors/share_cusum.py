"""Binomial CUSUM on a share (negative-sentiment share), aware of how many posts stand behind it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from stormwatch.detectors.base import Detector, Expectation, Observation, register

__all__ = ["ShareCusum"]


@register
class ShareCusum(Detector):
    """Detect a rise of a share (e.g. of negative posts) with a binomial CUSUM.

    Each bucket brings ``n`` posts of which a share ``value`` is negative, so
    ``k = value × n`` negative posts. The baseline share ``p0`` is an EW average
    over posts (each bucket weighs by its ``n``), learnt ten times slower while a
    change is being accumulated, so a crisis does not quickly teach the baseline
    that it is normal (but a lasting new level is eventually accepted).
    The alternative is ``p1 = p0 + shift × (1 − p0)`` (a share ``shift`` of the
    non-negative posts turning negative). Per bucket the log-likelihood ratio

        llr = k ln(p1/p0) + (n − k) ln((1 − p1)/(1 − p0))

    is accumulated as ``G = max(0, G + llr)``: a bucket with few posts moves ``G``
    little, so a 3-of-4 negative minute does not alarm where 300-of-400 would.
    The score is ``G / (G + h)``: 0.5 when ``G`` reaches the decision interval
    ``h``. ``G`` is capped at ``3h`` so that the end of a change is seen soon.

    Reads ``value`` (share in [0, 1]) and ``n`` (posts; default 1).

    Parameters
    ----------
    shift
        Size of the rise to detect, as a fraction of the non-negative share.
    h
        Decision interval (log-likelihood units) giving a score of 0.5.
    half_life_posts
        Posts after which an old observation's weight in ``p0`` halves.
    warmup_posts
        Posts before any non-zero score.
    prior
        Initial ``p0`` (and the floor/ceiling guard keeps it in [0.001, 0.999]).

    Examples
    --------
    >>> det = ShareCusum(warmup_posts=200)
    >>> calm = [det.update({"t": 60.0 * i, "value": 0.2, "n": 50}) for i in range(40)]
    >>> max(calm)
    0.0
    >>> storm = [det.update({"t": 60.0 * (40 + i), "value": 0.6, "n": 50}) for i in range(3)]
    >>> storm[0] > 0.5, storm[0] < storm[1] <= storm[2]
    (True, True)
    >>> few = ShareCusum(warmup_posts=200)
    >>> _ = [few.update({"t": 60.0 * i, "value": 0.2, "n": 50}) for i in range(40)]
    >>> few.update({"t": 2400.0, "value": 0.75, "n": 4}) < 0.5  # 3 of 4: not yet evidence
    True
    """

    name = "share-cusum"

    def __init__(
        self,
        shift: float = 0.25,
        h: float = 10.0,
        half_life_posts: float = 5000.0,
        warmup_posts: float = 500.0,
        prior: float = 0.3,
    ) -> None:
        if not 0.0 < shift < 1.0:
            raise ValueError("shift must lie in (0, 1)")
        if h <= 0.0 or half_life_posts <= 0.0:
            raise ValueError("h and half_life_posts must be positive")
        self.shift = shift
        self.h = h
        self.half_life_posts = half_life_posts
        self.warmup_posts = warmup_posts
        self.prior = prior
        self._decay_per_post = math.log(2.0) / half_life_posts
        self._set_state({"w_neg": 0.0, "w_all": 0.0, "seen": 0.0, "g": 0.0, "p0": prior})

    def _get_state(self) -> dict[str, Any]:
        return {"w_neg": self._w_neg, "w_all": self._w_all, "seen": self._seen, "g": self._g, "p0": self._p0}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self._w_neg = float(state["w_neg"])  # EW count of negative posts
        self._w_all = float(state["w_all"])  # EW count of all posts
        self._seen = float(state["seen"])
        self._g = float(state["g"])
        self._p0 = float(state["p0"])
        self._observed = self._p0  # the last share seen, for explanations only

    def params(self) -> dict[str, Any]:
        return {
            "shift": self.shift, "h": self.h, "half_life_posts": self.half_life_posts,
            "warmup_posts": self.warmup_posts, "prior": self.prior,
        }

    @property
    def warming_up(self) -> bool:
        return self._seen < self.warmup_posts

    def expectation(self) -> Expectation | None:
        p0 = self._p0
        p1 = p0 + self.shift * (1.0 - p0)
        return Expectation(self._observed, p0, 0.0, p1)

    def _llr(self, x: Observation) -> tuple[float, float, float]:
        n = float(x.get("n", 1.0))
        share = min(1.0, max(0.0, float(x["value"])))
        k = share * n
        p0 = min(0.999, max(0.001, self._p0))
        p1 = p0 + self.shift * (1.0 - p0)
        llr = k * math.log(p1 / p0) + (n - k) * math.log((1.0 - p1) / (1.0 - p0))
        return llr, k, n

    def score_one(self, x: Observation) -> float:
        if self.warming_up:
            return 0.0
        g = min(3.0 * self.h, max(0.0, self._g + self._llr(x)[0]))
        return g / (g + self.h)

    def learn_one(self, x: Observation) -> None:
        llr, k, n = self._llr(x)
        self._observed = k / n if n else self._p0
        if not self.warming_up:
            self._g = min(3.0 * self.h, max(0.0, self._g + llr))
        rate = 1.0 if self._g == 0.0 else 0.1
        keep = math.exp(-self._decay_per_post * n * rate)
        self._w_neg = self._w_neg * keep + k * rate
        self._w_all = self._w_all * keep + n * rate
        if self._w_all > 0.0:
            self._p0 = self._w_neg / self._w_all
        self._seen += n
