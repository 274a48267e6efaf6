"""Reading the NAB corpus from disk: series CSVs and labelled windows.

The only I/O of the NAB bench lives here (the scorer in :mod:`stormwatch.bench.nab`
is pure). Data are read where they are, never copied into the project; the default
location comes from the ``STORMWATCH_DATA`` setting (see :func:`data_root`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stormwatch.config import data_dir

__all__ = ["NabFile", "data_root", "load_corpus", "parse_time"]


def data_root() -> Path:
    """The shared data folder (:func:`stormwatch.config.data_dir`)."""
    return data_dir()


def parse_time(text: str) -> float:
    """NAB timestamps (UTC, optional fraction) to epoch seconds.

    >>> parse_time("2015-02-26 21:42:53"), parse_time("1970-01-01 00:01:00.000000")
    (1424986973.0, 60.0)
    """
    text = text.strip()
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True, slots=True)
class NabFile:
    """One series: its key ``category/file.csv``, rows, labelled windows and anomaly times (epoch s)."""

    key: str
    stamps: tuple[str, ...]
    times: tuple[float, ...]
    values: tuple[float, ...]
    windows: tuple[tuple[float, float], ...]
    labels: tuple[float, ...] = ()

    @property
    def category(self) -> str:
        return self.key.split("/", 1)[0]


def load_corpus(root: Path | str, only: str | None = None) -> list[NabFile]:
    """Every ``root/data/<category>/*.csv`` with its windows from ``root/labels``.

    ``only`` keeps the keys that contain it (e.g. ``realTweets``). A file missing
    from the labels is an error: scoring it would silently count no window.
    """
    root = Path(root)
    labels = json.loads((root / "labels" / "combined_windows.json").read_text())
    points_path = root / "labels" / "combined_labels.json"
    points = json.loads(points_path.read_text()) if points_path.is_file() else {}
    files = []
    for path in sorted((root / "data").glob("*/*.csv")):
        key = f"{path.parent.name}/{path.name}"
        if only and only not in key:
            continue
        if key not in labels:
            raise KeyError(f"{key}: not in {root / 'labels' / 'combined_windows.json'}")
        stamps, times, values = [], [], []
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            if header[:2] != ["timestamp", "value"]:
                raise ValueError(f"{path}: expected a 'timestamp,value' header, got {header}")
            for row in reader:
                stamps.append(row[0])
                times.append(parse_time(row[0]))
                values.append(float(row[1]))
        windows = tuple((parse_time(a), parse_time(b)) for a, b in labels[key])
        marks = tuple(parse_time(p) for p in points.get(key, []))
        files.append(NabFile(key, tuple(stamps), tuple(times), tuple(values), windows, marks))
    return files
