"""A sentiment cache, so that a backtest or a sweep scores each text once per scorer.

The cache is one SQLite file under :func:`stormwatch.config.cache_dir` keyed by the
scorer's name and a hash of (language, text); it wraps any :class:`~stormwatch.nlp.Scorer`.

>>> import tempfile
>>> from stormwatch.nlp.lexicon import LexiconScorer
>>> with tempfile.TemporaryDirectory() as d:
...     c = CachedScorer(LexiconScorer(), Path(d) / "s.sqlite")
...     first = c.score(["worst flight ever", "thanks!"])
...     again = c.score(["worst flight ever"])
...     (first[0] == again[0], c.hits, c.misses)
(True, 1, 2)
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from stormwatch.config import cache_dir
from stormwatch.model import Sentiment
from stormwatch.nlp.base import Scorer

__all__ = ["CachedScorer", "default_path"]


def default_path() -> Path:
    return cache_dir() / "sentiment-cache.sqlite"


def _key(text: str, lang: str | None) -> str:
    return hashlib.sha256(f"{lang or ''}\x00{text}".encode()).hexdigest()[:32]


class CachedScorer(Scorer):
    """``inner`` with its verdicts kept on disk; ``hits``/``misses`` count texts."""

    def __init__(self, inner: Scorer, path: Path | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.path = path or default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        self.db.execute("CREATE TABLE IF NOT EXISTS sentiment (scorer TEXT, key TEXT, label TEXT, "
                        "score REAL, negative REAL, model TEXT, PRIMARY KEY (scorer, key))")
        self.hits = self.misses = 0

    def score(self, texts: Sequence[str], langs: Sequence[str | None] | None = None) -> list[Sentiment]:
        langs = list(langs) if langs is not None else [None] * len(texts)
        keys = [_key(t, lang) for t, lang in zip(texts, langs, strict=True)]
        found: dict[str, Sentiment] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            rows = self.db.execute(
                f"SELECT key, label, score, negative, model FROM sentiment WHERE scorer = ? AND key IN "
                f"({','.join('?' * len(chunk))})", [self.name, *chunk])
            found.update({k: Sentiment(lab, s, n, m) for k, lab, s, n, m in rows})
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            new = self.inner.score([texts[i] for i in todo], [langs[i] for i in todo])
            for i, s in zip(todo, new, strict=True):
                found[keys[i]] = s
            self.db.executemany("INSERT OR REPLACE INTO sentiment VALUES (?, ?, ?, ?, ?, ?)",
                                [(self.name, keys[i], s.label, s.score, s.negative, s.model)
                                 for i, s in zip(todo, new, strict=True)])
            self.db.commit()
        return [found[k] for k in keys]
