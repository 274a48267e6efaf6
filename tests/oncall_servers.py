"""Real Prometheus and Alertmanager (Debian binaries) and a local webhook receiver, for tests.

Every server binds 127.0.0.1 on a free port chosen at run time, keeps its data in the
test's temporary folder, and is stopped by the context manager that started it. The
configs are the repository's own (deploy/), with only addresses and timers changed:
the receivers that would reach Slack or PagerDuty become webhooks to the local receiver
(those services cannot be reached from here), each on its own path.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from stormwatch.config import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """Records every JSON body POSTed to it, with its path (a webhook target).

    It answers 200, except for the codes in ``status`` first, and 503 while ``down`` is set
    (a receiver that is out of service); ``codes`` holds the answer given to each call.
    """

    def __init__(self, status: list[int] | None = None) -> None:
        self.calls: list[tuple[str, str, Any]] = []  # (method, path, body)
        self.headers: list[dict[str, str]] = []  # the request headers of each call
        self.codes: list[int] = []  # the status code answered to each call
        self.status = list(status or [])  # answers to give first (e.g. [503, 503]); then 200
        self.down = False  # while True, every call is answered 503
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                with receiver.lock:
                    receiver.calls.append((self.command, self.path, body))
                    receiver.headers.append(dict(self.headers.items()))
                    answer = receiver.answer(self.command, self.path, body)
                    code = 503 if receiver.down else receiver.status.pop(0) if receiver.status else 200
                    receiver.codes.append(code)
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = do_GET = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, method: str, path: str, body: Any) -> Any:
        return {"status": "success", "id": len(self.calls), "message": "ok"}

    def bodies(self, path: str | None = None) -> list[Any]:
        with self.lock:
            return [b for _, p, b in self.calls if path is None or p == path]

    def delivered(self, path: str) -> list[Any]:
        """The bodies POSTed to ``path`` that were answered 200 (accepted)."""
        with self.lock:
            return [b for (_, p, b), code in zip(self.calls, self.codes, strict=True)
                    if p == path and code == 200]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _ready(url: str, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def _process(args: list[str], log: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    binary = shutil.which(args[0])
    assert binary, f"{args[0]} not found: apt-get install prometheus prometheus-alertmanager"
    with log.open("wb") as fh:
        proc = subprocess.Popen([binary, *args[1:]], stdout=fh, stderr=subprocess.STDOUT)
    try:
        _ready(ready_url, 60, proc, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _retime(route: dict[str, Any], timers: dict[str, str], root: bool = True) -> None:
    for key, value in timers.items():
        if root or key in route:
            route[key] = value
    for child in route.get("routes", []):
        _retime(child, timers, root=False)


def alertmanager_config(receiver_url: str, group_wait: str = "2s", group_interval: str = "2s",
                        repeat_interval: str = "1h") -> dict[str, Any]:
    """deploy/alertmanager/alertmanager.yml with local webhooks and short timers."""
    cfg = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    cfg["templates"] = [str(DEPLOY / "alertmanager" / t) for t in cfg.get("templates", [])]
    for rec in cfg["receivers"]:
        name = rec["name"]
        for kind in ("slack_configs", "pagerduty_configs", "webhook_configs"):
            rec.pop(kind, None)
        rec["webhook_configs"] = [{"url": f"{receiver_url}/{name}", "send_resolved": True}]
    _retime(cfg["route"], {"group_wait": group_wait, "group_interval": group_interval,
                           "repeat_interval": repeat_interval})
    return cfg


@contextmanager
def alertmanager(tmp: Path, receiver_url: str, port: int | None = None, **timers: str) -> Iterator[str]:
    """A real Alertmanager on ``port`` (default: a free one); yields its base URL."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config(receiver_url, **timers)))
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["prometheus-alertmanager", f"--config.file={tmp / 'alertmanager.yml'}",
            f"--storage.path={tmp / 'am-data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=", "--log.level=info"]
    with _process(args, tmp / "alertmanager.log", f"{url}/-/ready"):
        yield url


@contextmanager
def prometheus(tmp: Path, targets: list[str], alertmanager_url: str | None = None,
               interval: str = "1s") -> Iterator[str]:
    """A real Prometheus scraping ``targets`` as job stormwatch-worker, with the repository's rules."""
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval=interval, evaluation_interval=interval)
    cfg["rule_files"] = [str(DEPLOY / "prometheus" / r) for r in cfg["rule_files"]]
    cfg["scrape_configs"] = [{"job_name": "stormwatch-worker", "static_configs": [{"targets": targets}]}]
    if alertmanager_url:
        cfg["alerting"] = {"alertmanagers": [{"static_configs": [
            {"targets": [alertmanager_url.removeprefix("http://")]}]}]}
    else:
        cfg.pop("alerting", None)
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    with _process(args, tmp / "prometheus.log", f"{url}/-/ready"):
        yield url


def query(prom_url: str, expr: str, **params: Any) -> dict[str, Any]:
    """``/api/v1/query`` (or ``query_range`` when ``start`` is given); the ``data`` part."""
    kind = "query_range" if "start" in params else "query"
    data = urllib.parse.urlencode({"query": expr, **params}).encode()
    with urllib.request.urlopen(f"{prom_url}/api/v1/{kind}", data=data, timeout=30) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]
