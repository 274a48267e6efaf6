"""``stormwatch bench pipeline FILE``: time a file through the pipeline, in-process or through Kafka.

``--mode local`` times the local runner. ``--mode kafka`` uses the broker at
``STORMWATCH_KAFKA``: fresh topics and app id, ``--workers N`` worker subprocesses
(one consumer group; it waits until all have joined), the replay connector, then waits
until the workers have caught up (consumer lag zero). It reports posts/s end to end,
the peak consumer lag per topic and each worker's peak memory and CPU time.
``--scorer none`` swaps the model for a scorer that does nothing, so the pipeline's own
cost shows. The last line of output is JSON.

``--worker-cpus LIST`` runs the workers on those CPUs (their torch threads follow) and
this process on the others, so the worker does not share its cores with the load
generator; start the broker with ``KAFKA_CPUS`` (``deploy/kafka/kafka.sh``) on the
others too, and the worker has its cores to itself, as in a deployment.

``--span SECONDS`` first squeezes the file's event times into that many seconds (order
and relative spacing kept), so the same posts arrive as densely as a busy live stream:
a week replayed as is closes a one-minute bucket per series for every minute of the
week (80,640 for the airline posts), which is work per minute of history, not per post.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from stormwatch import plugins
from stormwatch.config import Settings


def retimed(lines: list[str], span_s: float) -> list[str]:
    """JSONL post lines with their ``created_at`` squeezed into ``span_s`` seconds from the first.

    >>> out = retimed(['{"id": "a", "created_at": "2015-02-17T00:00:00Z"}',
    ...                '{"id": "b", "created_at": "2015-02-18T00:00:00Z"}', 'not json'], 60.0)
    >>> [json.loads(x)["created_at"] for x in out[:2]], out[2]
    (['2015-02-17T00:00:00.000Z', '2015-02-17T00:01:00.000Z'], 'not json')
    """
    from stormwatch.model import InvalidRecord, _utc

    def parsed(line: str) -> tuple[dict[str, Any], datetime] | None:
        try:
            d = json.loads(line)
            return d, _utc(d["created_at"], "created_at")  # as the post parser reads it
        except (ValueError, TypeError, KeyError, InvalidRecord):  # left as is: the worker rejects it
            return None

    rows = [parsed(line) for line in lines]
    known = [row[1] for row in rows if row is not None]
    if not known:
        return list(lines)
    t0, t1 = min(known), max(known)
    scale = span_s / max((t1 - t0).total_seconds(), 1e-9)
    out = []
    for line, row in zip(lines, rows, strict=True):
        if row is None:
            out.append(line)
            continue
        d, t = row
        d["created_at"] = (t0 + (t - t0) * scale).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        out.append(json.dumps(d, ensure_ascii=False))
    return out


def bench_local(path: str, settings: Settings) -> dict[str, object]:
    from stormwatch.local import run_file

    t0 = time.perf_counter()
    result = run_file(path, settings)
    seconds = time.perf_counter() - t0
    return {"mode": "local", "posts": result.scored, "seconds": round(seconds, 2),
            "posts_per_s": round(result.scored / seconds, 1),
            "incidents": len({a.id for a in result.alerts}), "scorer": settings.scorer}


NULL_SCORER_PLUGIN = "stormwatch.bench.null_scorer"


def scorer_env(scorer: str | None, env: dict[str, str]) -> dict[str, str]:
    """Settings for ``--scorer``: ``none`` is the null scorer, loaded as a plugin everywhere."""
    if not scorer:
        return env
    env = {**env, "STORMWATCH_SCORER": scorer}
    if scorer == "none":
        plugins = [p for p in env.get("STORMWATCH_PLUGINS", "").split(",") if p]
        env["STORMWATCH_PLUGINS"] = ",".join([*plugins, NULL_SCORER_PLUGIN])
    return env


async def group_members(settings: Settings) -> tuple[str, int]:
    """The worker group's state (``Stable`` once a rebalance is done) and member count."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka)
    await admin.start()
    try:
        resp = await admin.describe_consumer_groups([settings.app_id])
        group = resp[0].groups[0]  # (error, group id, state, protocol type, protocol, members, ...)
        return str(group[2]), len(group[5])
    except KafkaError as exc:  # no group yet: its coordinator is not known
        return type(exc).__name__, 0
    finally:
        await admin.close()


