"""The pipeline in-process, without Kafka: ``stormwatch replay FILE``.

It calls the very objects the Faust agents call (:mod:`stormwatch.pipeline`), in the
same order per brand, so it raises the same alerts with the same ids. Analysts use
it for a quick look and for backtests; the tests use it as the reference.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from stormwatch import nlp, plugins
from stormwatch.config import Settings
from stormwatch.ingest.readers import Record, iter_file
from stormwatch.model import Alert, DeadLetter, SeriesStats
from stormwatch.pipeline import Aggregator, Detection, Enricher, dead_letter
from stormwatch.watch import WatchConfig, load_watch


@dataclass
class RunResult:
    """What a local run produced."""

    alerts: list[Alert] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    posts: int = 0
    scored: int = 0
    duplicates: int = 0
    late: int = 0
    unmatched: int = 0  # posts naming no brand of the watch config
    buckets: Counter[str] = field(default_factory=Counter)
    posts_by_series: Counter[str] = field(default_factory=Counter)
    stats: list[SeriesStats] = field(default_factory=list)


class LocalPipeline:
    """Enricher → Aggregator → Detection over dict state."""

    def __init__(self, settings: Settings, scorer: nlp.Scorer | None = None,
                 keep_stats: bool = False, watch: WatchConfig | None = None) -> None:
        self.settings = settings
        plugins.load(settings.plugins)
        if watch is None and settings.watch:
            watch = load_watch(settings.watch)
        self.watch = watch
        self.enricher = Enricher(scorer or nlp.make(settings.scorer), watch)
        self.aggregator = Aggregator({}, settings.bucket_seconds, settings.lateness_seconds)
        self.detection = Detection({}, settings.detector, settings.detector_params, settings.policy,
                                   watch, settings.bucket_seconds)
        self.keep_stats = keep_stats
        self.result = RunResult()

    def feed(self, records: Iterable[Record], source: str = "") -> Iterator[Alert]:
        """Process records (line number, raw) in batches; yield alerts as they happen."""
        batch: list[Any] = []
        where: list[str] = []
        for lineno, raw in records:
            batch.append(raw)
            where.append(f"{source}:{lineno}")
            if len(batch) >= self.settings.scorer_batch:
                yield from self._batch(batch, where)
                batch, where = [], []
        if batch:
            yield from self._batch(batch, where)

    def _batch(self, raws: list[Any], where: list[str]) -> Iterator[Alert]:
        r = self.result
        r.posts += len(raws)
        for item in self.enricher.enrich_matched(raws, where):
            if isinstance(item, DeadLetter):
                r.dead.append(item)
                continue
            r.scored += bool(item)
            r.unmatched += not item
            for sp in item:
                yield from self._stats(self.aggregator.add(sp))
                self.aggregator.ack(sp.post.brand)

    def _stats(self, stats: list[SeriesStats]) -> Iterator[Alert]:
        r = self.result
        for st in stats:
            r.buckets[st.series] += 1
            r.posts_by_series[st.series] += st.count
            if self.keep_stats:
                r.stats.append(st)
            try:
                alerts = self.detection.observe(st)
            except Exception as exc:  # as in the worker: that bucket goes to the dead letters
                r.dead.append(dead_letter("detect", st.to_dict(), "detector_error", repr(exc)[:500]))
                continue
            self.detection.ack(st.series)
            for alert in alerts:
                r.alerts.append(alert)
                yield alert

    def finish(self, flush: bool = False) -> RunResult:
        """End of input: optionally close the open buckets; return the totals."""
        if flush:
            for _ in self._stats(self.aggregator.flush()):
                pass
        self.result.late, self.result.duplicates = self.aggregator.totals()
        return self.result


def run_file(path: str | Path, settings: Settings | None = None, scorer: nlp.Scorer | None = None,
             flush: bool = False, keep_stats: bool = False) -> RunResult:
    """Run a whole file through the local pipeline and return the result."""
    pipe = LocalPipeline(settings or Settings.from_env(), scorer, keep_stats)
    for _ in pipe.feed(iter_file(path), str(path)):
        pass
    return pipe.finish(flush)


def summary_table(result: RunResult, out: TextIO) -> None:
    """Print per-series totals and the alerts in a fixed-width table."""
    opened = Counter(a.series for a in result.alerts if a.event == "open")
    out.write(f"{'series':<28}{'posts':>8}{'buckets':>9}{'alerts':>8}\n")
    for series in sorted(result.buckets):
        out.write(f"{series:<28}{result.posts_by_series[series]:>8}{result.buckets[series]:>9}"
                  f"{opened[series]:>8}\n")
    reasons = Counter(d.reason for d in result.dead)
    out.write(f"\nrecords {result.posts}  scored {result.scored}  duplicates {result.duplicates}  "
              f"late {result.late}  " + (f"unmatched {result.unmatched}  " if result.unmatched else "")
              + f"dead-lettered {len(result.dead)}"
              + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(reasons.items()))})" if reasons else "")
              + "\n")
    incidents: dict[str, dict[str, str]] = {}
    for a in result.alerts:
        row = incidents.setdefault(a.id, {"series": a.series, "start": a.started_at.isoformat(),
                                          "severity": a.severity, "end": "open"})
        if a.event == "escalate":
            row["severity"] = a.severity
        if a.event == "resolve":
            row["end"] = a.at.isoformat()
    if incidents:
        width = max(42, 2 + max(len(aid) for aid in incidents))  # "...#topic" ids are longer
        out.write(f"\n{'incident':<{width}}{'severity':<10}{'resolved at':<26}\n")
        for aid, row in incidents.items():
            out.write(f"{aid:<{width}}{row['severity']:<10}{row['end']:<26}\n")


def main(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    scorer = nlp.make(args.scorer) if args.scorer else None
    pipe = LocalPipeline(settings, scorer)
    try:
        for alert in pipe.feed(iter_file(args.file), args.file):
            if not args.quiet:
                print(json.dumps(alert.to_dict(), ensure_ascii=False), flush=True)
    except FileNotFoundError as exc:
        print(f"stormwatch replay: {exc}", file=sys.stderr)
        return 2
    result = pipe.finish(args.flush)
    summary_table(result, sys.stderr if not args.quiet else sys.stdout)
    return 0
