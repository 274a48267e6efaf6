"""``stormwatch bench pipeline FILE``: time a file through the pipeline, in-process or through Kafka.

``--mode local`` times the local runner. ``--mode kafka`` uses the broker at
``STORMWATCH_KAFKA``: fresh topics and app id, a worker subprocess, the replay
connector, then waits until the worker has caught up (consumer lag zero). The last
line of output is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

from stormwatch.config import Settings


def bench_local(path: str, settings: Settings) -> dict[str, object]:
    from stormwatch.local import run_file

    t0 = time.perf_counter()
    result = run_file(path, settings)
    seconds = time.perf_counter() - t0
    return {"mode": "local", "posts": result.scored, "seconds": round(seconds, 2),
            "posts_per_s": round(result.scored / seconds, 1),
            "incidents": len({a.id for a in result.alerts}), "scorer": settings.scorer}


def bench_kafka(path: str, settings: Settings, partitions: int, timeout: float) -> dict[str, object]:
    from stormwatch.app.lag import wait_caught_up
    from stormwatch.app.topics import ensure_topics
    from stormwatch.ingest.readers import iter_file
    from stormwatch.ingest.replay import replay
    from stormwatch.sinks.console import read_alerts

    tag = "bench" + uuid.uuid4().hex[:8]
    env = {**os.environ, "STORMWATCH_APP_ID": tag, "STORMWATCH_TOPIC_PREFIX": f"{tag}.",
           "STORMWATCH_PARTITIONS": str(partitions), "STORMWATCH_STATE_DIR": f"var/bench/{tag}"}
    s = Settings.from_env(env)
    asyncio.run(ensure_topics(s, tables=True))
    worker = subprocess.Popen([sys.executable, "-m", "stormwatch.cli", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(8.0)  # join the group before the first post arrives
        t0 = time.perf_counter()
        summary = asyncio.run(replay(iter_file(path), s, path))
        t_produced = time.perf_counter() - t0
        asyncio.run(wait_caught_up(s, timeout, settle_s=2.0))
        t_done = time.perf_counter() - t0
        alerts = asyncio.run(read_alerts(s, 2.0))
    finally:
        worker.terminate()
        worker.wait(60)
    posts = int(summary["posts"])  # type: ignore[call-overload]
    return {"mode": "kafka", "posts": posts, "partitions": partitions,
            "produce_seconds": round(t_produced, 2), "end_to_end_seconds": round(t_done, 2),
            "posts_per_s": round(posts / t_done, 1), "alert_events": len(alerts),
            "incidents": len({a.id for a in alerts}), "scorer": s.scorer,
            "note": "end_to_end includes up to ~3 s of lag polling"}


def main(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.mode == "local":
        out = bench_local(args.file, settings)
    else:
        out = bench_kafka(args.file, settings, args.partitions, args.timeout)
    for k, v in out.items():
        print(f"{k:<20}{v}")
    print(json.dumps(out, sort_keys=True))
    return 0
