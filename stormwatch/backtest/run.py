"""``stormwatch backtest``: replay a history, score the alerts, sweep settings, write a report.

Posts go through :class:`stormwatch.local.LocalPipeline` once (enrich with cached
sentiment, brand matching if a watch config is given, event-time buckets); counts are
read as buckets. Each setting then runs a fresh
:class:`~stormwatch.detectors.monitor.SeriesMonitor` per series over the same buckets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

from stormwatch import nlp
from stormwatch.backtest import core
from stormwatch.backtest.cache import CachedScorer
from stormwatch.backtest.data import is_counts, load_counts, load_labels
from stormwatch.bench import nab
from stormwatch.config import Settings
from stormwatch.detectors import DEFAULT_VOLUME_DETECTOR
from stormwatch.detectors.policy import PolicyConfig
from stormwatch.ingest.readers import iter_file
from stormwatch.local import LocalPipeline
from stormwatch.model import SeriesStats
from stormwatch.watch import PRESETS, Detect, WatchConfig, WatchConfigError, load_watch

__all__ = ["DEFAULT_SWEEP", "Setting", "main", "parse_sweep", "run_settings"]

#: Ten settings: the three presets, and thresholds over the balanced preset.
DEFAULT_SWEEP = "fewer,balanced,more,0.6,0.7,0.8,0.9,0.95,0.98,0.995"

T = TypeVar("T")


@dataclass(frozen=True)
class Setting:
    """One point of a sweep: a preset for every series, and/or a threshold over the base settings."""

    preset: str | None = None
    threshold: float | None = None

    @property
    def label(self) -> str:
        parts = ([self.preset] if self.preset else []) + (
            [f"threshold {self.threshold:g}"] if self.threshold is not None else [])
        return " ".join(parts) or "configured"

    def resolve(self, base: Detect) -> Detect:
        d = PRESETS[self.preset] if self.preset else base
        return dataclasses.replace(d, threshold=self.threshold) if self.threshold is not None else d


def parse_sweep(spec: str) -> list[Setting]:
    """``fewer,more,0.9`` → presets and thresholds (over the configured settings).

    >>> [s.label for s in parse_sweep("fewer, 0.9, more:0.8")]
    ['fewer', 'threshold 0.9', 'more threshold 0.8']
    >>> parse_sweep("loud")
    Traceback (most recent call last):
    ...
    ValueError: --sweep: 'loud' is neither a preset (fewer, balanced, more) nor a threshold in [0, 1]
    """
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        preset, _, thr = item.partition(":") if ":" in item else (
            (item, "", "") if item in PRESETS else ("", "", item))
        try:
            t = float(thr) if thr else None
        except ValueError:
            t = -1.0
        if (preset and preset not in PRESETS) or (t is not None and not 0.0 <= t <= 1.0):
            raise ValueError(f"--sweep: {item!r} is neither a preset ({', '.join(PRESETS)}) "
                             f"nor a threshold in [0, 1]")
        out.append(Setting(preset or None, t))
    return out


class Progress:
    """A one-line progress bar on stderr (only on a terminal unless forced)."""

    def __init__(self, total: int, label: str, out: TextIO = sys.stderr, enabled: bool | None = None) -> None:
        self.total, self.label, self.out = max(total, 1), label, out
        self.enabled = out.isatty() if enabled is None else enabled
        self.n = 0
        self.t0 = time.perf_counter()
        self.last = 0.0

    def step(self, k: int = 1) -> None:
        self.n += k
        now = time.perf_counter()
        if self.enabled and (now - self.last > 0.2 or self.n >= self.total):
            self.last = now
            f = min(self.n / self.total, 1.0)
            bar = "#" * int(30 * f) + "." * (30 - int(30 * f))
            self.out.write(f"\r{self.label} [{bar}] {100 * f:5.1f}% {now - self.t0:6.1f}s")
            self.out.flush()

    def wrap(self, items: Iterable[T]) -> Iterator[T]:
        for x in items:
            yield x
            self.step()

    def done(self) -> None:
        if self.enabled:
            self.out.write("\n")
            self.out.flush()


@dataclass
class Run:
    """One setting's traces and figures."""

    setting: Setting
    traces: dict[str, core.Trace]
    results: list[core.SeriesResult]
    summary: core.Summary


