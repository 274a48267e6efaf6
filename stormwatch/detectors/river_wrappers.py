"""river's anomaly detectors behind the stormwatch interface, for comparison.

river is an optional extra (``pip install stormwatch[river]``); it is imported
when one of these detectors is built. Their learnt state is a river object, so
:meth:`~stormwatch.detectors.base.Detector.state_dict` holds it pickled (as
base64 text): fine for benchmarks and for state the deployment wrote itself,
never to be loaded from an untrusted source.
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Mapping
from typing import Any

from stormwatch.detectors.base import Detector, Observation, register

__all__ = ["RiverGaussian", "RiverHalfSpaceTrees", "RiverSAD"]


class _RiverDetector(Detector):
    """Pickled river state plus the wrapper's own warm-up counter."""

    warmup: int = 0

    def __init__(self) -> None:
        self._n = 0

    @property
    def warming_up(self) -> bool:
        return self._n < self.warmup

    def _get_state(self) -> dict[str, Any]:
        blob = pickle.dumps(self.__dict__, protocol=pickle.HIGHEST_PROTOCOL)
        return {"pickle": base64.b64encode(blob).decode("ascii")}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self.__dict__.update(pickle.loads(base64.b64decode(state["pickle"])))


@register
class RiverHalfSpaceTrees(_RiverDetector):
    """river ``HalfSpaceTrees`` on the value and its short EW mean, scaled to [0, 1].

    Half-space trees split the unit cube, so both features are min-max scaled
    with the range seen so far (a value beyond it is clipped to the edge, which is
    still the most isolated place). They also learn whatever they are shown, so a
    run of anomalies packed together becomes normal: points scoring at least
    ``learn_below`` are not learnt. Scores are 0 during ``warmup``.

    Examples
    --------
    >>> det = RiverHalfSpaceTrees(warmup=50, seed=1)
    >>> s = [det.update({"t": 60.0 * i, "value": 10 + (i % 5)}) for i in range(400)]
    >>> det.score_one({"t": 0.0, "value": 200}) > max(s[300:])
    True
    """

    name = "river-hst"

    def __init__(
        self, n_trees: int = 25, height: int = 8, window_size: int = 250, smooth: float = 0.1,
        learn_below: float = 0.9, warmup: int = 150, seed: int = 42,
    ) -> None:
        from river import anomaly

        super().__init__()
        self.n_trees, self.height, self.window_size = n_trees, height, window_size
        self.smooth, self.learn_below, self.warmup, self.seed = smooth, learn_below, warmup, seed
        self._model = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size,
                                             seed=seed)
        self._lo = self._hi = None
        self._ew: float | None = None

    def params(self) -> dict[str, Any]:
        return {"n_trees": self.n_trees, "height": self.height, "window_size": self.window_size,
                "smooth": self.smooth, "learn_below": self.learn_below, "warmup": self.warmup,
                "seed": self.seed}

    def _features(self, v: float) -> tuple[dict[str, float], float]:
        ew = v if self._ew is None else self._ew + self.smooth * (v - self._ew)
        lo = v if self._lo is None else min(self._lo, v)
        hi = v if self._hi is None else max(self._hi, v)
        span = (hi - lo) or 1.0
        x = {"value": min(1.0, max(0.0, (v - lo) / span)), "ew": min(1.0, max(0.0, (ew - lo) / span))}
        return x, ew

    def score_one(self, x: Observation) -> float:
        if self._n < self.warmup:
            return 0.0
        feats, _ = self._features(float(x["value"]))
        return float(self._model.score_one(feats))

    def learn_one(self, x: Observation) -> None:
        self.update(x)

    def update(self, x: Observation) -> float:
        v = float(x["value"])
        feats, ew = self._features(v)
        score = float(self._model.score_one(feats))
        if self._n < self.warmup or score < self.learn_below:
            self._model.learn_one(feats)
        out = 0.0 if self._n < self.warmup else score
        self._ew = ew
        self._lo = v if self._lo is None else min(self._lo, v)
        self._hi = v if self._hi is None else max(self._hi, v)
        self._n += 1
        return out


@register
class RiverGaussian(_RiverDetector):
    """river ``GaussianScorer`` over a rolling window: NAB's "windowed Gaussian" idea.

    Score ``2 |CDF(value) − 0.5|`` of a Gaussian fitted to the last ``window_size``
    values.

    >>> det = RiverGaussian(window_size=100, warmup=20)
    >>> _ = [det.update({"t": 0.0, "value": 10 + (i % 3)}) for i in range(100)]
    >>> det.score_one({"t": 0.0, "value": 11}) < 0.5 < det.score_one({"t": 0.0, "value": 20})
    True
    """

    name = "river-gaussian"

    def __init__(self, window_size: int = 6400, warmup: int = 150) -> None:
        from river import anomaly

        super().__init__()
        self.window_size, self.warmup = window_size, warmup
        self._model = anomaly.GaussianScorer(window_size=window_size, grace_period=warmup)

    def params(self) -> dict[str, Any]:
        return {"window_size": self.window_size, "warmup": self.warmup}

    def score_one(self, x: Observation) -> float:
        if self._n < self.warmup:
            return 0.0
        return float(self._model.score_one(None, float(x["value"])))

    def learn_one(self, x: Observation) -> None:
        self._model.learn_one(None, float(x["value"]))
        self._n += 1


@register
class RiverSAD(_RiverDetector):
    """river ``StandardAbsoluteDeviation``: |value − mean| / std, mapped to ``d / (d + 3)``.

    >>> det = RiverSAD(warmup=20)
    >>> _ = [det.update({"t": 0.0, "value": 10 + (i % 3)}) for i in range(100)]
    >>> det.score_one({"t": 0.0, "value": 11}) < 0.5 < det.score_one({"t": 0.0, "value": 20})
    True
    """

    name = "river-sad"

    def __init__(self, warmup: int = 150) -> None:
        from river import anomaly

        super().__init__()
        self.warmup = warmup
        self._model = anomaly.StandardAbsoluteDeviation()

    def params(self) -> dict[str, Any]:
        return {"warmup": self.warmup}

    def score_one(self, x: Observation) -> float:
        if self._n < self.warmup:
            return 0.0
        d = float(self._model.score_one(None, float(x["value"])))
        return d / (d + 3.0)

    def learn_one(self, x: Observation) -> None:
        self._model.learn_one(None, float(x["value"]))
        self._n += 1
