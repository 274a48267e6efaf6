"""``stormwatch bench nab`` and ``stormwatch bench detector-speed``.

``bench nab`` runs one detector (one configuration, a fresh state per file) over
every CSV under ``DIR/data``, chooses one threshold per profile for the whole
corpus with :func:`stormwatch.bench.nab.sweep`, and prints per-category and
corpus scores; the last line of output is JSON with the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stormwatch.bench import nab
from stormwatch.bench.nab_data import NabFile, data_root, load_corpus
from stormwatch.detectors import DEFAULT_VOLUME_DETECTOR, make

__all__ = ["main", "run_detector", "score_corpus", "speed"]

TWEETS = "realTweets"


def run_detector(files: Sequence[NabFile], name: str, params: dict[str, Any]) -> dict[str, list[float]]:
    """Scores of a fresh detector per file, strictly in row order (update = score, then learn)."""
    out = {}
    for f in files:
        det = make(name, **params)
        update = det.update
        out[f.key] = [update({"t": t, "value": v}) for t, v in zip(f.times, f.values, strict=True)]
    return out


def _fmt(x: float) -> str:
    return "  n/a" if math.isnan(x) else f"{x:5.1f}"


def score_corpus(files: Sequence[NabFile], scores: dict[str, list[float]]) -> dict[str, Any]:
    """Every figure the bench reports, as a JSON-ready dict."""
    scored = [nab.ScoredFile(f.key, scores[f.key], nab.window_rows(f.times, f.windows)) for f in files]
    by_key = {f.key: f for f in files}
    report: dict[str, Any] = {"profiles": {}}
    for pname, profile in nab.PROFILES.items():
        sw = nab.sweep(scored, profile)
        per_file = {s.name: s.score_at(sw.threshold, profile) for s in scored}
        cats: dict[str, Any] = {}
        for cat in sorted({f.category for f in files}):
            sub = {k: v for k, v in per_file.items() if by_key[k].category == cat}
            raw, nw, norm = nab.summarise(sub, profile)
            cats[cat] = {
                "score": None if math.isnan(norm) else round(norm, 2), "raw": round(raw, 3), "windows": nw,
                "detected": sum(v.detected for v in sub.values()), "fp": sum(v.fp for v in sub.values()),
            }
        tweets = [s for s in scored if by_key[s.name].category == TWEETS]
        own = nab.sweep(tweets, profile) if tweets else None
        report["profiles"][pname] = {
            "threshold": sw.threshold, "score": round(sw.score, 2), "raw": round(sw.raw, 3),
            "windows": sw.windows, "categories": cats,
            "realTweets": cats.get(TWEETS, {}).get("score"),
            "realTweets_own_threshold": None if own is None else
            {"threshold": own.threshold, "score": round(own.score, 2)},
        }
    # detection delay on realTweets at the standard threshold
    thr = report["profiles"]["standard"]["threshold"]
    delays: list[float | None] = []
    after_label: list[float] = []
    for s in scored:
        f = by_key[s.name]
        if f.category != TWEETS:
            continue
        d_file = nab.detection_delays(f.times, s.scores, s.windows, thr, s.probation)
        scored_windows = [w for w in s.windows if w[1] >= s.probation]
        for (lo, hi), d in zip(scored_windows, d_file, strict=True):
            marks = [m for m in f.labels if f.times[lo] <= m <= f.times[hi]]
            if d is not None and marks:
                after_label.append(f.times[lo] + d - marks[0])
        delays += d_file
    hits = [d for d in delays if d is not None]

    def median_minutes(xs: list[float]) -> float | None:
        return round(statistics.median(xs) / 60.0, 1) if xs else None

    report["delay_realTweets"] = {
        "windows": len(delays), "detected": len(hits), "median_minutes": median_minutes(hits),
        "median_minutes_after_label": median_minutes(after_label),
    }
    return report


def _read_results(root: Path, files: Sequence[NabFile]) -> dict[str, list[float]]:
    """Scores from ``root/<category>/<file>.csv`` (``timestamp,value,anomaly_score``), row-checked."""
    out = {}
    for f in files:
        with (root / f.key).open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if [r["timestamp"] for r in rows] != list(f.stamps):
            raise ValueError(f"{root / f.key}: timestamps differ from the corpus file")
        out[f.key] = [float(r["anomaly_score"]) for r in rows]
    return out


def _write_results(out: Path, files: Sequence[NabFile], scores: dict[str, list[float]]) -> None:
    for f in files:
        path = out / f.key
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value", "anomaly_score"])
            for stamp, v, s in zip(f.stamps, f.values, scores[f.key], strict=True):
                w.writerow([stamp, repr(v), repr(s)])


def main(args: argparse.Namespace) -> int:
    root = Path(args.data) if args.data else data_root() / "nab"
    if not (root / "data").is_dir() or not (root / "labels" / "combined_windows.json").is_file():
        print(f"error: {root} has no data/ and labels/combined_windows.json", file=sys.stderr)
        return 2
    params = json.loads(args.params) if args.params else {}
    name = args.detector or DEFAULT_VOLUME_DETECTOR
    try:
        make(name, **params)  # fail early, before reading the corpus
    except (KeyError, TypeError, ValueError) as exc:
        print(f"error: detector {name!r}: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    files = load_corpus(root)
    if args.half:
        files = [f for i, f in enumerate(files) if i % 2 == (0 if args.half == "even" else 1)]
    t1 = time.perf_counter()
    scores = _read_results(Path(args.rescore), files) if args.rescore else run_detector(files, name, params)
    t2 = time.perf_counter()
    report = score_corpus(files, scores)
    t3 = time.perf_counter()
    if args.results:
        _write_results(Path(args.results), files, scores)
    rows = sum(len(f.values) for f in files)
    if args.rescore:
        det_name, det_params = None, {}
        print(f"scores read from {args.rescore} (no detector run)")
    else:
        det = make(name, **params)
        det_name, det_params = det.name, det.params()
        print(f"detector {det_name} {json.dumps(det_params)}")
    print(f"corpus {root} ({len(files)} files, {rows} rows{', half ' + args.half if args.half else ''})")
    profiles = report["profiles"]
    cats = list(profiles["standard"]["categories"])
    print(f"{'category':24s} " + " ".join(f"{p[:18]:>18s}" for p in profiles) + "   windows  det   fp")
    for cat in cats:
        c = profiles["standard"]["categories"][cat]
        vals = " ".join(f"{_fmt(nan_none(profiles[p]['categories'][cat]['score'])):>18s}" for p in profiles)
        print(f"{cat:24s} {vals}   {c['windows']:7d} {c['detected']:4d} {c['fp']:4d}")
    print(f"{'corpus':24s} " + " ".join(f"{_fmt(profiles[p]['score']):>18s}" for p in profiles))
    for p, r in profiles.items():
        own = r["realTweets_own_threshold"]
        tw = _fmt(nan_none(r["realTweets"]))
        print(f"threshold[{p}] = {r['threshold']!r} (one for every file); realTweets {tw}"
              + (f" (with a threshold of its own {own['threshold']!r}: {own['score']:.1f})" if own else ""))
    d = report["delay_realTweets"]
    print(f"realTweets delay (standard threshold): median {d['median_minutes']} min from window start, "
          f"{d['median_minutes_after_label']} min from the labelled anomaly, "
          f"over {d['detected']}/{d['windows']} detected windows")
    print(f"time: load {t1 - t0:.1f}s, detect {t2 - t1:.1f}s ({rows / max(t2 - t1, 1e-9):,.0f} rows/s), "
          f"score {t3 - t2:.1f}s, total {time.perf_counter() - t0:.1f}s")
    report.update({"detector": det_name, "params": det_params, "rescored": args.rescore,
                   "files": len(files), "rows": rows,
                   "seconds": {"load": round(t1 - t0, 2), "detect": round(t2 - t1, 2),
                               "score": round(t3 - t2, 2), "total": round(time.perf_counter() - t0, 2)}})
    for r in profiles.values():
        if math.isinf(r["threshold"]):
            r["threshold"] = None  # nothing detected: JSON has no infinity
    print(json.dumps(report, sort_keys=True))
    return 0


def nan_none(x: float | None) -> float:
    return math.nan if x is None else x


def _speed_stream(n: int) -> list[dict[str, float]]:
    """A deterministic count series: daily cycle, noise and a few bursts (no randomness module)."""
    out = []
    state = 12345
    for i in range(n):
        state = (state * 6364136223846793005 + 1442695040888963407) & ((1 << 64) - 1)
        u = (state >> 11) / float(1 << 53)
        t = 300.0 * i
        base = 40.0 + 25.0 * math.sin(2 * math.pi * (t % 86400) / 86400)
        burst = 150.0 if i % 5000 < 12 else 0.0
        out.append({"t": t, "value": float(int(base + burst + 12.0 * (u - 0.5)))})
    return out


def speed(args: argparse.Namespace) -> int:
    """Updates per second of one detector on one core (one process, one series at a time)."""
    params = json.loads(args.params) if args.params else {}
    name = args.detector or DEFAULT_VOLUME_DETECTOR
    stream = _speed_stream(args.n)
    best = math.inf
    for _ in range(args.repeat):
        det = make(name, **params)
        update = det.update
        t0 = time.perf_counter()
        for x in stream:
            update(x)
        best = min(best, time.perf_counter() - t0)
    rate = args.n / best
    print(f"detector {name}: {args.n} updates in {best:.3f}s (best of {args.repeat}) = "
          f"{rate:,.0f} updates/s on one core")
    print(json.dumps({"detector": name, "updates": args.n, "seconds": round(best, 4),
                      "updates_per_s": round(rate)}))
    return 0
