"""Bluesky connector against a local websocket server speaking Jetstream: JSON commit
events with ``did``/``time_us``/``kind``, ``wantedCollections``/``wantedDids`` filters and
replay from ``cursor``; it drops connections, refuses a handshake with 429 and sends
malformed frames on cue. Events are made up here in Jetstream's format."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from stormwatch.ingest.bluesky import JetstreamSource
from stormwatch.ingest.source import MemorySink, StateFile
from tests.connectors_util import run_until, running

T0 = 1_764_583_200_000_000  # 2025-12-01T10:00:00Z in µs
DID = "did:plc:acmewatcher"


def post_event(i: int, text: str = "acme payments failing", did: str = DID, **record: Any) -> dict[str, Any]:
    return {"did": did, "time_us": T0 + i * 1_000_000, "kind": "commit",
            "commit": {"rev": f"rev{i}", "operation": "create", "collection": "app.bsky.feed.post",
                       "rkey": f"3kpost{i:03d}", "cid": f"bafy{i}",
                       "record": {"$type": "app.bsky.feed.post", "text": f"{text} {i}",
                                  "createdAt": f"2025-12-01T10:00:{i:02d}.000Z", "langs": ["en"], **record}}}


class Jetstream:
    """``/subscribe``: replays the log from ``cursor``, then streams what is published."""

    def __init__(self) -> None:
        self.log: list[dict[str, Any]] = []
        self.queues: list[asyncio.Queue[str]] = []
        self.faults: dict[int, str] = {}
        self.connections: list[tuple[float, int, dict[str, Any]]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/subscribe", self.subscribe)
        return app

    def publish(self, event: dict[str, Any]) -> None:
        self.log.append(event)
        self.send(json.dumps(event))

    def send(self, frame: str) -> None:
        for q in self.queues:
            q.put_nowait(frame)

    def wanted(self, event: dict[str, Any], query: Any) -> bool:
        dids = query.getall("wantedDids", [])
        cols = query.getall("wantedCollections", [])
        col = event.get("commit", {}).get("collection")
        return (not dids or event.get("did") in dids) and (not cols or col is None or col in cols)

    async def subscribe(self, request: web.Request) -> web.StreamResponse:
        n = len(self.connections)
        fault = self.faults.get(n, "")
        query = dict(request.query) | {"_q": request.query}
        if fault == "429":
            self.connections.append((time.monotonic(), 429, query))
            return web.Response(status=429, text="rate limited", headers={"Retry-After": "1"})
        self.connections.append((time.monotonic(), 101, query))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        q: asyncio.Queue[str] = asyncio.Queue()
        self.queues.append(q)
        sent = 0
        reader = asyncio.create_task(self.drain(ws))  # answers the client's close frame
        try:
            if "cursor" in request.query:
                for ev in self.log:
                    if ev["time_us"] >= int(request.query["cursor"]) and self.wanted(ev, request.query):
                        await ws.send_str(json.dumps(ev))
            while not ws.closed and not reader.done():
                try:
                    frame = await asyncio.wait_for(q.get(), 0.2)
                except TimeoutError:
                    continue
                try:
                    parsed = json.loads(frame)
                except json.JSONDecodeError:
                    parsed = None
                if isinstance(parsed, dict) and not self.wanted(parsed, request.query):
                    continue
                await ws.send_str(frame)
                sent += 1
                if fault.startswith("drop-after-") and sent >= int(fault.rsplit("-", 1)[1]):
                    assert request.transport is not None
                    request.transport.close()  # no close frame: a dropped connection
                    return ws
        except (ConnectionResetError, ConnectionError, RuntimeError):
            pass
        finally:
            self.queues.remove(q)
            reader.cancel()
        return ws

    @staticmethod
    async def drain(ws: web.WebSocketResponse) -> None:
        async for _ in ws:
            pass


async def wait(cond: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def rkeys(sink: MemorySink) -> list[str]:
    return [p.id.rsplit("/", 1)[1] for p in sink.posts]


def test_drop_and_429_then_resume_from_the_cursor_without_loss_or_duplicates(tmp_path):
    js = Jetstream()
    js.faults = {0: "drop-after-5", 1: "429"}
    sink = MemorySink()
    state = StateFile(tmp_path / "bsky.json")

    async def body(base: str) -> dict[str, Any]:
        src = JetstreamSource(base.replace("http", "ws") + "/subscribe", rewind_s=2.0)

        async def script() -> None:
            await wait(lambda: len(js.queues) == 1)
            js.publish({"did": DID, "time_us": T0, "kind": "identity",
                        "identity": {"did": DID, "handle": "watcher.example", "seq": 1}})
            for i in range(1, 4):
                js.publish(post_event(i))
            js.publish({"did": DID, "time_us": T0 + 3_500_000, "kind": "commit",
                        "commit": {"operation": "delete", "collection": "app.bsky.feed.post", "rkey": "x"}})
            await wait(lambda: len(js.connections) >= 2)  # dropped after 5 frames; now refused
            js.publish(post_event(4))  # while the client is away
            js.publish(post_event(5))
            await wait(lambda: len(js.queues) == 1 and len(js.connections) >= 3)
            js.publish(post_event(6))

        feeder = asyncio.create_task(script())
        summary = await run_until(src, sink, lambda: len(sink.posts) >= 6 and feeder.done(), state=state)
        await feeder
        return summary

    summary = asyncio.run(_serve(js, body))
    assert rkeys(sink) == [f"3kpost{i:03d}" for i in range(1, 7)]  # each once, in order
    p = sink.posts[0]
    assert (p.brand, p.channel, p.text, p.lang) == ("Acme", "bluesky", "acme payments failing 1", "en")
    assert p.id == f"at://{DID}/app.bsky.feed.post/3kpost001" and p.author is None  # no salt: no author
    assert [s for _, s, _ in js.connections][:3] == [101, 429, 101]
    assert js.connections[2][0] - js.connections[1][0] >= 0.95, "reconnected before the Retry-After"
    # Resumed 2 s before the last event it had (the delete at 3.5 s): 1.5 s → post 2 and 3 again.
    assert int(js.connections[2][2]["cursor"]) == T0 + 1_500_000
    assert summary["duplicates"] == 2 and summary["rate_limited"] == 1
    assert js.connections[0][2]["wantedCollections"] == "app.bsky.feed.post"
    assert state.load()["cursor"] == T0 + 6_000_000


def test_malformed_frames_go_to_the_dlq_and_the_stream_goes_on():
    js = Jetstream()
    sink = MemorySink()

    async def body(base: str) -> None:
        async def script() -> None:
            await wait(lambda: len(js.queues) == 1)
            js.send("{not json")
            js.publish({"did": DID, "time_us": T0 + 1, "kind": "commit",
                        "commit": {"operation": "create", "collection": "app.bsky.feed.post", "rkey": "r"}})
            js.publish({**post_event(3), "commit": {**post_event(3)["commit"],
                                                    "record": {"createdAt": "2025-12-01T10:00:03Z"}}})
            js.publish(post_event(4, text="about something else"))
            js.publish(post_event(5))

        feeder = asyncio.create_task(script())
        await run_until(JetstreamSource(base.replace("http", "ws") + "/subscribe"), sink,
                        lambda: len(sink.posts) >= 1 and len(sink.dead) >= 3)
        await feeder

    asyncio.run(_serve(js, body))
    assert rkeys(sink) == ["3kpost005"]  # post 4 is about no watched brand
    assert [d.reason for d in sink.dead] == ["malformed_json", "malformed_event", "missing_field"]
    assert sink.dead[0].raw == "{not json" and all(d.stage == "ingest" for d in sink.dead)


def test_wanted_dids_are_sent_to_the_server():
    js = Jetstream()
    sink = MemorySink()

    async def body(base: str) -> None:
        async def script() -> None:
            await wait(lambda: len(js.queues) == 1)
            js.publish(post_event(1, did="did:plc:other"))
            js.publish(post_event(2))

        feeder = asyncio.create_task(script())
        await run_until(JetstreamSource(base.replace("http", "ws") + "/subscribe", [DID]), sink,
                        lambda: len(sink.posts) >= 1)
        await feeder

    asyncio.run(_serve(js, body))
    assert rkeys(sink) == ["3kpost002"]
    assert js.connections[0][2]["wantedDids"] == DID


async def _serve(js: Jetstream, body: Any) -> Any:
    async with running(js.app()) as base:
        return await body(base)
