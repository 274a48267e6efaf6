"""The API behind a real uvicorn server on 127.0.0.1, driven by the ``stormwatch alerts`` CLI:
alert ids with '/', '*', '@' and ':' survive the URL, the token comes from a file."""

import json
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
import uvicorn

from stormwatch.api.app import create_app
from stormwatch.config import REPO_ROOT
from stormwatch.crisis.escalation import Escalation
from stormwatch.model import Alert

T0 = datetime(2015, 2, 22, 22, 22, tzinfo=UTC)
AID = "US Airways/*@2015-02-22T22:22Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    esc = Escalation()
    esc.on_alert(Alert(AID, "open", "US Airways", "*", "critical", T0, T0, 40, 8, 2, 15, 0.999,
                       "seasonal-baseline", 0.85, playbook="service", crisis_type="service"), now=0)
    sent = []

    async def publish(ev):
        sent.append(ev)

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(esc, "file-token", publish=publish), host="127.0.0.1",
                                        port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    env = {"STORMWATCH_API_URL": f"http://127.0.0.1:{port}", "STORMWATCH_API_TOKEN_FILE": str(token_file),
           "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
    yield env, esc, sent
    srv.should_exit = True
    thread.join(timeout=30)


def cli(env, *args):
    return subprocess.run([sys.executable, "-m", "stormwatch.cli", "alerts", *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)


def test_cli_acks_and_resolves_through_the_api(server):
    env, esc, sent = server
    r = cli(env, "ack", AID, "--by", "maria", "--note", "looking")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "acknowledged"
    r = cli(env, "ack", AID, "--by", "tom")
    assert r.returncode == 1 and "409" in r.stderr and "maria" in r.stderr
    r = cli(env, "resolve", AID, "--by", "maria")
    assert r.returncode == 0 and json.loads(r.stdout)["resolved_by"] == "maria"
    assert [(e.event, e.by) for e in sent] == [("ack", "maria"), ("resolve", "maria")]
    assert esc.get(AID).history[1]["note"] == "looking"
    r = cli(env, "ack", "nope")
    assert r.returncode == 1 and "404" in r.stderr


def test_cli_wrong_token_and_no_token(server):
    env, _, _ = server
    bad = {**env, "STORMWATCH_API_TOKEN_FILE": "", "STORMWATCH_API_TOKEN": "wrong"}
    r = cli(bad, "ack", AID)
    assert r.returncode == 1 and "401" in r.stderr
    r = cli({**env, "STORMWATCH_API_TOKEN_FILE": ""}, "ack", AID)
    assert r.returncode == 2 and "STORMWATCH_API_TOKEN" in r.stderr
