"""``stormwatch bench soak``: overload the worker for a while, then let it recover.

A live-like stream of synthetic posts (event time = now, several brands, a mix of calm
and angry texts) goes to ``posts.raw`` at a fixed rate: first ``--factor`` times the
worker's capacity for ``--minutes``, then half its capacity for ``--recover-minutes``.
All traffic goes to the broker at ``STORMWATCH_KAFKA`` (127.0.0.1 here), bounded in
count and time. Every few seconds it samples the worker's resident memory and the
consumer lag. At the end it pairs each scored post with its raw record (partition +
``source_offset``) and reports the latency from the raw record's Kafka timestamp to the
scored record's, and for each closed bucket the delay from the moment it could close
(its end + allowed lateness) to its ``stats`` record (p50/p95/p99 per phase: buckets
are where a backlog shows, since ``aggregate`` is the costly stage), the memory peak per phase, and
whether the lag came back to zero. Without ``--capacity`` it first measures capacity:
a burst of posts as fast as possible, timed until the worker has caught up.

The schedule is a pure function, so it is tested without Kafka:

>>> [round(r) for r in phase_rates(200.0, 1.5)]
[300, 100]
>>> synthetic_post(3, 1_700_000_000.0, brands=4)["brand"]
'Brand3'
>>> synthetic_post(3, 0.0, brands=4, varied=True)["text"]
'cannot log in again, this is terrible this morning in berlin via the app'

``--texts varied`` gives each post one of 102,102 texts (a base text and four phrases
from short lists), so a text comes back no sooner than 102,102 posts later: beyond the
transformer scorer's cache of the last 10,000 texts, so every post costs a model pass,
as in a live stream; the default ``repeat`` uses the 6 base texts (the lexicon runs in
docs/reliability.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from stormwatch.config import Settings

TEXTS = ("the app works fine today", "thanks for the quick help", "is the service down for anyone?",
         "cannot log in again, this is terrible", "my transfer failed twice, worst bank ever",
         "love the new card design")


def phase_rates(capacity: float, factor: float) -> tuple[float, float]:
    """Posts/s of the overload phase and of the recovery phase."""
    return capacity * factor, capacity * 0.5


#: Phrases that make ``--texts varied`` posts distinct: 7 × 11 × 13 × 17 = 17,017 combinations
#: (with the 6 base texts, 102,102 distinct posts in a row).
VARY = (("today", "again", "since monday", "this morning", "all week", "right now", "tonight"),
        ("in berlin", "in hamburg", "in munich", "in london", "in vienna", "in zurich", "in cologne",
         "in leeds", "in paris", "in madrid", "in rome"),
        ("via the app", "on the website", "at the branch", "by phone", "in chat", "by email",
         "at the atm", "with my card", "on my laptop", "on android", "on iphone", "on the tablet",
         "with apple pay"),
        ("", "!", "!!", "?", "...", " :(", " :)", " #fail", " #help", " #thanks", " #down",
         " #outage", " #service", " #bank", " #app", " #update", " #support"))


def synthetic_post(i: int, now: float, brands: int, varied: bool = False) -> dict[str, Any]:
    """The ``i``-th post of the stream, created at ``now`` (epoch seconds)."""
    text = TEXTS[(i * 7) % len(TEXTS)]
    if varied:
        a, b, c, d = VARY
        text = (f"{text} {a[i % 7]} {b[(i // 7) % 11]} {c[(i // 77) % 13]}"
                f"{d[(i // 1001) % 17]}")
    return {"id": f"soak-{i}", "created_at": round(now, 3), "channel": "twitter" if i % 3 else "rss",
            "brand": f"Brand{i % brands}", "text": text}


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95, p99 and max of ``values`` (seconds), rounded to milliseconds."""
    if not values:
        return {}
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return {"p50": round(q[49], 3), "p95": round(q[94], 3), "p99": round(q[98], 3),
            "max": round(max(values), 3)}


@dataclass
class Samples:
    """Memory and lag over time: (seconds since start, phase, value)."""

    memory: list[tuple[float, str, float]] = field(default_factory=list)
    lag: list[tuple[float, str, int]] = field(default_factory=list)


async def produce_at(settings: Settings, rate: float, seconds: float, start_index: int,
                     brands: int, varied: bool = False) -> int:
    """Produce posts at ``rate`` per second for ``seconds``; returns how many were sent."""
    from stormwatch.ingest.producer import PostProducer

    sent = 0
    t0 = time.monotonic()
    async with PostProducer(settings, source="soak", max_in_flight=2000) as producer:
        while (elapsed := time.monotonic() - t0) < seconds:
            due = int(elapsed * rate) - sent
            for _ in range(max(0, due)):
                item = producer.prepare(synthetic_post(start_index + sent, time.time(), brands, varied))
                await producer.send_post(item)  # type: ignore[arg-type]
                sent += 1
            await asyncio.sleep(0.02)
    return sent


async def sample(settings: Settings, pid: int, samples: Samples, phase: list[str], t0: float,
                 every: float, stop: asyncio.Event) -> None:
    from stormwatch.app.lag import LagReader

    async with LagReader(settings) as reader:  # one pair of clients for the whole soak
        while not stop.is_set():
            now = time.monotonic() - t0
            samples.memory.append((now, phase[0], rss_mib(pid)))
            lag = await reader.topics()
            samples.lag.append((now, phase[0], sum(lag.values())))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)


