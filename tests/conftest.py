"""Shared fixtures: the data folder, the local Kafka broker, a worker in a subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stormwatch.app.topics import delete_topics
from stormwatch.config import REPO_ROOT, Settings, data_dir

KAFKA = os.environ.get("STORMWATCH_KAFKA", "127.0.0.1:9092")

# The pipeline's tests run the rule-based scorer: they are about moving, bucketing and
# alerting, and a transformer per worker process would cost ~10 s and 2 GB each. The
# default scorer (e5) has its own tests (test_nlp_*, and an end-to-end one through Kafka
# in tests/integration/test_kafka_pipeline.py that unsets this).
os.environ.setdefault("STORMWATCH_SCORER", "lexicon")


@pytest.fixture(scope="session")
def data() -> Path:
    d = data_dir()
    if not (d / "posts" / "airline_posts_unlabelled.jsonl").exists():
        pytest.skip(f"shared data not found at {d} (set STORMWATCH_DATA)")
    return d


def _port_open(addr: str) -> bool:
    host, port = addr.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """The broker at STORMWATCH_KAFKA; started with deploy/kafka/kafka.sh if it is not up.

    Integration tests fail (they do not skip) when no broker can be had.
    """
    started = False
    if not _port_open(KAFKA):
        port = KAFKA.rsplit(":", 1)[1]
        subprocess.run([str(REPO_ROOT / "deploy/kafka/kafka.sh"), "start"], check=True,
                       env={**os.environ, "KAFKA_PORT": port})
        started = True
    yield KAFKA
    if started:
        port = KAFKA.rsplit(":", 1)[1]
        subprocess.run([str(REPO_ROOT / "deploy/kafka/kafka.sh"), "stop"], check=False,
                       env={**os.environ, "KAFKA_PORT": port})


@pytest.fixture
def env(kafka: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for one test: its own topic prefix and app id on the shared broker.

    Its topics are deleted afterwards (the workers the test started are stopped first:
    the ``worker`` fixture depends on this one).
    """
    tag = "t" + uuid.uuid4().hex[:10]
    yield {**os.environ, "STORMWATCH_KAFKA": kafka, "STORMWATCH_APP_ID": tag,
           "STORMWATCH_TOPIC_PREFIX": f"{tag}.", "STORMWATCH_PARTITIONS": "4",
           "STORMWATCH_STATE_DIR": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1",
           "STORMWATCH_GUARANTEE": os.environ.get("STORMWATCH_GUARANTEE", "at_least_once")}
    try:  # so a developer's broker does not keep every test's data
        asyncio.run(delete_topics(kafka, tag))
    except Exception as exc:  # a broker a fault test left down is no reason to fail the test
        print(f"could not delete the topics of {tag}: {exc!r}")


def settings_of(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``stormwatch ARGS`` to completion; raise with its output if it fails."""
    proc = subprocess.run([sys.executable, "-m", "stormwatch.cli", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"stormwatch {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


class Worker:
    """``stormwatch worker`` in a subprocess, logging to a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        fh = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "stormwatch.cli", "worker", "--loglevel", "info"],
                                     env=self.env, cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], Worker]]:
    made: list[Worker] = []

    def make() -> Worker:
        w = Worker(env, tmp_path / f"worker{len(made)}.log").start()
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop(signal.SIGKILL if not w.alive() else signal.SIGTERM, timeout=30)


def wait_for(predicate: Callable[[], object], timeout: float, every: float = 1.0, what: str = "") -> object:
    """Poll until ``predicate()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(every)
