"""Labelled posts for training and benchmarks: TSV, CSV or JSONL, plus metrics.

A file reference may carry a deterministic slice of its rows, chosen by a hash of
each row's id (or text): ``posts.jsonl[0:0.5]`` is one half, ``posts.jsonl[0.5:1]``
the other, so training and evaluation never share a post.

>>> parse_ref("a/b.jsonl[0:0.5]")
('a/b.jsonl', 0.0, 0.5)
>>> parse_ref("b.tsv")
('b.tsv', 0.0, 1.0)
>>> normalise_text("RT @user: Flight  Cancelled!! http://url")
'flight cancelled'
>>> round(macro_f1(["negative", "positive"], ["negative", "negative"]), 3)
0.333
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

LABEL_ALIASES = {
    "negative": "negative", "neg": "negative", "-1": "negative", "0": None,
    "neutral": "neutral", "neu": "neutral", "positive": "positive", "pos": "positive",
    "1": "positive",
}
TEXT_FIELDS = ("text", "content", "body", "message")
LABEL_FIELDS = ("label", "label_sentiment", "sentiment", "polarity")
_REF = re.compile(r"^(?P<path>.*?)\[(?P<a>[0-9.]*):(?P<b>[0-9.]*)\]$")


@dataclass(frozen=True)
class Example:
    id: str
    text: str
    label: str | None
    lang: str | None = None


def parse_ref(ref: str) -> tuple[str, float, float]:
    """``path[a:b]`` → (path, a, b); no slice means the whole file."""
    m = _REF.match(ref)
    if not m:
        return ref, 0.0, 1.0
    a = float(m["a"]) if m["a"] else 0.0
    b = float(m["b"]) if m["b"] else 1.0
    if not 0.0 <= a < b <= 1.0:
        raise ValueError(f"bad slice in {ref!r}: need 0 <= a < b <= 1")
    return m["path"], a, b


def bucket(key: str) -> float:
    """A stable number in [0, 1) for ``key``."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def _norm_label(value: object) -> str | None:
    key = str(value).strip().lower()
    if key in LABEL_ALIASES:
        return LABEL_ALIASES[key]
    return None


def _rows(path: Path) -> Iterable[dict[str, object]]:
    suffix = path.suffix.lower()
    with path.open(encoding="utf-8", newline="") as f:
        if suffix in {".jsonl", ".ndjson", ".json"}:
            for line in f:
                if line.strip():
                    yield json.loads(line)
        else:
            delimiter = "\t" if suffix in {".tsv", ".tab"} else ","
            yield from csv.DictReader(f, delimiter=delimiter)


def read_labelled(ref: str, text_field: str | None = None, label_field: str | None = None,
                  require_label: bool = True) -> list[Example]:
    """Read a TSV/CSV/JSONL file (optionally ``path[a:b]``); rows without a usable label are
    skipped when ``require_label``. Columns are found by name (text/label/sentiment...)."""
    path_s, a, b = parse_ref(ref)
    path = Path(path_s)
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    out: list[Example] = []
    for n, row in enumerate(_rows(path)):
        tf = text_field or next((k for k in TEXT_FIELDS if k in row), None)
        lf = label_field or next((k for k in LABEL_FIELDS if k in row), None)
        if tf is None or (require_label and lf is None):
            raise ValueError(f"{path}: need a text column ({'/'.join(TEXT_FIELDS)}) and a label "
                             f"column ({'/'.join(LABEL_FIELDS)}); found {sorted(row)}")
        text = str(row.get(tf) or "")
        ident = str(row.get("id") or f"{path.name}:{n}")
        if (a, b) != (0.0, 1.0) and not a <= bucket(ident) < b:
            continue
        label = _norm_label(row.get(lf)) if lf else None
        if require_label and label is None:
            continue
        lang = row.get("lang")
        out.append(Example(ident, text, label, str(lang) if lang else None))
    return out


_NOISE = re.compile(r"(\brt\b|@\w+|https?://\S+|<email>|&amp;|[^\w\s])", re.UNICODE)


def normalise_text(text: str) -> str:
    """Lower case without handles, URLs, RT and punctuation: the key for overlap checks."""
    return " ".join(_NOISE.sub(" ", text.lower()).split())


def remove_overlap(train: Sequence[Example], evaluation: Iterable[str]) -> tuple[list[Example], int]:
    """Drop training examples whose normalised text is in ``evaluation``; returns (kept, removed)."""
    banned = {normalise_text(t) for t in evaluation}
    banned.discard("")
    kept = [ex for ex in train if normalise_text(ex.text) not in banned]
    return kept, len(train) - len(kept)


def accuracy(gold: Sequence[str], pred: Sequence[str]) -> float:
    return sum(g == p for g, p in zip(gold, pred, strict=True)) / max(1, len(gold))


def macro_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    """Mean F1 over the classes that occur in ``gold``."""
    scores = []
    for c in sorted(set(gold)):
        tp = sum(g == c and p == c for g, p in zip(gold, pred, strict=True))
        fp = sum(g != c and p == c for g, p in zip(gold, pred, strict=True))
        fn = sum(g == c and p != c for g, p in zip(gold, pred, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / max(1, len(scores))
