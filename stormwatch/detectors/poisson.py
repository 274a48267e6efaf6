"""A count-aware detector for mention volume: a sliding-window sum against a learnt rate.

The observation is one bucket's count. The detector keeps the last ``window`` counts
and a baseline rate per bucket, learnt online with an exponential half-life. The
score is the normal approximation of how unlikely the window's sum is under an
over-dispersed Poisson with the baseline rate. Windows that already look anomalous
teach the baseline ten times more slowly, so a long burst does not become normal
within minutes.

A series is *activated* once it has seen ``activation`` posts: the silence before a
brand's first posts is no baseline. It then warms up for ``warmup`` buckets, during
which it scores 0.

>>> det = PoissonWindow(window=5, halflife=60, warmup=10, activation=3)
>>> scores = [det.update({"t": 60.0 * i, "value": 2.0}) for i in range(40)]
>>> max(scores) < 0.6
True
>>> det.update({"t": 2400.0, "value": 30.0}) > 0.999
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from stormwatch.detectors.base import Detector, Expectation, Observation, register

#: z-score of the band edges reported with the expectation.
BAND_Z = 3.0


def normal_cdf(z: float) -> float:
    """Φ(z), the standard normal CDF.

    >>> round(normal_cdf(0.0), 3), round(normal_cdf(3.0), 5)
    (0.5, 0.99865)
    """
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


@register
class PoissonWindow(Detector):
    """Window sum of counts vs. an over-dispersed Poisson baseline (see module doc)."""

    name = "poisson-window"

    def __init__(self, window: int = 30, halflife: float = 360.0, warmup: int = 120,
                 activation: float = 20.0, overdispersion: float = 1.5,
                 spike_gate: float = 0.99) -> None:
        if window < 1 or halflife <= 0 or warmup < 0 or overdispersion < 1.0:
            raise ValueError("window >= 1, halflife > 0, warmup >= 0, overdispersion >= 1")
        self.window = int(window)
        self.halflife = float(halflife)
        self.warmup = int(warmup)
        self.activation = float(activation)
        self.overdispersion = float(overdispersion)
        self.spike_gate = float(spike_gate)
        self._alpha = 1.0 - 0.5 ** (1.0 / self.halflife)
        self.buf: list[float] = [0.0] * self.window
        self.pos = 0
        self.seen = 0  # buckets seen in total
        self.wsum = 0.0
        self.cum = 0.0  # posts seen before activation
        self.active_for = -1  # buckets since activation; -1 = not active
        self.rate = 0.0
        self.last_score = 0.0
        self._last: Expectation | None = None

    def params(self) -> dict[str, Any]:
        return {"window": self.window, "halflife": self.halflife, "warmup": self.warmup,
                "activation": self.activation, "overdispersion": self.overdispersion,
                "spike_gate": self.spike_gate}

    @property
    def warming_up(self) -> bool:
        return self.active_for < self.warmup

    def score_one(self, x: Observation) -> float:
        value = max(0.0, float(x["value"]))  # counts: a negative value is read as 0
        window_sum = self.wsum - self.buf[self.pos] + value
        expected = self.rate * self.window
        sd = math.sqrt(expected * self.overdispersion + 1.0)
        self._last = Expectation(observed=window_sum, expected=expected,
                                 lower=max(0.0, expected - BAND_Z * sd), upper=expected + BAND_Z * sd)
        if self.warming_up:
            return 0.0
        return normal_cdf((window_sum - expected) / sd)

    def learn_one(self, x: Observation) -> None:
        value = max(0.0, float(x["value"]))  # counts: a negative value is read as 0
        score = self.score_one(x)
        self.wsum += value - self.buf[self.pos]
        self.buf[self.pos] = value
        self.pos = (self.pos + 1) % self.window
        self.seen += 1
        if self.active_for < 0:
            self.cum += value
            if self.cum >= self.activation:
                self.active_for = 0
                self.rate = self.wsum / min(self.seen, self.window)
            return
        self.active_for += 1
        # Running mean at first, then an exponential average; anomalous windows learn slowly.
        alpha = max(1.0 / (self.active_for + 1), self._alpha)
        if score >= self.spike_gate:
            alpha *= 0.1
        self.rate += alpha * (value - self.rate)
        self.last_score = score

    def expectation(self) -> Expectation | None:
        return self._last

    def _get_state(self) -> dict[str, Any]:
        return {"buf": self.buf, "pos": self.pos, "seen": self.seen, "wsum": self.wsum,
                "cum": self.cum, "active_for": self.active_for, "rate": self.rate,
                "last_score": self.last_score}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self.buf = [float(v) for v in state["buf"]]
        self.pos = int(state["pos"])
        self.seen = int(state["seen"])
        self.wsum = float(state["wsum"])
        self.cum = float(state["cum"])
        self.active_for = int(state["active_for"])
        self.rate = float(state["rate"])
        self.last_score = float(state["last_score"])
