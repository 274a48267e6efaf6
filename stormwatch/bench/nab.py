"""The Numenta Anomaly Benchmark (NAB) scoring rules, as a pure function of scores.

No I/O here: the caller reads the CSVs and labels and hands over, per file, the
anomaly scores and the labelled windows as row indices (:func:`window_rows` maps
label timestamps to rows). The rules (see ``DESIGN.md``, "NAB scoring, in words"):

* the first 15% of a file's rows, at most 750, are probation: not scored at all
  (a detection there is neither a true nor a false positive, and a window whose
  rows all lie in probation is not counted);
* a row is a detection when its score is ≥ the threshold ``T`` and > 0 (a row
  scoring 0 is never a detection: otherwise ``T = 0`` would let an all-zero
  detector "detect" every row; for any real detector that threshold is never
  the best one, so this changes nothing but the degenerate case);
* inside a window of width ``W`` that ends at row ``R``, a detection at row ``i`` is
  worth ``tp_w × σ(−(R−i+1)/W) / σ(−1)``; only the best (earliest) detection of a
  window counts, and a window without any costs ``−fn_w``;
* a detection outside every window costs ``fp_w × σ(|i−R_prev|/(W_prev−1))`` where
  ``R_prev``/``W_prev`` describe the nearest window before it (σ is negative there),
  or ``−fp_w`` when no window precedes it;
* ``σ(x) = 2/(1+e^{5x}) − 1``, and ``σ(x) = −1`` for ``x ≥ 3``.

One threshold is chosen for the whole corpus (per profile) by an exact sweep over
every distinct score: it maximises the summed raw score ``S``. The normalised
score is ``100 × (S − S_null) / (S_perfect − S_null)`` with, over the corpus (or
over the subset being reported), ``S_perfect = tp_w × #windows`` and
``S_null = −fn_w × #windows``; ``#windows`` counts the scored windows (those with
at least one row after probation).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "PROFILES",
    "FileScore",
    "Profile",
    "ScoredFile",
    "Sweep",
    "detection_delays",
    "normalised",
    "probation_length",
    "scaled_sigmoid",
    "sweep",
    "window_rows",
]


@dataclass(frozen=True, slots=True)
class Profile:
    """NAB cost weights: reward per true positive, cost per missed window and per FP."""

    name: str
    tp: float
    fn: float
    fp: float


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", 1.0, 1.0, 0.11),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", 1.0, 1.0, 0.22),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", 1.0, 2.0, 0.11),
}


def scaled_sigmoid(x: float) -> float:
    """NAB's σ: +0.987 at the window's left edge (x = −1), 0 at its right edge, −1 far after.

    >>> round(scaled_sigmoid(-1.0), 5), scaled_sigmoid(0.0), scaled_sigmoid(3.0)
    (0.98661, 0.0, -1.0)
    >>> round(scaled_sigmoid(-0.5), 5)
    0.84828
    """
    if x >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


_MAX_TP = scaled_sigmoid(-1.0)


def probation_length(n_rows: int, percent: float = 0.15) -> int:
    """Rows at the start of a file that are not scored: 15% of them, at most 750.

    >>> probation_length(1000), probation_length(4032), probation_length(22695)
    (150, 604, 750)
    """
    return int(min(math.floor(percent * n_rows), percent * 5000))


def window_rows(times: Sequence[float], windows: Iterable[Sequence[float]]) -> list[tuple[int, int]]:
    """Map windows given as (start, end) times onto (first row, last row) indices.

    ``times`` must be sorted; a window covers the rows whose time lies in
    [start, end]. Windows that cover no row are dropped.

    >>> window_rows([0, 10, 20, 30, 40], [(10, 30), (31, 39), (35, 100)])
    [(1, 3), (4, 4)]
    """
    out = []
    for start, end in windows:
        lo = bisect.bisect_left(times, start)
        hi = bisect.bisect_right(times, end) - 1
        if lo <= hi:
            out.append((lo, hi))
    return out


@dataclass(slots=True)
class ScoredFile:
    """One file ready for scoring: its anomaly scores and its windows as row indices."""

    name: str
    scores: Sequence[float]
    windows: Sequence[tuple[int, int]]
    probation: int = field(default=-1)
    _cache: dict[str, tuple[list[float], list[int], int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.probation < 0:
            self.probation = probation_length(len(self.scores))
        last = -1
        for lo, hi in self.windows:
            if not (last < lo <= hi < len(self.scores)):
                raise ValueError(f"{self.name}: windows must be sorted, disjoint and inside the file")
            last = hi

    def row_weights(self, profile: Profile) -> tuple[list[float], list[int], int]:
        """Per row: the weighted value of a detection there, and its window id.

        Window ids count from 0 within the file; −1 marks a row outside every window
        and −2 a probation row. Also returns the number of scored windows.

        >>> f = ScoredFile("f", [0.0] * 10, [(4, 5)], probation=2)
        >>> w, ids, n = f.row_weights(PROFILES["standard"])
        >>> ids, n
        ([-2, -2, -1, -1, 0, 0, -1, -1, -1, -1], 1)
        >>> [round(v, 4) for v in w[2:]]
        [-0.11, -0.11, 1.0, 0.8598, -0.1085, -0.11, -0.11, -0.11]
        """
        hit = self._cache.get(profile.name)
        if hit is not None:
            return hit
        n = len(self.scores)
        weights = [0.0] * n
        ids = [-1] * n
        prev_right = -1
        prev_width = 0.0
        scored_windows: set[int] = set()
        win_iter = iter(enumerate(self.windows))
        nxt = next(win_iter, None)
        cur: tuple[int, int, int] | None = None  # (id, left, right)
        for i in range(n):
            if cur is None and nxt is not None and nxt[1][0] == i:
                cur = (nxt[0], nxt[1][0], nxt[1][1])
                nxt = next(win_iter, None)
            if cur is not None:
                width = float(cur[2] - cur[1] + 1)
                weights[i] = scaled_sigmoid(-(cur[2] - i + 1) / width) * profile.tp / _MAX_TP
                ids[i] = cur[0]
            else:
                if prev_right < 0:
                    pos = 3.0
                elif prev_width <= 1.0:
                    pos = 3.0 if i - prev_right >= 1 else 0.0
                else:
                    pos = abs(prev_right - i) / (prev_width - 1.0)
                weights[i] = scaled_sigmoid(pos) * profile.fp
            if i < self.probation:
                ids[i] = -2
            elif ids[i] >= 0:
                scored_windows.add(ids[i])
            if cur is not None and i == cur[2]:
                prev_right, prev_width = i, float(cur[2] - cur[1] + 1)
                cur = None
        out = (weights, ids, len(scored_windows))
        self._cache[profile.name] = out
        return out

    def score_at(self, threshold: float, profile: Profile) -> FileScore:
        """The raw NAB score of this file at one threshold, with its counts."""
        weights, ids, n_windows = self.row_weights(profile)
        best: dict[int, float] = {}
        fp_sum = 0.0
        fp = 0
        for s, w, wid in zip(self.scores, weights, ids, strict=True):
            if wid == -2 or s < threshold or s <= 0.0:
                continue
            if wid == -1:
                fp_sum += w
                fp += 1
            elif w > best.get(wid, -math.inf):
                best[wid] = w
        tp_sum = sum(best.values())
        scored = {wid for wid in ids if wid >= 0}
        fn = len(scored - set(best))
        raw = tp_sum + fp_sum - profile.fn * fn
        return FileScore(self.name, raw, n_windows, len(best), fn, fp)


@dataclass(frozen=True, slots=True)
class FileScore:
    """Raw score of one file at a threshold, with windows detected/missed and FP rows."""

    name: str
    raw: float
    windows: int
    detected: int
    missed: int
    fp: int


def normalised(raw: float, n_windows: int, profile: Profile) -> float:
    """100 × (S − S_null)/(S_perfect − S_null); NaN when there is no window.

    >>> p = PROFILES["standard"]
    >>> normalised(-3.0, 3, p), normalised(3.0, 3, p), normalised(0.0, 3, p)
    (0.0, 100.0, 50.0)
    """
    if n_windows == 0:
        return math.nan
    null = -profile.fn * n_windows
    perfect = profile.tp * n_windows
    return 100.0 * (raw - null) / (perfect - null)


@dataclass(frozen=True, slots=True)
class Sweep:
    """The corpus-wide threshold sweep's result for one profile."""

    profile: Profile
    threshold: float
    raw: float
    windows: int

    @property
    def score(self) -> float:
        return normalised(self.raw, self.windows, self.profile)


