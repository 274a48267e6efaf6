"""The backtest's pure part: run a series' buckets through a monitor, score the alerts.

Per series and setting: the alerts opened, the detection delay for each labelled
incident (from the incident's start to the end of the bucket whose alert first
falls inside it; ``None`` = missed), the false alerts (outside every incident) per
week, and a NAB score of the *alerts* (each opened alert is a detection at its
bucket; the NAB rules of :mod:`stormwatch.bench.nab`, probation included).

>>> from datetime import UTC, datetime, timedelta
>>> from stormwatch.model import SeriesStats
>>> t0 = datetime(2015, 2, 22, tzinfo=UTC)
>>> stats = [SeriesStats("A", "*", t0 + timedelta(minutes=i), 60, 12 if 200 <= i < 205 else 1 + i % 2)
...          for i in range(300)]
>>> tr = run_series(stats, "poisson-window", {"window": 5, "warmup": 30, "activation": 5},
...                 PolicyConfig(0.999, critical=0.9999))
>>> [a.id for a in tr.opened]
['A/*@2015-02-22T03:21Z']
>>> inc = Incident("A", (t0 + timedelta(minutes=195)).timestamp(), (t0 + timedelta(minutes=230)).timestamp())
>>> r = evaluate(tr, [inc])
>>> r.delays, r.false_alerts, round(r.nab_score, 1)
([420.0], 0, 99.1)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stormwatch.bench import nab
from stormwatch.detectors.monitor import SeriesMonitor
from stormwatch.detectors.policy import PolicyConfig
from stormwatch.model import Alert, SeriesStats

__all__ = ["Incident", "SeriesResult", "Summary", "Trace", "evaluate", "run_series", "summarise"]

WEEK = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Incident:
    """A labelled incident: ``series`` is a series (``Brand/channel``) or a brand (all its series)."""

    series: str
    start: float
    end: float

    def applies_to(self, series: str) -> bool:
        return series == self.series or series.startswith(self.series + "/")


@dataclass
class Trace:
    """One series' buckets as the monitor saw them, and its alerts."""

    series: str
    bucket_seconds: int
    t: list[float] = field(default_factory=list)
    count: list[float] = field(default_factory=list)
    negative_share: list[float | None] = field(default_factory=list)
    score: list[float | None] = field(default_factory=list)
    expected: list[float | None] = field(default_factory=list)
    lower: list[float | None] = field(default_factory=list)
    upper: list[float | None] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    threshold: float = 0.0

    @property
    def opened(self) -> list[Alert]:
        return [a for a in self.alerts if a.event == "open"]

    @property
    def weeks(self) -> float:
        return (self.t[-1] - self.t[0] + self.bucket_seconds) / WEEK if self.t else 0.0


def run_series(stats: Iterable[SeriesStats], detector: str, params: Mapping[str, Any],
               policy: PolicyConfig, record: bool = True) -> Trace:
    """Feed one series' buckets, in order, to a fresh monitor; record what it saw and raised.

    With ``record=False`` only the bucket times and the alerts are kept (a sweep's other
    settings: less memory, less time)."""
    mon = SeriesMonitor.create(detector, params, policy)
    tr: Trace | None = None
    for st in stats:
        if tr is None:
            tr = Trace(st.series, st.bucket_seconds, threshold=policy.threshold)
        tr.alerts.extend(mon.observe(st))
        mon.outbox.clear()
        tr.t.append(st.bucket_start.timestamp())
        if not record:
            continue
        tr.count.append(float(st.count))
        tr.negative_share.append(st.negative_share)
        r = mon.reading
        tr.score.append(r.score if r else None)
        tr.expected.append(r.expected if r else None)
        tr.lower.append(r.lower if r else None)
        tr.upper.append(r.upper if r else None)
    return tr if tr is not None else Trace("?", 60)


@dataclass
class SeriesResult:
    """The figures of one series at one setting."""

    series: str
    alerts: int
    weeks: float
    incidents: list[Incident]
    delays: list[float | None]  # per incident, seconds; None = missed
    false_alerts: int
    nab_raw: float
    nab_windows: int

    @property
    def missed(self) -> int:
        return sum(d is None for d in self.delays)

    @property
    def false_per_week(self) -> float:
        return self.false_alerts / self.weeks if self.weeks else 0.0

    profile: nab.Profile = field(default=nab.PROFILES["standard"], repr=False)

    @property
    def nab_score(self) -> float:
        return nab.normalised(self.nab_raw, self.nab_windows, self.profile)


def evaluate(trace: Trace, incidents: Sequence[Incident],
             profile: nab.Profile = nab.PROFILES["standard"],
             cache: dict[Any, nab.ScoredFile] | None = None) -> SeriesResult:
    """Score one series' alerts against the incidents that apply to it.

    ``cache`` (a dict kept across settings of one backtest) keeps each series' NAB row
    weights, which depend on the rows and windows only."""
    mine = sorted((i for i in incidents if i.applies_to(trace.series)), key=lambda i: i.start)
    opened = trace.opened
    raised = [a.at.timestamp() for a in opened]
    delays: list[float | None] = []
    for inc in mine:
        hit = next((t for t in raised if inc.start <= t <= inc.end), None)
        delays.append(None if hit is None else hit + trace.bucket_seconds - inc.start)
    false = sum(not any(i.start <= t <= i.end for i in mine) for t in raised)
    at = set(raised)
    scores = [1.0 if t in at else 0.0 for t in trace.t]
    key = (trace.series, len(trace.t), tuple(mine))
    sf = cache.get(key) if cache is not None else None
    if sf is None:
        sf = nab.ScoredFile(trace.series, scores, nab.window_rows(trace.t, [(i.start, i.end) for i in mine]))
        if cache is not None:
            cache[key] = sf
    sf.scores = scores
    fs = sf.score_at(0.5, profile)
    return SeriesResult(trace.series, len(opened), trace.weeks, mine, delays, false, fs.raw, fs.windows,
                        profile)


@dataclass(frozen=True)
class Summary:
    """One setting over every series: the sweep table's row."""

    setting: str
    alerts_per_week: float
    incidents: int
    detected: int
    median_delay_min: float | None
    false_per_week: float
    nab: float

    @property
    def recall(self) -> float:
        return self.detected / self.incidents if self.incidents else math.nan


def summarise(setting: str, results: Sequence[SeriesResult], profile: nab.Profile) -> Summary:
    weeks = sum(r.weeks for r in results)
    delays = [d for r in results for d in r.delays if d is not None]
    n_inc = sum(len(r.delays) for r in results)
    raw = sum(r.nab_raw for r in results)
    nw = sum(r.nab_windows for r in results)
    return Summary(setting, sum(r.alerts for r in results) / weeks if weeks else 0.0, n_inc, len(delays),
                   statistics.median(delays) / 60.0 if delays else None,
                   sum(r.false_alerts for r in results) / weeks if weeks else 0.0,
                   nab.normalised(raw, nw, profile))


def best(rows: Sequence[Summary], key: Callable[[Summary], float] | None = None) -> int:
    """Index of the best row: the highest NAB score (of the chosen profile); ties: fewer alerts."""
    def k(i: int) -> tuple[float, float]:
        s = rows[i]
        v = key(s) if key else s.nab
        return (-math.inf if math.isnan(v) else v, -s.alerts_per_week)
    return max(range(len(rows)), key=k)
