"""Helpers for the connector tests: a local aiohttp server, and a source run until a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from stormwatch.ingest.source import Backoff, BrandMatcher, MemorySink, Source, StateFile, run_source

#: Every test post is about this brand (one --brand, keywords below).
MATCHER = BrandMatcher.from_cli(["Acme"], ["acme"])


@asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 on a free port; yield its base URL."""
    runner = web.AppRunner(app, shutdown_timeout=5.0)  # a handler still streaming must not hold a test
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def run_until(source: Source, sink: MemorySink, done: Callable[[], bool], timeout: float = 60.0,
                    state: StateFile | None = None) -> dict[str, Any]:
    """Run the source's loop (fast backoff) until ``done()``; fail after ``timeout`` s."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_source(source, sink, MATCHER, state,
                                          Backoff(base=0.1, cap=0.5, jitter=0.0), stop, checkpoint_every=5))
    deadline = time.monotonic() + timeout
    try:
        while not done():
            if task.done():
                task.result()  # raises what ended it
                raise AssertionError("the source loop ended before the condition held")
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met after {timeout:.0f} s; posts: "
                                     f"{[p.id for p in sink.posts]}, dead: {[d.reason for d in sink.dead]}")
            await asyncio.sleep(0.05)
    finally:
        stop.set()
    return await asyncio.wait_for(task, 30)
