"""What every online detector offers, and the registry that names them.

A detector sees one observation at a time, strictly in order, and never the future
(river's ``learn_one`` / ``score_one``). An observation is a mapping with at least

* ``t``: the observation's time, epoch seconds (bucket start);
* ``value``: the series value (a count for mention volume).

Count-aware detectors may read more keys (``n``: posts behind a share, for example)
and say so in their docstring. Scores lie in [0, 1]; 1 is the most anomalous.
The state is a JSON-serialisable dict (:meth:`Detector.state_dict`), so a Faust
table can hold it and :func:`restore` brings back an identical detector.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

Observation = Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the detector saw and expected for the last scored observation.

    ``observed`` is what the score is about (for a windowed detector, the window's sum),
    ``expected`` the centre and ``lower``/``upper`` the band the detector considers normal.
    """

    observed: float
    expected: float
    lower: float
    upper: float


class Detector(abc.ABC):
    """Base class: subclasses set ``name`` and implement the four methods."""

    name: ClassVar[str]

    @abc.abstractmethod
    def score_one(self, x: Observation) -> float:
        """Score ``x`` against what was learnt so far, without learning it."""

    @abc.abstractmethod
    def learn_one(self, x: Observation) -> None:
        """Update the state with ``x``."""

    def update(self, x: Observation) -> float:
        """Score then learn: the usual step in a stream."""
        s = self.score_one(x)
        self.learn_one(x)
        return s

    def expectation(self) -> Expectation | None:
        """The expected value and band behind the last score, if the detector has one."""
        return None

    @property
    def warming_up(self) -> bool:
        """True while the detector has not seen enough data to be trusted."""
        return False

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """The constructor arguments (JSON-serialisable)."""

    @abc.abstractmethod
    def _get_state(self) -> dict[str, Any]:
        """The learnt state (JSON-serialisable)."""

    @abc.abstractmethod
    def _set_state(self, state: Mapping[str, Any]) -> None:
        """Load the learnt state produced by :meth:`_get_state`."""

    def state_dict(self) -> dict[str, Any]:
        return {"detector": self.name, "params": self.params(), "state": self._get_state()}


REGISTRY: dict[str, Callable[..., Detector]] = {}


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: make a detector available by its ``name``."""
    REGISTRY[cls.name] = cls
    return cls


def make(name: str, **params: Any) -> Detector:
    """Build a registered detector by name.

    >>> make("no-such-detector")
    Traceback (most recent call last):
    ...
    KeyError: "unknown detector 'no-such-detector'; known: ..."
    """
    try:
        factory = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY)) or "none"
        raise KeyError(f"unknown detector {name!r}; known: {known}") from None
    return factory(**params)


def restore(state: Mapping[str, Any]) -> Detector:
    """Rebuild a detector from :meth:`Detector.state_dict`."""
    det = make(state["detector"], **state["params"])
    det._set_state(state["state"])
    return det
