"""Read posts from files: JSON lines or CSV, as raw records for :func:`~stormwatch.model.parse_post`.

Readers do not validate; they hand each record on with its position, so a bad line
ends in the dead-letter topic with the file and line it came from.

>>> import io
>>> list(iter_jsonl(io.BytesIO(b'{"id": "1"}\\n\\n{"id": 2}\\n')))
[(1, b'{"id": "1"}'), (3, b'{"id": 2}')]
>>> rows = list(iter_csv(io.StringIO("id,created_at,channel,brand,text,retweets\\n"
...                                  "1,2015-02-23T01:00:00Z,twitter,A,hello,3\\n")))
>>> rows[0][1]["retweets"], rows[0][0]
(3, 2)
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

Record = tuple[int, Any]  # (line number, raw bytes or a dict)


def iter_jsonl(stream: IO[bytes]) -> Iterator[Record]:
    """Yield (line number, raw line) for each non-blank line."""
    for lineno, line in enumerate(stream, start=1):
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield lineno, line


def iter_csv(stream: IO[str]) -> Iterator[Record]:
    """Yield (line number, row dict) for each CSV row; integer-looking ``retweets`` become ints."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.DictReader(stream)
    for row in reader:
        rec: dict[str, Any] = {k: v for k, v in row.items() if k is not None}
        rt = rec.get("retweets")
        if isinstance(rt, str) and rt.strip().isdigit():
            rec["retweets"] = int(rt)
        elif rt == "":
            rec.pop("retweets")
        if rec.get("lang") == "":
            rec["lang"] = None
        yield reader.line_num, rec


def iter_file(path: str | Path) -> Iterator[Record]:
    """Records of a ``.csv`` file, or of JSON lines otherwise (``.jsonl``, ``.json``, ``-`` = stdin)."""
    if str(path) == "-":
        yield from iter_jsonl(sys.stdin.buffer)
        return
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file: {p}")
    if p.suffix.lower() == ".csv":
        with p.open(encoding="utf-8", newline="", errors="backslashreplace") as f:
            yield from iter_csv(f)
    else:
        with p.open("rb") as f:
            yield from iter_jsonl(f)