async def latencies(settings: Settings) -> dict[int, float]:
    """Raw → scored latency (seconds) per post number, from the records' Kafka timestamps."""
    from stormwatch.sinks.console import read_records

    raw = {(r.partition, r.offset): r.timestamp async for r in read_records(settings, "posts.raw", 3.0)}
    out: dict[int, float] = {}
    async for r in read_records(settings, "posts.scored", 3.0):
        d = json.loads(r.value)
        i = int(d["post"]["id"].removeprefix("soak-"))
        key = (r.partition, d["source_offset"])
        if key in raw and i not in out:  # the first copy counts (at least once)
            out[i] = (r.timestamp - raw[key]) / 1000.0
    return out


async def bucket_latencies(settings: Settings) -> list[tuple[float, float]]:
    """(bucket end, seconds) per closed bucket: from the moment the watermark allowed the
    bucket to close (its end + the allowed lateness, in wall time: event time is wall time
    here) to its record on ``stats`` — the delay the alert path adds."""
    from stormwatch.model import SeriesStats
    from stormwatch.sinks.console import read_records

    out = []
    async for r in read_records(settings, "stats", 3.0):
        st = SeriesStats.from_dict(json.loads(r.value))
        closable = st.bucket_start.timestamp() + st.bucket_seconds + settings.lateness_seconds
        out.append((st.bucket_start.timestamp() + st.bucket_seconds, r.timestamp / 1000.0 - closable))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from stormwatch.app.lag import wait_caught_up
    from stormwatch.app.topics import ensure_topics

    tag = "soak" + uuid.uuid4().hex[:8]
    env = {**os.environ, "STORMWATCH_APP_ID": tag, "STORMWATCH_TOPIC_PREFIX": f"{tag}.",
           "STORMWATCH_PARTITIONS": str(args.partitions), "STORMWATCH_STATE_DIR": f"var/bench/{tag}"}
    settings = Settings.from_env(env)
    asyncio.run(ensure_topics(settings, tables=True))
    worker = subprocess.Popen([sys.executable, "-m", "stormwatch.cli", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    varied = getattr(args, "texts", "repeat") == "varied"
    out: dict[str, Any] = {"partitions": args.partitions, "brands": args.brands, "scorer": settings.scorer,
                           "texts": "varied" if varied else "repeat"}
    try:
        time.sleep(8.0)  # join the group before the first post arrives
        capacity = args.capacity
        index = 0
        if capacity is None:
            n = args.burst
            t = time.perf_counter()
            index = asyncio.run(_burst(settings, n, args.brands, varied))
            asyncio.run(wait_caught_up(settings, 900, settle_s=1.0))
            capacity = n / (time.perf_counter() - t)
            out["capacity_burst_posts"] = n
        out["capacity_posts_per_s"] = round(capacity, 1)
        high, low = phase_rates(capacity, args.factor)
        out["rates_posts_per_s"] = {"overload": round(high, 1), "recovery": round(low, 1)}

        t_recovery: list[float] = []

        async def soak() -> tuple[Samples, dict[str, int]]:
            samples, phase, stop = Samples(), ["overload"], asyncio.Event()
            t0 = time.monotonic()
            sampler = asyncio.create_task(sample(settings, worker.pid, samples, phase, t0, args.every, stop))
            sent = {"overload": await produce_at(settings, high, args.minutes * 60, index, args.brands,
                                                 varied)}
            phase[0] = "recovery"
            t_recovery.append(time.time())
            sent["recovery"] = await produce_at(settings, low, args.recover_minutes * 60,
                                                index + sent["overload"], args.brands, varied)
            phase[0] = "drain"
            try:
                await wait_caught_up(settings, args.drain_timeout, settle_s=1.0)
                out["caught_up_after_s"] = round(time.monotonic() - t0, 1)
            except TimeoutError:
                out["caught_up_after_s"] = None
            stop.set()
            await sampler
            return samples, sent

        samples, sent = asyncio.run(soak())
        out["posts_sent"] = sent
        out["worker_alive"] = worker.poll() is None
    finally:
        worker.terminate()
        worker.wait(60)
    lat = asyncio.run(latencies(settings))
    split = index + sent["overload"]
    out["posts_scored"] = sum(1 for i in lat if i >= index)
    out["scored_latency_s"] = {"overload": percentiles([v for i, v in lat.items() if index <= i < split]),
                               "recovery": percentiles([v for i, v in lat.items() if i >= split])}
    # Buckets that close during the overload (and its backlog) vs after it.
    buckets = asyncio.run(bucket_latencies(settings))
    boundary = t_recovery[0]
    out["bucket_latency_s"] = {"overload": percentiles([v for end, v in buckets if end < boundary]),
                               "recovery": percentiles([v for end, v in buckets if end >= boundary])}
    phases = ("overload", "recovery", "drain")
    out["memory_mib_max"] = {ph: round(max(m for _, p, m in samples.memory if p == ph), 1)
                             for ph in phases if any(p == ph for _, p, _ in samples.memory)}
    out["memory_mib_first_last"] = [round(samples.memory[0][2], 1), round(samples.memory[-1][2], 1)]
    out["lag_max"] = {ph: max(v for _, p, v in samples.lag if p == ph)
                      for ph in phases if any(p == ph for _, p, _ in samples.lag)}
    out["lag_last"] = samples.lag[-1][2] if samples.lag else None
    return out


async def _burst(settings: Settings, n: int, brands: int, varied: bool = False) -> int:
    from stormwatch.ingest.producer import PostProducer

    async with PostProducer(settings, source="soak", max_in_flight=2000) as producer:
        now = time.time()
        for i in range(n):
            await producer.send_post(producer.prepare(synthetic_post(i, now, brands, varied)))  # type: ignore[arg-type]
    return n


def main(args: argparse.Namespace) -> int:
    out = run(args)
    for k, v in out.items():
        print(f"{k:<24}{v}")
    print(json.dumps(out, sort_keys=True))
    return 0 if out.get("worker_alive") and out.get("caught_up_after_s") is not None else 1
