"""Mastodon connector against a local server speaking the streaming API (server-sent
events with ``event:``/``data:`` lines and ``:`` heartbeats) and the REST timeline with
``min_id`` paging; it drops connections, answers 429 and sends malformed events on cue.
Statuses are made up here in the API's format."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from stormwatch.ingest.mastodon import MastodonSource
from stormwatch.ingest.source import MemorySink, StateFile
from tests.connectors_util import run_until, running


def status(i: int, text: str = "acme card declined again", **kw: Any) -> dict[str, Any]:
    sid = str(1000 + i)
    return {"id": sid, "uri": f"https://social.example/users/u{i}/statuses/{sid}",
            "created_at": f"2026-12-01T10:00:{i:02d}.000Z", "content": f"<p>{text} <b>#{i}</b></p>",
            "language": "en", "reblogs_count": i, "reblog": None, "spoiler_text": "",
            "account": {"id": str(i), "acct": f"u{i}@social.example",
                        "url": f"https://social.example/@u{i}"}, **kw}


class MastodonServer:
    """Streaming + timeline endpoints; ``faults[n]`` scripts the n-th stream connection."""

    def __init__(self) -> None:
        self.timeline: list[dict[str, Any]] = []
        self.queues: list[asyncio.Queue[tuple[str, str]]] = []
        self.faults: dict[int, str] = {}
        self.connections: list[tuple[float, int, dict[str, str]]] = []  # (time, status, headers)
        self.rest_calls: list[dict[str, str]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/streaming/hashtag", self.stream)
        app.router.add_get("/api/v1/timelines/tag/{tag}", self.rest)
        return app

    def publish(self, st: dict[str, Any]) -> None:
        self.timeline.append(st)
        self.send("update", json.dumps(st))

    def send(self, event: str, data: str) -> None:
        for q in self.queues:
            q.put_nowait((event, data))

    def connected(self) -> int:
        return len(self.queues)

    async def rest(self, request: web.Request) -> web.Response:
        self.rest_calls.append(dict(request.query) | {"auth": request.headers.get("Authorization", "")})
        min_id, limit = int(request.query["min_id"]), int(request.query.get("limit", "20"))
        newer = [s for s in self.timeline if int(s["id"]) > min_id][:limit]  # adjacent to min_id
        return web.json_response(list(reversed(newer)))  # Mastodon answers newest first

    async def stream(self, request: web.Request) -> web.StreamResponse:
        n = len(self.connections)
        fault = self.faults.get(n, "")
        if request.query.get("tag") != "acme":
            return web.json_response({"error": "unknown tag"}, status=404)
        if fault == "429":
            self.connections.append((time.monotonic(), 429, dict(request.headers)))
            return web.json_response({"error": "Too many requests"}, status=429, headers={"Retry-After": "1"})
        self.connections.append((time.monotonic(), 200, dict(request.headers)))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        q: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.queues.append(q)
        sent = 0
        try:
            await resp.write(b":)\n")
            while True:
                try:
                    event, data = await asyncio.wait_for(q.get(), 0.2)
                except TimeoutError:
                    await resp.write(b":thump\n")  # heartbeat; raises once the client is gone
                    continue
                await resp.write(f"event: {event}\ndata: {data}\n\n".encode())
                sent += 1
                if fault.startswith("drop-after-") and sent >= int(fault.rsplit("-", 1)[1]):
                    assert request.transport is not None
                    request.transport.close()  # mid-stream, no goodbye
                    return resp
        except (ConnectionResetError, ConnectionError, RuntimeError):
            return resp
        finally:
            self.queues.remove(q)


def ids(sink: MemorySink) -> list[str]:
    return [p.id.rsplit("/", 1)[1] for p in sink.posts]


async def wait(cond: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_stream_disconnect_and_rate_limit_lose_nothing_and_duplicate_nothing(tmp_path):
    server = MastodonServer()
    server.faults = {0: "drop-after-3", 1: "429"}
    sink = MemorySink()

    async def body(base: str) -> dict[str, Any]:
        src = MastodonSource(base, "hashtag:acme", token="tok")

        async def script() -> None:
            await wait(lambda: server.connected() == 1)
            for i in range(1, 4):
                server.publish(status(i))
            await wait(lambda: len(server.connections) >= 2)  # the drop happened; the client is away
            server.publish(status(4))
            server.publish(status(5, text="acme app down"))
            await wait(lambda: server.connected() == 1 and len(server.connections) >= 3)
            server.publish(status(6))

        feeder = asyncio.create_task(script())
        summary = await run_until(src, sink, lambda: len(sink.posts) >= 6 and feeder.done(),
                                  state=StateFile(tmp_path / "m.json"))
        await feeder
        return summary

    summary = asyncio.run(_serve(server, body))
    assert ids(sink) == ["1001", "1002", "1003", "1004", "1005", "1006"]  # in order, each once
    p = sink.posts[0]
    assert (p.brand, p.channel, p.text) == ("Acme", "mastodon", "acme card declined again #1")
    assert (p.lang, p.retweets) == ("en", 1)
    assert p.created_at.isoformat() == "2026-12-01T10:00:01+00:00"
    statuses = [s for _, s, _ in server.connections]
    assert statuses[:3] == [200, 429, 200]
    t429, t_ok = server.connections[1][0], server.connections[2][0]
    assert t_ok - t429 >= 0.95, "reconnected before the Retry-After"
    # The gap (1004, 1005) came from the REST timeline, asked from the last status seen.
    assert any(c["min_id"] == "1003" for c in server.rest_calls)
    assert server.connections[2][2]["Last-Event-ID"] == "1003"
    assert all(h.get("Authorization") == "Bearer tok" for _, _, h in server.connections)
    assert all(c["auth"] == "Bearer tok" for c in server.rest_calls)
    assert summary["rate_limited"] == 1 and summary["reconnects"] >= 1 and summary["cursor"] == "1006"


def test_malformed_events_go_to_the_dlq_and_the_stream_goes_on():
    server = MastodonServer()
    sink = MemorySink()

    async def body(base: str) -> None:
        async def script() -> None:
            await wait(lambda: server.connected() == 1)
            server.send("update", "{oops not json")
            server.send("update", json.dumps({"id": "1100", "content": "<p>acme no date</p>"}))
            server.send("delete", "1001")
            server.send("status.update", json.dumps(status(1)))
            server.publish(status(7, reblog=status(2)))  # a boost: its original counts, not the boost
            server.publish(status(8, created_at="2026-13-45T00:00:00Z"))
            server.publish(status(9, text="unrelated"))  # no keyword: about no watched brand
            server.publish(status(10))

        feeder = asyncio.create_task(script())
        await run_until(MastodonSource(base, "hashtag:acme"), sink,
                        lambda: len(sink.posts) >= 1 and len(sink.dead) >= 3)
        await feeder

    asyncio.run(_serve(server, body))
    assert ids(sink) == ["1010"]
    assert [d.reason for d in sink.dead] == ["malformed_json", "malformed_event", "bad_timestamp"]
    assert {d.stage for d in sink.dead} == {"ingest"}
    assert sink.dead[0].raw == "{oops not json" and "streaming/hashtag" in sink.dead[0].source
    assert "created_at" in sink.dead[1].error


def test_a_refused_timeline_stops_with_the_reason():
    import pytest

    from stormwatch.ingest.source import SourceRefused

    server = MastodonServer()

    async def body(base: str) -> None:
        with pytest.raises(SourceRefused, match="HTTP 404"):
            await run_until(MastodonSource(base, "hashtag:nosuchtag"), MemorySink(), lambda: False,
                            timeout=20)

    asyncio.run(_serve(server, body))


async def _serve(server: MastodonServer, body: Any) -> Any:
    async with running(server.app()) as base:
        return await body(base)