def run_settings(series: dict[str, list[SeriesStats]], incidents: Sequence[core.Incident],
                 settings: Sequence[Setting], base: Callable[[str, str], Detect], detector: str,
                 params: dict[str, Any], profile: nab.Profile, progress: Progress | None = None) -> list[Run]:
    """Every setting over every series (fresh monitors each time); the first one's traces are
    recorded in full (for the report), the others' only as far as the figures need."""
    runs = []
    cache: dict[Any, nab.ScoredFile] = {}
    for n, s in enumerate(settings):
        traces, results = {}, []
        for name, stats in series.items():
            d = s.resolve(base(stats[0].brand, stats[0].channel))
            b = stats[0].bucket_seconds
            tr = core.run_series(stats, detector, d.detector_params(b, params), d.policy(b, PolicyConfig()),
                                 record=n == 0)
            traces[name] = tr
            results.append(core.evaluate(tr, incidents, profile, cache))
            if progress:
                progress.step()
        runs.append(Run(s, traces, results, core.summarise(s.label, results, profile)))
    return runs


def _posts(path: str, settings: Settings, watch: WatchConfig | None, scorer_name: str | None,
           cache: bool, show: bool | None) -> tuple[dict[str, list[SeriesStats]], str]:
    inner = nlp.make(scorer_name or settings.scorer)
    scorer = CachedScorer(inner) if cache else inner
    pipe = LocalPipeline(settings, scorer, keep_stats=True, watch=watch)
    n = sum(1 for _ in iter_file(path))
    bar = Progress(n, "posts  ", enabled=show)
    for _ in pipe.feed(bar.wrap(iter_file(path)), path):
        pass
    bar.done()
    result = pipe.finish(flush=True)
    by: dict[str, list[SeriesStats]] = defaultdict(list)
    for st in result.stats:
        by[st.series].append(st)
    note = (f"posts {result.posts}, scored {result.scored}, unmatched {result.unmatched}, "
            f"dead-lettered {len(result.dead)}")
    if isinstance(scorer, CachedScorer):
        note += f"; sentiment cache ({scorer.path}): {scorer.hits} hits, {scorer.misses} scored"
    return dict(sorted(by.items())), note


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def print_series(run: Run, out: TextIO) -> None:
    out.write(f"\nsetting: {run.setting.label}\n")
    out.write(f"{'series':<40}{'alerts':>7}{'/week':>7}{'false/wk':>9}{'incid.':>7}{'missed':>7}"
              f"  {'delays (min)':<22}{'NAB':>6}\n")
    for r in run.results:
        delays = ",".join("miss" if d is None else f"{d / 60:.0f}" for d in r.delays) or "-"
        out.write(f"{r.series[:39]:<40}{r.alerts:>7}{r.alerts / r.weeks if r.weeks else 0:>7.1f}"
                  f"{r.false_per_week:>9.1f}{len(r.delays):>7}{r.missed:>7}  {delays[:22]:<22}"
                  f"{_fmt(r.nab_score):>6}\n")
    s = run.summary
    out.write(f"{'all series':<40}{'':>7}{s.alerts_per_week:>7.1f}{s.false_per_week:>9.1f}{s.incidents:>7}"
              f"{s.incidents - s.detected:>7}  {'median ' + _fmt(s.median_delay_min, '.0f'):<22}"
              f"{_fmt(s.nab):>6}\n")