def wait_group(settings: Settings, workers: int, timeout: float, alive: Callable[[], bool],
               ready: Callable[[], bool]) -> None:
    """Wait until ``workers`` workers share the group, the rebalance has settled and every
    worker says it is ready (``ready``: tables restored, partitions sought).

    A group can be ``Stable`` while a worker is still recovering; records that arrive in
    that window were seen once to stall two partitions of the worker that was recovering
    (faust-streaming 0.15.3; docs/reliability.md, "Known limit"), so the replay waits for readiness.
    """
    deadline = time.monotonic() + timeout
    stable_since: float | None = None
    while True:
        if not alive():
            raise RuntimeError("a worker exited while joining the group (see its log)")
        state, n = asyncio.run(group_members(settings))
        now = time.monotonic()
        if state == "Stable" and n == workers and ready():
            stable_since = stable_since or now
            if now - stable_since >= 1.0:  # and stays so
                return
        else:
            stable_since = None
        if now > deadline:
            raise TimeoutError(f"group {settings.app_id}: {n} of {workers} workers, state {state}, "
                               f"all ready: {ready()}")
        time.sleep(0.5)


def workers_ready(logs: Path, workers: int) -> bool:
    """Whether every worker's log in ``logs`` says it finished its latest rebalance."""
    from stormwatch.app.readiness import ready_after_rebalance

    return all(ready_after_rebalance((logs / f"worker{i}.log").read_text(errors="replace"))
               for i in range(workers))


def proc_stats(pid: int) -> dict[str, float]:
    """Peak resident memory (MiB) and CPU seconds of a process, from /proc (Linux)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["peak_rss_mib"] = round(int(line.split()[1]) / 1024, 1)
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out["cpu_s"] = round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 1)
    except (OSError, IndexError, ValueError):
        pass
    return out


def log_tails(logs: Path, workers: int, lines: int = 40) -> str:
    """The last ``lines`` lines of each worker's log in ``logs``."""
    out = []
    for i in range(workers):
        text = (logs / f"worker{i}.log").read_text(errors="replace").splitlines()
        out.append(f"--- worker{i}.log (last {min(lines, len(text))} of {len(text)} lines)")
        out += text[-lines:]
    return "\n".join(out)


class Supervisor(threading.Thread):
    """Starts a worker again when it exits with the stall status, as its supervisor would in
    a deployment (docs/reliability.md, "Known limit"); ``restarts`` lists which worker and when."""

    def __init__(self, procs: list[subprocess.Popen[bytes]],
                 start: Callable[[int], subprocess.Popen[bytes]]) -> None:
        super().__init__(daemon=True)
        self.procs, self.start_worker = procs, start
        self.restarts: list[tuple[int, float]] = []
        self.halt = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        from stormwatch.app.lag import STALL_EXIT_CODE

        while not self.halt.wait(1.0):
            for i, p in enumerate(self.procs):
                if p.poll() == STALL_EXIT_CODE:
                    print(f"worker{i} exited on a stalled partition; starting it again", file=sys.stderr)
                    self.restarts.append((i, round(time.monotonic() - self.t0, 1)))
                    self.procs[i] = self.start_worker(i)


