"""Reference detectors for benchmarks: NAB's "null" and "random" baselines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stormwatch.detectors.base import Detector, Observation, register

__all__ = ["NullDetector", "RandomDetector"]

_MASK = (1 << 64) - 1


@register
class NullDetector(Detector):
    """Always 0: it never detects anything (NAB's null baseline normalises to 0).

    >>> NullDetector().update({"t": 0.0, "value": 1e9})
    0.0
    """

    name = "null"

    def score_one(self, x: Observation) -> float:
        return 0.0

    def learn_one(self, x: Observation) -> None:
        return None

    def params(self) -> dict[str, Any]:
        return {}

    def _get_state(self) -> dict[str, Any]:
        return {}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        return None


@register
class RandomDetector(Detector):
    """Uniform pseudo-random scores, ignoring the data (NAB's random baseline).

    A 64-bit linear congruential generator: the state is one integer, so a
    restored detector goes on with the same sequence.

    >>> from stormwatch.detectors.base import restore
    >>> a = RandomDetector(seed=7)
    >>> [round(a.update({"t": 0.0, "value": 0.0}), 3) for _ in range(3)]
    [0.956, 0.907, 0.273]
    >>> b = restore(a.state_dict())
    >>> a.update({"t": 0.0, "value": 0.0}) == b.update({"t": 0.0, "value": 0.0})
    True
    """

    name = "random"

    def __init__(self, seed: int = 42) -> None:
        self.seed = seed
        self._state = (seed * 6364136223846793005 + 1442695040888963407) & _MASK

    def _next(self, state: int) -> int:
        return (state * 6364136223846793005 + 1442695040888963407) & _MASK

    def score_one(self, x: Observation) -> float:
        return (self._next(self._state) >> 11) / float(1 << 53)

    def learn_one(self, x: Observation) -> None:
        self._state = self._next(self._state)

    def params(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def _get_state(self) -> dict[str, Any]:
        return {"state": self._state}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self._state = int(state["state"])