def print_sweep(runs: Sequence[Run], best: int, profile: str, out: TextIO) -> None:
    out.write(f"\nsweep ({len(runs)} settings; NAB score of the alerts, profile {profile})\n")
    out.write(f"{'setting':<26}{'alerts/wk':>10}{'false/wk':>9}{'recall':>8}{'median delay':>14}{'NAB':>7}\n")
    for i, r in enumerate(runs):
        s = r.summary
        out.write(f"{s.setting:<26}{s.alerts_per_week:>10.1f}{s.false_per_week:>9.1f}"
                  f"{_fmt(s.recall, '.0%'):>8}"
                  f"{_fmt(s.median_delay_min, '.0f') + ' min':>14}{_fmt(s.nab):>7}"
                  + (f"   <- best for {profile}" if i == best else "") + "\n")


def main(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    env = Settings.from_env()
    try:
        watch_path = args.watch or env.watch
        watch = load_watch(watch_path) if watch_path else None
        sweep = [] if args.sweep is None else parse_sweep(args.sweep or DEFAULT_SWEEP)
        incidents = load_labels(args.labels) if args.labels else []
        params = json.loads(args.params) if args.params else None
    except (WatchConfigError, ValueError, OSError) as exc:
        print(f"stormwatch backtest: {exc}", file=sys.stderr)
        return 2
    if args.preset and args.preset not in PRESETS:
        print(f"stormwatch backtest: unknown preset {args.preset!r}; known: {', '.join(PRESETS)}",
              file=sys.stderr)
        return 2
    profile = nab.PROFILES[args.profile]
    show = True if args.progress else None
    try:
        if args.counts or is_counts(args.input):
            series, labels = load_counts(args.input)
            note = f"counts: {len(series)} series, {sum(len(v) for v in series.values())} buckets"
            incidents = incidents or labels
            detector = args.detector or DEFAULT_VOLUME_DETECTOR
            base_params: dict[str, Any] = params if params is not None else {}
            sentiment = False
        else:
            series, note = _posts(args.input, env, watch, args.scorer, not args.no_cache, show)
            detector = args.detector or env.detector
            base_params = params if params is not None else dict(env.detector_params)
            sentiment = True
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"stormwatch backtest: {exc}", file=sys.stderr)
        return 2
    if args.only:
        series = {k: v for k, v in series.items() if args.only in k}
    if not series:
        print("stormwatch backtest: no series to run", file=sys.stderr)
        return 2
    t1 = time.perf_counter()

    def base(brand: str, channel: str) -> Detect:
        d = watch.detect(brand, channel) if watch is not None else PRESETS[args.preset or "balanced"]
        return dataclasses.replace(d, threshold=args.threshold) if args.threshold is not None else d

    settings = [Setting(), *(s for s in sweep if s != Setting())]
    bar = Progress(len(series) * len(settings), "detect ", enabled=show)
    runs = run_settings(series, incidents, settings, base, detector, base_params, profile, bar)
    bar.done()
    t2 = time.perf_counter()
    out = sys.stdout
    out.write(f"input {args.input}: {note}\n")
    out.write(f"detector {detector} {json.dumps(base_params)}; watch config "
              f"{watch.source + ' version ' + watch.version if watch else 'none'}; "
              f"labelled incidents {sum(len(r.delays) for r in runs[0].results)}\n")
    print_series(runs[0], out)
    best = core.best([r.summary for r in runs]) if sweep else 0
    if sweep:
        print_sweep(runs, best, profile.name, out)
    if args.report:
        from stormwatch.backtest import report

        index = report.write(Path(args.report), runs, best if sweep else None, sentiment,
                             command=" ".join(sys.argv), profile=profile.name)
        out.write(f"\nreport: {index}\n")
    t3 = time.perf_counter()
    out.write(f"time: input {t1 - t0:.1f}s, detect {t2 - t1:.1f}s ({len(settings)} setting(s)), "
              f"total {t3 - t0:.1f}s\n")
    return 0
