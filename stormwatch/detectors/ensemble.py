"""Seasonal baseline + shape, stuck-value and energy views; alarms ranked by how rare they are."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from stormwatch.detectors.base import Detector, Expectation, Observation, register
from stormwatch.detectors.seasonal import SeasonalBaseline

__all__ = ["SeasonalEnsemble"]


@register
class SeasonalEnsemble(Detector):
    """Four views of one series, one alarm decision, and a score that ranks the alarms.

    1. **Level/spike view**: :class:`~stormwatch.detectors.seasonal.SeasonalBaseline`
       (its own cooldown off; ``borrow`` on unless ``seasonal`` says otherwise: a
       weekend hour starts from its weekday twin's offset), giving a score ``s`` in [0, 1).
    2. **Shape view**: each value is quantised into ``levels`` bins over the range
       of the first ``freeze`` observations (values beyond it fall into one bin
       below or above), and the last ``window`` bins form a pattern. A pattern never
       seen before is *novel*. Novelty alone is too common to be an alarm, but it
       confirms moderate level evidence: when a novel pattern meets ``s ≥ gate``,
       ``s`` is raised to ``boost + (1 − boost) s``. At most ``(levels + 2) ** window``
       patterns exist, so the memory is bounded (512 integers with the defaults).
    3. **Stuck-value view**: the first row of a run of identical values longer than
       ``run_ratio`` × every finished run so far (and at least ``min_run`` rows)
       scores ``run_score`` (a flat-lined sensor). In a count series a run of
       zeros is silence (no posts), not a stuck sensor, and is skipped unless
       ``zero_runs``.
    4. **Energy view**: ``e`` = EW average (weight ``var_alpha``) of the squared
       residual ``z²`` of the baseline (``z`` clipped at 10); the row where one step
       lifts ``e`` above ``var_ratio`` × its record scores ``var_score`` (a burst far
       beyond every burst seen, or a sudden jump in variance).
    5. **Alarm and its rank**: the largest of these, ``s ≥ alarm``, is an alarm and
       starts a ``cooldown`` (seconds of event time) in which the score is 0. An
       alarm scores in [0.5, 1): ``0.5 + 0.5 × (mix × g + (1 − mix) × u)`` with
       ``g = 1 − exp(−gap/tau)`` (``gap``: observations since the previous alarm,
       or since the start) and ``u = (s − alarm)/(1 − alarm)``. So an alarm in a
       series that has been quiet for a long time outranks one in a series that
       alarms every day, and a threshold above 0.5 drops the latter first. Below
       the alarm level the score is ``0.5 s / alarm`` (< 0.5). Alarms in the first
       ``settle`` observations (a model still settling) do not reset the gap. An
       alarm 1 … ``daily_days`` days (± ``daily_tol`` seconds) after one of the last
       ``daily_keep`` alarms recurs at the same hour (a daily job): it gets ``g = 0``.

    Views 2–4 start after ``freeze`` observations. Reads ``t`` (epoch seconds) and
    ``value``. Strictly causal; state: the seasonal baseline's ~60 floats, the set
    of patterns seen, ten numbers and the times of the last ``daily_keep``
    alarms. A view is switched off with a score of 0
    (``gate > 1``, ``run_score=0``, ``var_score=0``).

    Parameters
    ----------
    seasonal
        Parameters of the inner seasonal baseline (its ``cooldown`` is forced to 0).
    levels, window, freeze
        Shape view: bins across the learnt range, pattern length, and observations
        whose range defines the bins (and before which views 2–4 are silent).
    gate, boost
        A novel pattern raises a level score ≥ ``gate`` to ``boost + (1 − boost) s``.
    run_score, min_run, run_ratio
        Stuck-value view.
    var_score, var_alpha, var_ratio
        Energy view.
    alarm, cooldown
        Alarm level of the combined score, and seconds of silence after an alarm.
    tau, mix
        Rank of an alarm: gap scale (observations) and weight of the gap vs the evidence.
    settle
        Observations whose alarms do not count as the previous alarm for the gap.
    daily_tol, daily_days, daily_keep
        Daily recurrence (``daily_tol=0``: off).
    zero_runs
        Whether a run of zero counts can be a stuck value.

    Examples
    --------
    >>> det = SeasonalEnsemble(seasonal={"warmup": 20}, freeze=20)
    >>> day = [10, 12, 11, 9, 10, 11, 12, 10, 9, 11]
    >>> scores = [det.update({"t": 300.0 * i, "value": v}) for i, v in enumerate(day * 30)]
    >>> max(scores) < 0.5
    True
    >>> first = det.update({"t": 300.0 * 300, "value": 60})  # the first alarm, after 300 quiet rows
    >>> 0.7 < first < 1.0
    True
    >>> det.update({"t": 300.0 * 301, "value": 80})  # cooling down
    0.0
    """

    name = "seasonal-ensemble"

    def __init__(
        self,
        seasonal: Mapping[str, Any] | None = None,
        levels: int = 6,
        window: int = 3,
        freeze: int = 300,
        gate: float = 0.75,
        boost: float = 0.9,
        alarm: float = 0.9,
        cooldown: float = 43200.0,
        tau: float = 500.0,
        mix: float = 0.5,
        run_score: float = 0.95,
        min_run: int = 10,
        run_ratio: float = 1.0,
        var_score: float = 0.95,
        var_alpha: float = 0.05,
        var_ratio: float = 1.15,
        settle: int = 300,
        daily_tol: float = 2700.0,
        daily_days: int = 3,
        daily_keep: int = 4,
        zero_runs: bool = False,
    ) -> None:
        if levels < 1 or window < 1 or freeze < 1:
            raise ValueError("levels, window and freeze must be ≥ 1")
        if not 0.0 < alarm < 1.0 or not 0.0 <= mix <= 1.0 or tau <= 0.0:
            raise ValueError("alarm must lie in (0, 1), mix in [0, 1], tau > 0")
        if settle < 0 or daily_tol < 0.0 or daily_days < 1 or daily_keep < 0:
            raise ValueError("settle ≥ 0, daily_tol ≥ 0, daily_days ≥ 1 and daily_keep ≥ 0 required")
        inner = {"borrow": True, **dict(seasonal or {})}
        self.seasonal = {k: v for k, v in inner.items() if k != "cooldown"}
        self.levels = int(levels)
        self.window = int(window)
        self.freeze = int(freeze)
        self.gate = float(gate)
        self.boost = float(boost)
        self.alarm = float(alarm)
        self.cooldown = float(cooldown)
        self.tau = float(tau)
        self.mix = float(mix)
        self.run_score = float(run_score)
        self.min_run = int(min_run)
        self.run_ratio = float(run_ratio)
        self.var_score = float(var_score)
        self.var_alpha = float(var_alpha)
        self.var_ratio = float(var_ratio)
        self.settle = int(settle)
        self.daily_tol = float(daily_tol)
        self.daily_days = int(daily_days)
        self.daily_keep = int(daily_keep)
        self.zero_runs = bool(zero_runs)
        self._base = self.levels + 2  # bins −1 … levels, shifted to 0 … levels + 1
        self._modulus = self._base ** self.window
        self._inner = SeasonalBaseline(**self.seasonal, cooldown=0.0)
        self._set_state(self._fresh())

    # -- state ------------------------------------------------------------------
    def _fresh(self) -> dict[str, Any]:
        return {"inner": self._inner.state_dict()["state"], "n": 0, "lo": None, "hi": None,
                "key": 0, "filled": 0, "seen": [], "quiet_until": None, "last_alarm": 0,
                "prev": None, "run": 0, "max_run": 0, "ez2": 0.0, "max_ez2": 0.0, "recent": []}

    def _get_state(self) -> dict[str, Any]:
        return {"inner": self._inner.state_dict()["state"], "n": self._n, "lo": self._lo, "hi": self._hi,
                "key": self._key, "filled": self._filled, "seen": sorted(self._seen),
                "quiet_until": self._quiet_until, "last_alarm": self._last_alarm,
                "prev": self._prev, "run": self._run, "max_run": self._max_run,
                "ez2": self._ez2, "max_ez2": self._max_ez2, "recent": list(self._recent)}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self._inner._set_state(state["inner"])
        self._n = int(state["n"])
        self._lo = state["lo"]
        self._hi = state["hi"]
        self._key = int(state["key"])
        self._filled = int(state["filled"])
        self._seen = {int(k) for k in state["seen"]}
        self._quiet_until = state["quiet_until"]
        self._last_alarm = int(state["last_alarm"])
        self._prev = state["prev"]
        self._run = int(state["run"])
        self._max_run = int(state["max_run"])
        self._ez2 = float(state["ez2"])
        self._max_ez2 = float(state["max_ez2"])
        self._recent = [float(v) for v in state.get("recent", [])]  # older states: none kept

    def params(self) -> dict[str, Any]:
        return {"seasonal": dict(self.seasonal), "levels": self.levels, "window": self.window,
                "freeze": self.freeze, "gate": self.gate, "boost": self.boost, "alarm": self.alarm,
                "cooldown": self.cooldown, "tau": self.tau, "mix": self.mix, "run_score": self.run_score,
                "min_run": self.min_run, "run_ratio": self.run_ratio, "var_score": self.var_score,
                "var_alpha": self.var_alpha, "var_ratio": self.var_ratio,
                "settle": self.settle, "daily_tol": self.daily_tol, "daily_days": self.daily_days,
                "daily_keep": self.daily_keep, "zero_runs": self.zero_runs}

    # -- the model ----------------------------------------------------------------
    @property
    def warming_up(self) -> bool:
        return self._inner.warming_up

    def expectation(self) -> Expectation | None:
        return self._inner.expectation()

    def score_one(self, x: Observation) -> float:
        return self._step(x, learn=False)

    def learn_one(self, x: Observation) -> None:
        self._step(x, learn=True)

    def update(self, x: Observation) -> float:
        return self._step(x, learn=True)

    def _bin(self, v: float, lo: float, hi: float) -> int:
        rng = hi - lo
        if rng <= 0.0:
            rng = abs(hi) * 0.1 + 1e-9
        f = (v - lo) / rng * self.levels
        if f < 0.0:
            return 0  # below the learnt range
        if f >= self.levels:
            return self.levels + 1  # above it
        return int(f) + 1

    def _daily(self, t: float) -> bool:
        """Whether ``t`` is 1 … ``daily_days`` days after a kept alarm, give or take ``daily_tol`` seconds."""
        tol = self.daily_tol
        for past in self._recent:
            d = t - past
            if tol < d <= self.daily_days * 86400.0 + tol:
                r = d % 86400.0
                if r <= tol or 86400.0 - r <= tol:
                    return True
        return False

    def _step(self, x: Observation, learn: bool) -> float:
        v = float(x["value"])
        t = float(x["t"])
        inner = self._inner
        z = 0.0
        if inner._n > 0:  # the baseline's expectation for this value, before it is learnt
            e, spread, _ = inner._expected(t)
            z = (v - e) / spread
        s = inner.update(x) if learn else inner.score_one(x)
        n = self._n
        lo, hi = self._lo, self._hi
        if n < self.freeze:  # the bins' range is learnt from the first `freeze` values
            lo = v if lo is None or v < lo else lo
            hi = v if hi is None or v > hi else hi
        key = (self._key * self._base + self._bin(v, lo, hi)) % self._modulus
        filled = min(self._filled + 1, self.window)
        if filled == self.window and n >= self.freeze and key not in self._seen and s >= self.gate:
            s = max(s, self.boost + (1.0 - self.boost) * s)
        if v == self._prev:
            run, max_run = self._run + 1, self._max_run
        else:  # a run ended: it joins the record of finished runs
            run, max_run = 1, max(self._max_run, self._run)
        silent = v == 0.0 and not self.zero_runs and inner._counts  # no posts: silence, not a stuck sensor
        longest = run == max(self.min_run, math.floor(self.run_ratio * max_run) + 1)
        if n >= self.freeze and not silent and longest:
            s = max(s, self.run_score)  # the first row of a run longer than any before
        ez2 = self._ez2 + self.var_alpha * (min(z * z, 100.0) - self._ez2)
        max_ez2 = self._max_ez2
        if n >= self.freeze and ez2 > self.var_ratio * max_ez2 >= self.var_ratio * self._ez2:
            s = max(s, self.var_score)  # one step lifts the squared-residual average past its record
        if n >= self.freeze // 2 and ez2 > max_ez2:
            max_ez2 = ez2
        out = 0.5 * s / self.alarm
        quiet = self._quiet_until
        alarmed = False
        if quiet is not None and t < quiet:
            out = 0.0
        elif s >= self.alarm:
            alarmed = True
            g = 0.0  # a day (or two, three) after an alarm, at the same hour: a daily event, not news
            if not (self.daily_tol > 0.0 and self._daily(t)):
                g = 1.0 - math.exp(-(n + 1 - self._last_alarm) / self.tau)
            u = (s - self.alarm) / (1.0 - self.alarm)
            out = 0.5 + 0.5 * (self.mix * g + (1.0 - self.mix) * u)
        out = min(out, 0.9999999)
        if learn:
            self._n = n + 1
            self._lo, self._hi = lo, hi
            self._key, self._filled = key, filled
            self._prev, self._run, self._max_run = v, run, max_run
            self._ez2, self._max_ez2 = ez2, max_ez2
            if filled == self.window:
                self._seen.add(key)
            if alarmed:
                self._quiet_until = t + self.cooldown
                if n >= self.settle:  # alarms of a model still settling say little about the series
                    self._last_alarm = n + 1
                if self.daily_keep:
                    self._recent = [t, *self._recent][: self.daily_keep]
        return out
