"""The alert policy: when a run of detector scores becomes an incident, and when it ends.

Pure state machine over one series' buckets. It opens an incident when the score
stays at or above ``threshold`` for ``persist`` buckets in a row with at least
``min_volume`` posts in the detector's window, never while the detector warms up or
during the ``cooldown`` after the last incident; escalates warning → critical when
the score reaches ``critical``, when the incident has lasted ``critical_after`` buckets,
or when its reach (retweets, as the monitor counts them) reaches ``critical_reach``
(both 0 = off); resolves after ``clear_buckets`` buckets in a row
below ``clear`` (hysteresis: ``clear`` < ``threshold``). An incident's id is the
series plus the first bucket of the run that opened it, so replays agree on it.
``activation_posts`` is read by the monitor: a series' detector only starts (and
warms up) once the series has seen that many posts, so the silence before a brand's
first posts is no baseline and its first posts are no crisis.

>>> p = AlertPolicy(PolicyConfig(threshold=0.9, clear=0.5, critical=0.99, min_volume=0,
...                              persist=2, clear_buckets=2, cooldown=0))
>>> steps = [(0.95, 10), (0.95, 10), (0.999, 10), (0.2, 1), (0.2, 1)]
>>> [p.step(i, s, v, warming_up=False) for i, (s, v) in enumerate(steps)]
[None, ('open', 'warning', 0), ('escalate', 'critical', 0), None, ('resolve', 'critical', 0)]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Alert policy settings; buckets are the series' buckets (one minute by default)."""

    threshold: float = 0.85
    clear: float = 0.5
    critical: float = 0.995
    min_volume: float = 0.0
    persist: int = 1
    clear_buckets: int = 30
    cooldown: int = 60
    activation_posts: float = 20.0
    critical_after: int = 0
    critical_reach: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.clear <= self.threshold <= self.critical <= 1.0:
            raise ValueError("need 0 <= clear <= threshold <= critical <= 1")
        if self.persist < 1 or self.clear_buckets < 1 or self.cooldown < 0 or self.min_volume < 0:
            raise ValueError("persist and clear_buckets must be >= 1; cooldown, min_volume >= 0")
        if self.activation_posts < 0:
            raise ValueError("activation_posts must be >= 0")
        if self.critical_after < 0 or self.critical_reach < 0:
            raise ValueError("critical_after and critical_reach must be >= 0 (0 = off)")


Decision = tuple[str, str, int] | None  # (event, severity, start bucket) or nothing


class AlertPolicy:
    """State machine of one series. ``step`` returns an event or None."""

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        self.open_start: int | None = None  # start bucket of the open incident
        self.severity = "warning"
        self.run_start: int | None = None  # first bucket of the current above-threshold run
        self.run_len = 0
        self.below = 0
        self.cooldown_left = 0
        self.open_len = 0  # buckets since the incident opened

    @property
    def is_open(self) -> bool:
        return self.open_start is not None

    def _critical(self, score: float, reach: float) -> bool:
        c = self.config
        return (score >= c.critical or (c.critical_after > 0 and self.open_len >= c.critical_after)
                or (c.critical_reach > 0 and reach >= c.critical_reach))

    def step(self, bucket: int, score: float, volume: float, warming_up: bool,
             reach: float = 0.0) -> Decision:
        """Advance by one bucket (an integer time, e.g. epoch seconds of its start)."""
        c = self.config
        if self.open_start is not None:
            self.open_len += 1
            if self.severity != "critical" and self._critical(score, reach):
                self.severity = "critical"
                self.below = 0
                return ("escalate", "critical", self.open_start)
            self.below = self.below + 1 if score < c.clear else 0
            if self.below >= c.clear_buckets:
                start, severity = self.open_start, self.severity
                self.open_start, self.severity, self.below = None, "warning", 0
                self.run_start, self.run_len = None, 0
                self.cooldown_left = c.cooldown
                return ("resolve", severity, start)
            return None
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
        if warming_up or score < c.threshold:
            self.run_start, self.run_len = None, 0
            return None
        if self.run_start is None:
            self.run_start = bucket
        self.run_len += 1
        if self.run_len >= c.persist and volume >= c.min_volume and self.cooldown_left == 0:
            self.open_start = self.run_start
            self.open_len = 0
            self.severity = "critical" if self._critical(score, reach) else "warning"
            self.below = 0
            return ("open", self.severity, self.open_start)
        return None

    def state_dict(self) -> dict[str, Any]:
        config = {f: getattr(self.config, f) for f in PolicyConfig.__slots__}  # asdict() is slow per bucket
        return {"config": config, "open_start": self.open_start,
                "severity": self.severity, "run_start": self.run_start, "run_len": self.run_len,
                "below": self.below, "cooldown_left": self.cooldown_left, "open_len": self.open_len}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> AlertPolicy:
        p = cls(PolicyConfig(**state["config"]))
        p.open_start = state["open_start"]
        p.severity = state["severity"]
        p.run_start = state["run_start"]
        p.run_len = int(state["run_len"])
        p.below = int(state["below"])
        p.cooldown_left = int(state["cooldown_left"])
        p.open_len = int(state.get("open_len", 0))
        return p