class LagSampler(threading.Thread):
    """Samples the worker group's consumer lag once a second; keeps the peak per topic."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings, self.peak, self.halt = settings, {}, threading.Event()  # type: ignore[var-annotated]

    def run(self) -> None:
        asyncio.run(self._sample())

    async def _sample(self) -> None:
        from stormwatch.app.lag import LagReader

        reader = LagReader(self.settings)  # one pair of clients for the whole run
        try:
            while not self.halt.is_set():
                try:
                    lag = await reader.topics()
                except Exception:  # a sample lost to a busy broker: take the next one afresh
                    lag = {}
                    await reader.close()
                for topic, n in lag.items():
                    self.peak[topic] = max(self.peak.get(topic, 0), n)
                await asyncio.sleep(1.0)
        finally:
            await reader.close()


def cpu_list(text: str) -> set[int]:
    """CPUs written as for ``taskset -c``.

    >>> sorted(cpu_list("0,2-4"))
    [0, 2, 3, 4]
    >>> cpu_list("x")
    Traceback (most recent call last):
    ...
    ValueError: not a CPU list (like 0 or 0,2-3): 'x'
    """
    try:
        out: set[int] = set()
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ValueError(f"not a CPU list (like 0 or 0,2-3): {text!r}") from None
    return out


def split_cpus(worker_cpus: set[int], available: set[int]) -> set[int]:
    """The CPUs left for the load generator once the workers have ``worker_cpus``.

    >>> sorted(split_cpus({0}, {0, 1}))
    [1]
    >>> split_cpus({0, 1}, {0, 1})
    Traceback (most recent call last):
    ...
    ValueError: --worker-cpus 0,1 leaves no CPU for the broker and the replay (this process may use 0,1)
    """
    def show(cpus: set[int]) -> str:
        return ",".join(map(str, sorted(cpus)))

    if not worker_cpus <= available:
        raise ValueError(f"--worker-cpus {show(worker_cpus)}: this process may only use {show(available)}")
    rest = available - worker_cpus
    if not rest:
        raise ValueError(f"--worker-cpus {show(worker_cpus)} leaves no CPU for the broker and the replay "
                         f"(this process may use {show(available)})")
    return rest


def bench_kafka(path: str, settings: Settings, partitions: int, timeout: float, workers: int = 1,
                scorer: str | None = None, base_env: dict[str, str] | None = None,
                log_dir: str | None = None, loglevel: str = "warn",
                worker_cpus: set[int] | None = None) -> dict[str, Any]:
    """Replay ``path`` through ``workers`` worker subprocesses; time it until lag is zero.

    With ``worker_cpus``, the workers run on those CPUs and this process on the rest.

    The result's ``alerts`` (the alert records read back) is for tests; ``main`` drops it.
    If the workers do not catch up within ``timeout``, the error names the partitions
    still behind and ends with the tail of each worker's log.
    """
    from stormwatch.app.lag import caught_up_at
    from stormwatch.app.topics import delete_topics, ensure_topics
    from stormwatch.ingest.readers import iter_file
    from stormwatch.ingest.replay import replay
    from stormwatch.sinks.console import read_alerts

    tag = "bench" + uuid.uuid4().hex[:8]
    env = scorer_env(scorer, {**(os.environ if base_env is None else base_env), "STORMWATCH_APP_ID": tag,
                              "STORMWATCH_TOPIC_PREFIX": f"{tag}.", "STORMWATCH_PARTITIONS": str(partitions)})
    s = Settings.from_env(env)
    asyncio.run(ensure_topics(s, tables=True))
    logs = Path(log_dir or f"var/bench/{tag}")
    logs.mkdir(parents=True, exist_ok=True)
    own_cpus = os.sched_getaffinity(0)
    rest = split_cpus(worker_cpus, own_cpus) if worker_cpus else own_cpus

    def pinned() -> None:  # in the child, before exec: no thread of ours runs yet
        if worker_cpus:
            os.sched_setaffinity(0, worker_cpus)

    def start(i: int, mode: str = "ab") -> subprocess.Popen[bytes]:
        # Each worker has its own state folder, as on separate machines.
        wenv = {**env, "STORMWATCH_STATE_DIR": str(logs / f"state{i}")}
        with (logs / f"worker{i}.log").open(mode) as fh:
            cmd = [sys.executable, "-m", "stormwatch.cli", "worker", "--loglevel", loglevel]
            return subprocess.Popen(cmd, env=wenv, stdout=fh, stderr=subprocess.STDOUT,
                                    preexec_fn=pinned if worker_cpus else None)

    procs = [start(i, "wb") for i in range(workers)]  # fresh logs: readiness is read from them
    os.sched_setaffinity(0, rest)
    sampler = LagSampler(s)
    supervisor = Supervisor(procs, start)
    try:
        wait_group(s, workers, min(timeout, 300.0), lambda: all(p.poll() is None for p in procs),
                   lambda: workers_ready(logs, workers))
        t0 = time.monotonic()
        sampler.start()
        supervisor.start()
        summary = asyncio.run(replay(iter_file(path), s, path))
        t_produced = time.monotonic() - t0
        try:
            _, at = asyncio.run(caught_up_at(s, timeout, settle_s=2.0))
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{log_tails(logs, workers)}") from None
        t_done = at - t0  # the first read that found no lag (reads 0.5 s apart)
        per_worker = [proc_stats(p.pid) for p in procs]
        alerts = asyncio.run(read_alerts(s, 2.0))
    finally:
        sampler.halt.set()
        supervisor.halt.set()
        if supervisor.is_alive():
            supervisor.join()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        os.sched_setaffinity(0, own_cpus)
        try:  # a benchmark's topics are throwaway; the broker need not keep them
            asyncio.run(delete_topics(s.kafka, tag))
        except Exception as exc:
            print(f"could not delete the topics of {tag}: {exc!r}", file=sys.stderr)
    posts = int(summary["posts"])  # type: ignore[call-overload]
    return {"mode": "kafka", "posts": posts, "partitions": partitions, "workers": workers,
            "produce_seconds": round(t_produced, 2), "end_to_end_seconds": round(t_done, 2),
            "posts_per_s": round(posts / t_done, 1), "alert_events": len(alerts),
            "incidents": len({a.id for a in alerts}), "scorer": s.scorer,
            "peak_lag": dict(sampler.peak),
            "workers_peak_rss_mib": [w.get("peak_rss_mib") for w in per_worker],
            "workers_cpu_s": [w.get("cpu_s") for w in per_worker],
            "worker_cpus": sorted(worker_cpus) if worker_cpus else None,
            "worker_restarts": supervisor.restarts,
            "note": "end_to_end is until the first zero-lag read; reads are 0.5 s apart", "alerts": alerts}


def main(args: argparse.Namespace) -> int:
    if args.scorer:
        # Set for this process and the workers it starts alike.
        os.environ.update(scorer_env(args.scorer, dict(os.environ)))
    settings = Settings.from_env()
    plugins.load(settings.plugins)
    path = args.file
    if args.span:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        dense = Path("var/bench") / f"{Path(path).stem}.span{args.span:g}s.jsonl"
        dense.parent.mkdir(parents=True, exist_ok=True)
        dense.write_text("\n".join(retimed(lines, args.span)) + "\n", encoding="utf-8")
        print(f"{len(lines)} posts squeezed into {args.span:g} s of event time: {dense}", file=sys.stderr)
        path = str(dense)
    if args.mode == "local":
        out = bench_local(path, settings)
    else:
        try:
            cpus = cpu_list(args.worker_cpus) if args.worker_cpus else None
            if cpus:
                split_cpus(cpus, os.sched_getaffinity(0))
        except ValueError as exc:
            print(f"stormwatch bench pipeline: {exc}", file=sys.stderr)
            return 2
        out = bench_kafka(path, settings, args.partitions, args.timeout, workers=args.workers,
                          worker_cpus=cpus)
        out.pop("alerts")
    if args.span:
        out["span_s"] = args.span
    for k, v in out.items():
        print(f"{k:<20}{v}")
    print(json.dumps(out, sort_keys=True))
    return 0