def sweep(files: Sequence[ScoredFile], profile: Profile) -> Sweep:
    """Choose the one threshold that maximises the summed raw score over ``files``.

    Exact: every distinct positive score is tried as a threshold (plus "above
    everything", reported as ``inf``, which detects nothing). Ties go to the
    highest threshold.

    >>> f = ScoredFile("f", [0, 0, 0, 0, 0.9, 0.2, 0, 0, 0.5, 0], [(4, 5)], probation=2)
    >>> r = sweep([f], PROFILES["standard"])
    >>> r.threshold, round(r.raw, 4), round(r.score, 2)
    (0.9, 1.0, 100.0)
    """
    events: list[tuple[float, float]] = []
    base = 0.0
    n_windows = 0
    for f in files:
        weights, ids, nw = f.row_weights(profile)
        n_windows += nw
        base -= profile.fn * nw
        per_window: dict[int, list[tuple[float, float]]] = {}
        for s, w, wid in zip(f.scores, weights, ids, strict=True):
            if wid == -2 or s <= 0.0:
                continue
            if wid == -1:
                events.append((float(s), w))
            else:
                per_window.setdefault(wid, []).append((float(s), w))
        for rows in per_window.values():
            rows.sort(key=lambda r: -r[0])
            cur = -profile.fn
            for s, w in rows:
                if w > cur:
                    events.append((s, w - cur))
                    cur = w
    events.sort(key=lambda e: -e[0])
    best_t, best_raw = math.inf, base
    total = base
    for k, (s, d) in enumerate(events):
        total += d
        if (k + 1 == len(events) or events[k + 1][0] != s) and total > best_raw + 1e-12:
            best_t, best_raw = s, total
    return Sweep(profile, best_t, best_raw, n_windows)


def detection_delays(
    times: Sequence[float], scores: Sequence[float], windows: Sequence[tuple[int, int]], threshold: float,
    probation: int = -1,
) -> list[float | None]:
    """Per scored window: time from its first row to its first detection, None if missed.

    >>> detection_delays([0, 60, 120, 180, 240, 300], [0, 0, 0, 0.7, 0.9, 0], [(2, 4)], 0.5, probation=0)
    [60]
    """
    if probation < 0:
        probation = probation_length(len(scores))
    out: list[float | None] = []
    for lo, hi in windows:
        if hi < probation:
            continue
        rows = range(max(lo, probation), hi + 1)
        hit = next((i for i in rows if scores[i] >= threshold and scores[i] > 0.0), None)
        out.append(None if hit is None else times[hit] - times[lo])
    return out


def summarise(results: Mapping[str, FileScore], profile: Profile) -> tuple[float, int, float]:
    """Summed raw score, window count and normalised score of some files' results."""
    raw = sum(r.raw for r in results.values())
    nw = sum(r.windows for r in results.values())
    return raw, nw, normalised(raw, nw, profile)
