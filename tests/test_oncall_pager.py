"""The paging sink: the Alert → Alertmanager mapping, the incident memory, retries, and a
real Alertmanager (Debian binary) in front of a local webhook receiver.

The receiver stands in for Slack, PagerDuty and generic webhooks, which cannot be reached
from here; Alertmanager itself is real.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from stormwatch.local import run_file
from stormwatch.model import Alert
from stormwatch.sinks.alertmanager import AlertmanagerClient, Pager, _iso, _ts, to_alertmanager
from tests.conftest import wait_for
from tests.oncall_servers import Receiver, alertmanager
from tests.test_oncall_metrics import slice_file


@pytest.fixture(scope="module")
def alerts(data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Alert]:
    path = slice_file(data, tmp_path_factory.mktemp("slice") / "slice.jsonl")
    return run_file(path).alerts


def test_every_event_of_an_incident_has_the_same_labels_and_incidents_differ(alerts: list[Alert]) -> None:
    labels: dict[str, set[str]] = {}
    for a in alerts:
        p = to_alertmanager(a.to_dict(), now=0.0)
        labels.setdefault(a.id, set()).add(json.dumps(p["labels"], sort_keys=True))
        assert p["labels"]["brand"] == a.brand and p["labels"]["alert_id"] == a.id
        assert set(p["annotations"]) >= {"summary", "description", "runbook_url", "observed", "expected"}
        assert (p["endsAt"] == a.to_dict()["at"]) == (a.event == "resolve")
    assert all(len(v) == 1 for v in labels.values())
    assert len({next(iter(v)) for v in labels.values()}) == len(labels) >= 4


def test_alert_fields_added_later_are_read_when_present(alerts: list[Alert]) -> None:
    d = {**alerts[0].to_dict(), "crisis_type": "outage", "playbook": {"url": "https://kb/outage"}}
    p = to_alertmanager(d, now=0.0)
    assert p["labels"]["crisis_type"] == "outage" and p["annotations"]["runbook_url"] == "https://kb/outage"


def test_a_restarted_pager_pushes_the_state_the_topic_holds(alerts: list[Alert]) -> None:
    main = [a for a in alerts if a.brand == "US Airways" and a.channel == "*"]
    assert [a.event for a in main] == ["open", "resolve", "open", "resolve"]
    now = 1.8e9
    pager = Pager(resend_s=60)
    for a in main[:3]:  # the topic as a restarted pager finds it: the second incident still open
        pager.apply(a.to_dict(), now=now)
    snap = {p["labels"]["alert_id"]: p["endsAt"] for p in pager.snapshot(now)}
    assert snap == {main[0].id: main[1].to_dict()["at"],  # resolved at its resolve time
                    main[2].id: "2027-01-15T08:05:00Z"}  # firing: five re-sends ahead of now
    assert [p["labels"]["alert_id"] for p in pager.firing(now)] == [main[2].id]
    resolved = pager.apply(main[3].to_dict(), now=now)
    want = [(main[2].id, main[3].to_dict()["at"])]
    assert [(p["labels"]["alert_id"], p["endsAt"]) for p in resolved] == want
    assert pager.firing(now) == []


def test_a_brand_wide_resolve_read_with_its_twins_is_pushed_after_theirs(alerts: list[Alert]) -> None:
    # Pushed first, it would lift the inhibition of the per-channel twin, which would page.
    last = [a for a in alerts if a.brand == "US Airways"][-4:]
    assert [(a.channel, a.event) for a in last] == [("*", "open"), ("twitter", "open"),
                                                    ("*", "resolve"), ("twitter", "resolve")]
    pager = Pager()
    opened = pager.apply_batch([a.to_dict() for a in last[:2]], now=0.0)
    assert [p["labels"]["channel"] for p in opened] == ["all", "twitter"]  # not reordered
    resolved = pager.apply_batch([a.to_dict() for a in last[2:]], now=0.0)
    assert [(p["labels"]["channel"], p["endsAt"]) for p in resolved] == [
        ("twitter", last[3].to_dict()["at"]), ("all", last[2].to_dict()["at"])]
    with pytest.raises(KeyError):
        pager.apply_batch([{"id": "x"}], now=0.0)


def test_client_retries_with_backoff_while_alertmanager_is_down() -> None:
    rx = Receiver(status=[503, 503])
    try:
        client = AlertmanagerClient(rx.url, max_backoff_s=1.0)
        asyncio.run(client.push([{"labels": {"alertname": "x"}}]))
        assert [c[1] for c in rx.calls] == ["/api/v2/alerts"] * 3
        assert client.sent == 1
        rx.status = [400]
        asyncio.run(client.push([{"labels": {}}]))  # refused: logged, not retried forever
        assert len(rx.calls) == 4 and client.sent == 1
    finally:
        rx.close()


def test_a_retried_firing_alert_is_sent_with_its_end_moved_on_and_a_resolve_as_it_was() -> None:
    # An outage longer than a firing alert's lead (endsAt) must not make it arrive expired.
    rx = Receiver(status=[503, 503])
    try:
        now = time.time()
        firing = {"labels": {"alertname": "x", "alert_id": "a"}, "endsAt": _iso(now + 10)}
        resolved = {"labels": {"alertname": "x", "alert_id": "b"}, "endsAt": "2015-02-22T22:52:00Z"}
        client = AlertmanagerClient(rx.url, max_backoff_s=1.0)
        asyncio.run(client.push([firing, resolved]))
        assert rx.codes == [503, 503, 200]
        sent = {a["labels"]["alert_id"]: a["endsAt"] for a in rx.bodies()[-1]}
        assert sent["b"] == resolved["endsAt"]
        moved = _ts(sent["a"]) - _ts(firing["endsAt"])
        assert 1 <= moved <= 4, moved  # 0.5 + 1 s of backoff, whole seconds
        assert rx.bodies()[0][0]["endsAt"] == firing["endsAt"]  # the first try: as made
    finally:
        rx.close()


def test_client_retries_an_answer_cut_short_instead_of_crashing(caplog: pytest.LogCaptureFixture) -> None:
    # Alertmanager (or a proxy before it) dying mid-answer: the first answer promises 100
    # bytes and sends 7, the second is whole. The pager must retry, not die of IncompleteRead.
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial",
               b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"]
    requests: list[bytes] = []
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()

        def serve() -> None:
            for answer in answers:
                conn, _ = srv.accept()
                with conn:  # read the whole request first: closing on unread data resets it
                    raw = b""
                    while b"\r\n\r\n" not in raw:
                        raw += conn.recv(65536)
                    head, body = raw.split(b"\r\n\r\n", 1)
                    length = re.search(rb"Content-Length: (\d+)", head, re.I)
                    assert length, head
                    while len(body) < int(length.group(1)):
                        body += conn.recv(65536)
                    requests.append(raw)
                    conn.sendall(answer)

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        client = AlertmanagerClient(f"http://127.0.0.1:{srv.getsockname()[1]}", max_backoff_s=1.0)
        with caplog.at_level(logging.INFO, logger="stormwatch.sinks.alertmanager"):
            asyncio.run(client.push([{"labels": {"alertname": "x"}}]))
        server.join(10)
    assert client.sent == 1 and len(requests) == 2
    assert all(r.startswith(b"POST /api/v2/alerts ") for r in requests)
    assert "IncompleteRead" in caplog.text and "retrying in 0.5 s" in caplog.text
    assert "back: 1 alerts sent after 1 retries" in caplog.text


@pytest.mark.slow
def test_real_alertmanager_pages_once_across_a_pager_restart_and_sends_the_resolve(
        alerts: list[Alert], tmp_path: Path) -> None:
    incident = [a for a in alerts if a.brand == "US Airways" and a.channel == "*"][-2:]
    twitter = [a for a in alerts if a.brand == "US Airways" and a.channel == "twitter"][-2:]
    assert [a.event for a in incident] == ["open", "resolve"] == [a.event for a in twitter]
    rx = Receiver()
    try:
        with alertmanager(tmp_path, rx.url) as am:
            client = AlertmanagerClient(am)
            first = Pager(resend_s=1.0)
            pushes = first.apply(incident[0].to_dict(), 0.0) + first.apply(twitter[0].to_dict(), 0.0)
            asyncio.run(client.push([dict(p, endsAt="2099-01-01T00:00:00Z") for p in pushes]))
            wait_for(lambda: rx.bodies("/crisis-webhook"), 60, 0.5, "the first page")
            # a restarted pager rebuilds its state and pushes the same open incident again, twice
            second = Pager(resend_s=1.0)
            second.apply(incident[0].to_dict(), 0.0)
            second.apply(twitter[0].to_dict(), 0.0)
            for _ in range(2):
                again = [dict(p, endsAt="2099-01-01T00:00:00Z") for p in second.snapshot(0.0)]
                asyncio.run(client.push(again))
                time.sleep(2.5)  # longer than group_interval: a change would be notified
            # as the pager reads them: together, the brand-wide resolve pushed after its twin's
            # (pushed first, it lifts the twin's inhibition for a moment, and the twin pages)
            asyncio.run(client.push(second.apply_batch([incident[1].to_dict(), twitter[1].to_dict()], 0.0)))
            wait_for(lambda: any(b["status"] == "resolved" for b in rx.bodies("/crisis-webhook")), 60, 0.5,
                     "the resolve")
    finally:
        rx.close()
    notes = rx.bodies("/crisis-webhook")
    pages = Counter(a["labels"]["alert_id"] for n in notes for a in n["alerts"] if a["status"] == "firing")
    assert pages == {incident[0].id: 1}  # the per-channel incident is inhibited by the brand-wide one
    fired = next(a for n in notes for a in n["alerts"] if a["status"] == "firing")
    assert fired["labels"]["brand"] == "US Airways" and fired["labels"]["severity"] == "warning"
    assert "expected" in fired["annotations"]["summary"] and fired["annotations"]["runbook_url"]
    resolved = [a for n in notes for a in n["alerts"] if a["status"] == "resolved"]
    assert [a["labels"]["alert_id"] for a in resolved] == [incident[0].id]
    slack = rx.bodies("/social-slack")
    assert slack and all(n["receiver"] == "social-slack" for n in slack)
