"""Report an event once: any detector, silenced for a while after each alarm."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stormwatch.detectors.base import Detector, Expectation, Observation, make, register, restore

__all__ = ["Cooldown"]


@register
class Cooldown(Detector):
    """Wrap a registered detector: after a score ≥ ``alarm``, scores are 0 for ``cooldown`` seconds.

    An anomaly usually lasts longer than one bucket; once it has been reported, its
    tail is not news, and repeating it only adds false alarms. This is the same
    post-processing :class:`~stormwatch.detectors.seasonal.SeasonalBaseline` does
    inside, made available to any detector (the NAB bench uses it to give the
    river baselines the same treatment). The inner detector still learns every
    observation.

    Examples
    --------
    >>> det = Cooldown(inner="river-sad", inner_params={"warmup": 10}, alarm=0.6, cooldown=600.0)
    >>> _ = [det.update({"t": 60.0 * i, "value": 10.0 + i % 3}) for i in range(50)]
    >>> det.update({"t": 3000.0, "value": 100.0}) > 0.6
    True
    >>> det.update({"t": 3060.0, "value": 100.0})  # within 10 minutes of the alarm
    0.0
    """

    name = "cooldown"

    def __init__(
        self, inner: str = "river-hst", inner_params: Mapping[str, Any] | None = None,
        alarm: float = 0.9, cooldown: float = 43200.0,
    ) -> None:
        self.inner_name = inner
        self.inner_params = dict(inner_params or {})
        self.alarm = alarm
        self.cooldown = cooldown
        self._inner = make(inner, **self.inner_params)
        self._quiet_until: float | None = None

    def params(self) -> dict[str, Any]:
        return {"inner": self.inner_name, "inner_params": self.inner_params, "alarm": self.alarm,
                "cooldown": self.cooldown}

    def _get_state(self) -> dict[str, Any]:
        return {"inner": self._inner.state_dict(), "quiet_until": self._quiet_until}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self._inner = restore(state["inner"])
        self._quiet_until = state["quiet_until"]

    @property
    def warming_up(self) -> bool:
        return self._inner.warming_up

    def expectation(self) -> Expectation | None:
        return self._inner.expectation()

    def _gate(self, t: float, s: float) -> float:
        q = self._quiet_until
        return 0.0 if q is not None and t < q else s

    def score_one(self, x: Observation) -> float:
        return self._gate(float(x["t"]), self._inner.score_one(x))

    def learn_one(self, x: Observation) -> None:
        self.update(x)

    def update(self, x: Observation) -> float:
        t = float(x["t"])
        s = self._gate(t, self._inner.update(x))
        if s >= self.alarm:
            self._quiet_until = t + self.cooldown
        return s
