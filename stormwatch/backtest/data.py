"""What a backtest reads: incident labels, ready-made counts (CSV or a NAB folder).

Labels are JSON, either a list of ``{"series": ..., "start": ..., "end": ...}`` (times as
ISO 8601 or epoch seconds; ``series`` a brand, for all its series, or one series
``Brand/channel``) or NAB's ``{"<file key>": [[start, end], ...]}``.

>>> [(i.series, i.end - i.start) for i in parse_labels(
...     [{"series": "American", "start": "2015-02-23T00:00Z", "end": "2015-02-23T03:00:00Z"}])]
[('American', 10800.0)]
>>> parse_labels({"realTweets/x.csv": [["2015-02-26 21:42:53.000000", "2015-02-27 21:42:53"]]})[0].series
'realTweets/x.csv'

Counts CSV: a header with ``timestamp`` (or ``bucket_start``), ``value`` (or ``count``) and
optionally ``series`` (default: the file name) and ``negative`` (negative posts).
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import statistics
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stormwatch.backtest.core import Incident
from stormwatch.bench.nab_data import load_corpus
from stormwatch.model import SeriesStats

__all__ = ["is_counts", "load_counts", "load_labels", "parse_labels", "parse_time"]


def parse_time(value: Any) -> float:
    """ISO 8601 (``Z`` or offset; naive = UTC; NAB's ``YYYY-MM-DD HH:MM:SS``) or epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    if re.fullmatch(r"\d+(\.\d*)?", text):
        return float(text)  # epoch seconds in a CSV cell
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {value!r}") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def parse_labels(data: Any, source: str = "labels") -> list[Incident]:
    out = []
    if isinstance(data, Mapping):
        for key, windows in data.items():
            for w in windows:
                out.append(Incident(str(key), parse_time(w[0]), parse_time(w[1])))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            if not isinstance(item, Mapping) or not {"series", "start", "end"} <= set(item):
                raise ValueError(f"{source}: item {i} needs series, start and end")
            out.append(Incident(str(item["series"]), parse_time(item["start"]), parse_time(item["end"])))
    else:
        raise ValueError(f"{source}: expected a JSON list or object")
    for inc in out:
        if inc.end < inc.start:
            raise ValueError(f"{source}: incident of {inc.series} ends before it starts")
    return out


def load_labels(path: str | Path) -> list[Incident]:
    p = Path(path)
    try:
        return parse_labels(json.loads(p.read_text(encoding="utf-8")), str(p))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}:{exc.lineno}: not JSON: {exc.msg}") from None


def is_counts(path: str | Path) -> bool:
    """A NAB folder, or a CSV without a ``text`` column (posts have one)."""
    p = Path(path)
    if p.is_dir():
        return True
    if p.suffix.lower() != ".csv":
        return False
    with p.open(newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
    return "text" not in header


def _stats(series: str, times: list[float], values: list[float], negatives: list[int] | None
           ) -> list[SeriesStats]:
    step = int(statistics.median(b - a for a, b in itertools.pairwise(times))) if len(times) > 1 else 60
    brand, _, channel = series.rpartition("/") if series.endswith("/*") else (series, "", "*")
    out = []
    for i, (t, v) in enumerate(zip(times, values, strict=True)):
        value: float = int(v) if float(v).is_integer() else v
        neg = negatives[i] if negatives else 0
        out.append(SeriesStats(brand, channel or "*", datetime.fromtimestamp(t, UTC), max(step, 1),
                               value, negative=neg))  # type: ignore[arg-type]
    return out


def load_counts(path: str | Path) -> tuple[dict[str, list[SeriesStats]], list[Incident]]:
    """Per series its buckets (in time order), and the labels that came with them (a NAB folder)."""
    p = Path(path)
    if p.is_dir():
        files = load_corpus(p)
        series = {f"{f.key}/*": _stats(f.key, list(f.times), list(f.values), None) for f in files}
        labels = [Incident(f.key, a, b) for f in files for a, b in f.windows]
        return series, labels
    rows: dict[str, tuple[list[float], list[float], list[int]]] = {}
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        tcol = next((c for c in ("timestamp", "bucket_start") if c in fields), None)
        vcol = next((c for c in ("value", "count") if c in fields), None)
        if tcol is None or vcol is None:
            raise ValueError(f"{p}: a counts CSV needs a timestamp (or bucket_start) and a value (or count) "
                             f"column, got {fields}")
        for n, row in enumerate(reader, start=2):
            name = row.get("series") or p.stem
            try:
                t, v = parse_time(row[tcol]), float(row[vcol])
                neg = int(row["negative"]) if row.get("negative") else 0
            except ValueError as exc:
                raise ValueError(f"{p}:{n}: {exc}") from None
            ts, vs, ns = rows.setdefault(name, ([], [], []))
            ts.append(t)
            vs.append(v)
            ns.append(neg)
    out = {}
    for name, (ts, vs, ns) in rows.items():
        order = sorted(range(len(ts)), key=ts.__getitem__)
        st = _stats(name, [ts[i] for i in order], [vs[i] for i in order], [ns[i] for i in order])
        out[st[0].series] = st
    return out, []
