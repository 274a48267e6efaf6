"""``stormwatch ingest replay FILE``: replay a file of posts into Kafka, keeping event time.

Valid posts go to ``posts.raw`` keyed by brand (so one brand's posts stay in order on
one partition); invalid lines go to ``posts.dlq`` with the reason and their file:line.
With ``--speed N`` the replay sleeps so that N seconds of event time pass per second.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterable

from stormwatch.app.topics import ensure_topics
from stormwatch.config import Settings
from stormwatch.ingest.producer import PostProducer
from stormwatch.ingest.readers import Record, iter_file
from stormwatch.model import DeadLetter


class Progress:
    """Progress on stderr: a live line on a terminal, a line every 10 s in a log."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.every = 0.5 if self.tty else 10.0
        self.start = self.last = time.monotonic()

    def update(self, lines: int, producer: PostProducer, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self.last < self.every):
            return
        self.last = now
        rate = lines / max(now - self.start, 1e-9)
        msg = (f"{lines} lines  {producer.sent['posts']} posts  "
               f"{sum(producer.rejected.values())} to DLQ  {rate:,.0f} lines/s")
        end = "\n" if final or not self.tty else ""
        sys.stderr.write(("\r" if self.tty else "") + msg + end)
        sys.stderr.flush()


async def replay(records: Iterable[Record], settings: Settings, source: str, speed: float = 0.0,
                 limit: int | None = None, progress: Progress | None = None) -> dict[str, object]:
    """Produce the records; return the delivery summary (all deliveries confirmed)."""
    await ensure_topics(settings)
    started = time.monotonic()
    first_event: float | None = None
    lines = 0
    async with PostProducer(settings, source="replay") as producer:
        for lineno, raw in records:
            if limit is not None and lines >= limit:
                break
            lines += 1
            item = producer.prepare(raw, f"{source}:{lineno}")
            if isinstance(item, DeadLetter):
                await producer.send_dead(item)
            else:
                if speed > 0:
                    if first_event is None:
                        first_event = item.ts
                    due = started + (item.ts - first_event) / speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        await producer.flush()
                        await asyncio.sleep(delay)
                await producer.send_post(item)
            if progress is not None:
                progress.update(lines, producer)
        await producer.flush()
        if progress is not None:
            progress.update(lines, producer, final=True)
        summary = producer.summary()
    summary["lines"] = lines
    summary["seconds"] = round(time.monotonic() - started, 3)
    return summary


def main(args: argparse.Namespace) -> int:
    import json

    settings = Settings.from_env()
    try:
        records = iter_file(args.file)
        summary = asyncio.run(replay(records, settings, args.file, args.speed, args.limit,
                                     Progress(not args.quiet)))
    except FileNotFoundError as exc:
        print(f"stormwatch ingest replay: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, sort_keys=True))
    return 0
