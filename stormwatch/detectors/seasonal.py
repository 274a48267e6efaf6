"""Count-aware seasonal baseline: the default mention-volume detector."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from stormwatch.detectors.base import Detector, Expectation, Observation, register

__all__ = ["SeasonalBaseline", "gaussian_surprise"]

_SQRT2 = math.sqrt(2.0)
_LN_SQRT_PI_2 = 0.5 * math.log(math.pi / 2.0)
_SLOTS = {"weekpart": 48, "day": 24, "week": 168, "none": 1}


def gaussian_surprise(z: float) -> float:
    """−ln P(|Z| ≥ |z|) for a standard normal Z: 0 at z = 0, about z²/2 far out.

    >>> gaussian_surprise(0.0)
    0.0
    >>> round(gaussian_surprise(1.959964), 4)  # a 5% two-sided tail
    2.9957
    >>> round(gaussian_surprise(10.0), 2)
    52.54
    >>> abs(gaussian_surprise(4.999999) - gaussian_surprise(5.0)) < 1e-3  # the two forms meet
    True
    """
    a = abs(z)
    if a < 5.0:
        return max(0.0, -math.log(math.erfc(a / _SQRT2)))
    # asymptotic tail: erfc(a/√2) ≈ √(2/π) e^{−a²/2} / a × (1 − 1/a² + 3/a⁴)
    a2 = a * a
    return 0.5 * a2 + math.log(a) + _LN_SQRT_PI_2 - math.log(1.0 - 1.0 / a2 + 3.0 / (a2 * a2))


@register
class SeasonalBaseline(Detector):
    """Expected level and spread learnt online, with hour-of-day × weekday/weekend offsets.

    The expectation is an exponentially weighted level plus a per-slot seasonal
    offset (slot = hour of day of ``t``, UTC, separately for weekdays and
    weekends; or hour of day only, or hour of week). Each residual is
    clipped at ``clip`` spreads before it updates the level, the spread and the
    offsets, so spikes already seen do not drag the baseline along. The spread is
    the EW standard deviation of those clipped residuals; while every value seen
    is a non-negative integer (a count), Poisson noise ``√max(expected, 1)`` is
    added to it, so low counts (0–5 posts a bucket) do not look anomalous by
    chance alone.

    Evidence is the largest of the standardised EW averages of the residual
    (``shorts``: a fast one, ~the last dozen observations, for bursts, and a slow
    one for level shifts; each rescaled to unit variance under noise), plus a
    "new extreme" check (a value beyond the range seen so far by more than
    ``spatial`` × that range). A lone residual therefore counts only through the
    averages (about half its size with the defaults) or as a new extreme: single
    noisy points alarm far less, sustained changes build up within a few
    observations. (``shorts=(1.0, ...)`` adds the raw residual itself.) The
    evidence becomes a surprise ``S = −ln P(|Z| ≥ z)`` and a score
    ``S / (S + scale)`` in [0, 1).

    An alarm (score ≥ ``alarm``) starts a ``cooldown`` (seconds of event time) in
    which scores are 0: the event has been reported, and its tail is not news.
    Scores are also 0 during the first ``warmup`` observations.

    Reads ``t`` (epoch seconds) and ``value``. State: O(number of slots) floats.

    Parameters
    ----------
    alpha
        EW weight of the level and spread (≈ 1/memory in observations); before
        ``1/alpha`` observations they are plain running averages.
    season
        ``"weekpart"`` (24 hourly slots for weekdays, 24 for Saturday/Sunday),
        ``"day"`` (24), ``"week"`` (168) or ``"none"``.
    season_alpha
        EW weight of a slot's offset, per visit of that slot.
    clip
        Residuals are clipped at this many spreads before learning.
    shorts
        EW weights of the averaged residuals (burst and level-shift evidence).
    spatial
        Tolerance of the new-extreme check, as a fraction of the range seen; 0 = off.
    scale
        Surprise giving a score of 0.5.
    alarm
        Score that starts the cooldown.
    cooldown
        Seconds after an alarm during which the score is 0.
    warmup
        Observations before any non-zero score.
    borrow
        With ``season="weekpart"``: an hour slot never visited starts from the offset
        of its twin in the other part of the week (the first Saturday's 9 h from the
        weekdays' 9 h), instead of 0. Off by default (the product default is
        unchanged); the ``seasonal-ensemble`` turns it on. The slots visited are
        then kept as one integer bit mask.

    Examples
    --------
    >>> det = SeasonalBaseline(warmup=20)
    >>> day = [10, 12, 11, 9, 10, 11, 12, 10, 9, 11]
    >>> scores = [det.update({"t": 300.0 * i, "value": v}) for i, v in enumerate(day * 5)]
    >>> max(scores) < 0.5
    True
    >>> det.update({"t": 300.0 * 50, "value": 60}) > 0.9
    True
    >>> det.update({"t": 300.0 * 51, "value": 80})  # cooling down
    0.0
    >>> exp = det.expectation()  # the spikes barely moved the baseline
    >>> 10 < exp.expected < 15 and exp.upper < 60
    True
    """

    name = "seasonal-baseline"

    def __init__(
        self,
        alpha: float = 0.001,
        season: str = "weekpart",
        season_alpha: float = 0.05,
        clip: float = 5.0,
        shorts: tuple[float, ...] | list[float] = (0.05, 0.15),
        spatial: float = 0.02,
        scale: float = 10.0,
        alarm: float = 0.85,
        cooldown: float = 43200.0,
        warmup: int = 150,
        borrow: bool = False,
    ) -> None:
        if season not in _SLOTS:
            raise ValueError(f"season must be one of {sorted(_SLOTS)}, got {season!r}")
        if not 0.0 < alpha <= 1.0 or not 0.0 < season_alpha <= 1.0:
            raise ValueError("alpha and season_alpha must lie in (0, 1]")
        if any(not 0.0 < b <= 1.0 for b in shorts):
            raise ValueError("shorts must lie in (0, 1]")
        self.alpha = alpha
        self.season = season
        self.season_alpha = season_alpha
        self.clip = clip
        self.shorts = tuple(float(b) for b in shorts)
        self.spatial = spatial
        self.scale = scale
        self.alarm = alarm
        self.cooldown = cooldown
        self.borrow = bool(borrow)
        self.warmup = warmup
        self._n_slots = _SLOTS[season]
        self._weekpart = season == "weekpart"
        self._slot_seconds = 3600.0
        # √((2−b)/b): an EW average of iid unit residuals has variance b/(2−b)
        self._gains = tuple(math.sqrt((2.0 - b) / b) for b in self.shorts)
        self._set_state(self._fresh())

    # -- state ------------------------------------------------------------------
    def _fresh(self) -> dict[str, Any]:
        return {
            "n": 0, "level": 0.0, "var": 0.0, "offsets": [0.0] * self._n_slots,
            "avg": [0.0] * len(self.shorts), "counts": True, "lo": None, "hi": None,
            "quiet_until": None, "last": None, "visited": 0,
        }

    def _get_state(self) -> dict[str, Any]:
        return {
            "n": self._n, "level": self._level, "var": self._var, "offsets": list(self._offsets),
            "avg": list(self._avg), "counts": self._counts, "lo": self._lo, "hi": self._hi,
            "quiet_until": self._quiet_until, "last": self._last, "visited": self._visited,
        }

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self._n = int(state["n"])
        self._level = float(state["level"])
        self._var = float(state["var"])
        self._offsets = [float(v) for v in state["offsets"]]
        self._avg = [float(v) for v in state["avg"]]
        self._counts = bool(state["counts"])
        self._lo = state["lo"]
        self._hi = state["hi"]
        self._quiet_until = state["quiet_until"]
        self._last = None if state["last"] is None else list(state["last"])
        self._visited = int(state.get("visited", (1 << self._n_slots) - 1))  # older states: all visited
        if len(self._offsets) != self._n_slots or len(self._avg) != len(self.shorts):
            raise ValueError("state does not match the detector's parameters")

    def params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha, "season": self.season, "season_alpha": self.season_alpha,
            "clip": self.clip, "shorts": list(self.shorts), "spatial": self.spatial,
            "scale": self.scale, "alarm": self.alarm, "cooldown": self.cooldown, "warmup": self.warmup,
            "borrow": self.borrow,
        }

    # -- the model ----------------------------------------------------------------
    @property
    def warming_up(self) -> bool:
        return self._n < self.warmup

    def expectation(self) -> Expectation | None:
        if self._last is None:
            return None
        e, s = self._last[0], self._last[1]
        observed = self._last[2] if len(self._last) > 2 else e
        lower = e - 3.0 * s
        if self._counts:
            lower = max(0.0, lower)  # a count band does not go below zero
        return Expectation(observed, e, lower, e + 3.0 * s)

    def _slot(self, t: float) -> int:
        hour = int(t // self._slot_seconds)
        if self._weekpart:
            weekend = (hour // 24 + 3) % 7 >= 5  # day 0 (1970-01-01) was a Thursday
            return hour % 24 + (24 if weekend else 0)
        return hour % self._n_slots

    def _offset(self, slot: int) -> float:
        """A slot's offset; with ``borrow``, a weekend hour never visited takes its weekday twin's."""
        if self.borrow and self._weekpart and not (self._visited >> slot) & 1:
            twin = slot + 24 if slot < 24 else slot - 24
            if (self._visited >> twin) & 1:
                return self._offsets[twin]
        return self._offsets[slot]

    def _expected(self, t: float) -> tuple[float, float, int]:
        slot = self._slot(t) if self._n_slots > 1 else 0
        off = self._offsets[slot]
        if self.borrow and not (self._visited >> slot) & 1:
            off = self._offset(slot)
        e = self._level + off
        s = math.sqrt(self._var)
        if self._counts:
            s += math.sqrt(e if e > 1.0 else 1.0)
        else:
            s += 1e-6 * (abs(self._level) + 1e-3)
        return e, s, slot

    def score_one(self, x: Observation) -> float:
        return self._step(x, learn=False)

    def learn_one(self, x: Observation) -> None:
        self._step(x, learn=True)  # an alarm while learning starts the cooldown

    def update(self, x: Observation) -> float:
        return self._step(x, learn=True)

    def _step(self, x: Observation, learn: bool) -> float:
        v = float(x["value"])
        t = float(x["t"])
        n = self._n
        if n == 0:
            if learn:
                self._level, self._var, self._lo, self._hi = v, 0.0, v, v
                self._counts = v >= 0.0 and v == int(v)
                self._n = 1
                self._last = [v, 0.0, v]
            return 0.0
        e, s, slot = self._expected(t)
        r = v - e
        z = r / s
        # evidence: EW averages of the residual, and a new extreme
        zmax = 0.0
        avg = self._avg
        new_avg = []
        for b, g, a in zip(self.shorts, self._gains, avg, strict=True):
            a += b * (z - a)
            new_avg.append(a)
            if abs(a) * g > zmax:
                zmax = abs(a) * g
        surprise = gaussian_surprise(zmax)
        lo, hi = self._lo, self._hi
        if self.spatial > 0.0 and n >= self.warmup:
            tol = self.spatial * (hi - lo)
            if v > hi + tol or v < lo - tol:
                surprise = max(surprise, 1000.0)
        out = 0.0
        if n >= self.warmup:
            quiet = self._quiet_until
            if quiet is None or t >= quiet:
                out = surprise / (surprise + self.scale)
                if out >= self.alarm and learn:
                    self._quiet_until = t + self.cooldown
        if learn:
            self._learn(v, r, s, slot, new_avg)
            self._last = [e, s, v]
        return out

    def _learn(self, v: float, r: float, s: float, slot: int, new_avg: list[float]) -> None:
        n = self._n
        a = 1.0 / (n + 1)  # a plain running mean until 1/alpha observations, then EW
        if a < self.alpha:
            a = self.alpha
        c = self.clip * s
        rc = r if (n < 20 or -c < r < c) else (c if r > 0 else -c)
        self._level += a * rc
        self._var += a * (rc * rc - self._var)
        if self._n_slots > 1:
            off = self._offsets[slot]
            if self.borrow and not (self._visited >> slot) & 1:
                off = self._offset(slot)
                self._visited |= 1 << slot
            self._offsets[slot] = off + self.season_alpha * ((v - self._level) - off)
        self._avg = new_avg
        if self._counts and (v < 0.0 or v != int(v)):
            self._counts = False
        if v < self._lo:
            self._lo = v
        if v > self._hi:
            self._hi = v
        self._n = n + 1
