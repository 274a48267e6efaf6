"""``stormwatch bench profile FILE --brand B``: one brand's posts hour by hour.

For the analyst who asks "is there anything to see here?" before blaming a detector:
per hour the posts, the busiest minute and the busiest five minutes, and, when the file
carries labels (``label_sentiment``), the labelled negative share. The summary tests the
busiest hour against the mean of the other hours shown (Poisson upper tail), so a peak
that is only the level's noise reads as such.

>>> from datetime import datetime, UTC
>>> t = lambda h, m: datetime(2015, 2, 23, h, m, tzinfo=UTC)
>>> rows = hourly([(t(0, 1), None), (t(0, 1), None), (t(0, 7), "negative"), (t(2, 0), "positive")])
>>> [(r.hour.hour, r.posts, r.max_1m, r.max_5m, r.labelled, r.negative) for r in rows]
[(0, 3, 2, 2, 1, 1), (1, 0, 0, 0, 0, 0), (2, 1, 1, 1, 1, 0)]
>>> round(poisson_sf(10, 4.0), 5)  # P(X >= 10 | mean 4)
0.00813
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class HourRow:
    hour: datetime
    posts: int
    max_1m: int  # posts in the busiest minute
    max_5m: int  # posts in the busiest 5-minute block (:00-:04, :05-:09, ...)
    labelled: int  # posts with a sentiment label
    negative: int  # of those, labelled negative

    @property
    def negative_share(self) -> float | None:
        return self.negative / self.labelled if self.labelled else None


def hourly(posts: Iterable[tuple[datetime, str | None]]) -> list[HourRow]:
    """One row per hour from the first post's hour to the last's, empty hours included."""
    minutes: Counter[datetime] = Counter()
    labelled: Counter[datetime] = Counter()
    negative: Counter[datetime] = Counter()
    for when, label in posts:
        minute = when.replace(second=0, microsecond=0)
        minutes[minute] += 1
        hour = minute.replace(minute=0)
        if label is not None:
            labelled[hour] += 1
            negative[hour] += label == "negative"
    if not minutes:
        return []
    rows, hour = [], min(minutes).replace(minute=0)
    while hour <= max(minutes):
        per_minute = [minutes[hour + timedelta(minutes=m)] for m in range(60)]
        per_5m = [sum(per_minute[i:i + 5]) for i in range(0, 60, 5)]
        rows.append(HourRow(hour, sum(per_minute), max(per_minute), max(per_5m),
                            labelled[hour], negative[hour]))
        hour += HOUR
    return rows


def poisson_sf(k: int, mean: float) -> float:
    """P(X >= k) for X ~ Poisson(mean), summed in log space (no overflow for large k)."""
    if k <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    below = sum(math.exp(i * math.log(mean) - mean - math.lgamma(i + 1)) for i in range(k))
    return max(0.0, 1.0 - below)


def peak_test(rows: list[HourRow]) -> dict[str, object]:
    """The busiest hour against the mean of the other hours: the tail probability, and
    that probability for the busiest of ``len(rows)`` hours (one chance in each hour)."""
    if len(rows) < 2:
        raise ValueError("need at least two hours to compare a peak with its level")
    peak = max(rows, key=lambda r: r.posts)
    others = [r.posts for r in rows if r is not peak]
    mean = sum(others) / len(others)
    p = poisson_sf(peak.posts, mean)
    return {"peak_hour": peak.hour.isoformat().replace("+00:00", "Z"), "peak_posts": peak.posts,
            "other_hours_mean": round(mean, 1), "p_peak": p,
            "p_any_hour": 1.0 - (1.0 - p) ** len(rows)}


def read_brand(path: str, brand: str, start: datetime | None,
               end: datetime | None) -> list[tuple[datetime, str | None]]:
    """(event time, sentiment label or None) of one brand's valid posts in [start, end)."""
    from stormwatch.ingest.readers import iter_file
    from stormwatch.model import InvalidRecord, parse_post

    out = []
    for _, raw in iter_file(path):
        try:
            post = parse_post(raw)
        except InvalidRecord:
            continue  # the profile is of valid posts; `stormwatch replay` reports the rest
        if post.brand != brand or (start and post.created_at < start) or (end and post.created_at >= end):
            continue
        record = raw if isinstance(raw, dict) else json.loads(raw)
        label = record.get("label_sentiment")
        out.append((post.created_at, label if isinstance(label, str) else None))
    return out


def main(args: argparse.Namespace) -> int:
    from stormwatch.model import _utc

    start = _utc(args.start, "--start") if args.start else None
    end = _utc(args.end, "--end") if args.end else None
    rows = hourly(read_brand(args.file, args.brand, start, end))
    if not rows:
        print(f"no valid posts of brand {args.brand!r} in {args.file} in that window")
        return 1
    print(f"{'hour (UTC)':<17} {'posts':>5} {'max 1 min':>9} {'max 5 min':>9} {'negative (labelled)':>20}")
    for r in rows:
        share = f"{r.negative_share:.0%} of {r.labelled}" if r.negative_share is not None else "-"
        print(f"{r.hour:%Y-%m-%d %H}h    {r.posts:>5} {r.max_1m:>9} {r.max_5m:>9} {share:>20}")
    summary = {"brand": args.brand, "hours": len(rows), "posts": sum(r.posts for r in rows)}
    if len(rows) >= 2:
        summary.update(peak_test(rows))
        print(f"busiest hour {summary['peak_hour']}: {summary['peak_posts']} posts against a mean of "
              f"{summary['other_hours_mean']} in the other hours; P(X >= peak) = {summary['p_peak']:.3g}, "
              f"for the busiest of {len(rows)} hours {summary['p_any_hour']:.3g}")
    print(json.dumps(summary))
    return 0
