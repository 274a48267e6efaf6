"""RSS/Atom connector against a local HTTP server that speaks conditional GET (ETag,
Last-Modified, 304), answers 429 with Retry-After, cuts a response mid-body and
serves a malformed document. Feeds are written here in the real formats."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from stormwatch.ingest.rss import RssSource
from stormwatch.ingest.source import MemorySink, StateFile
from tests.connectors_util import run_until, running


def rss_item(i: int, text: str = "acme card payments failing") -> str:
    return (f"<item><guid isPermaLink='false'>news-{i}</guid><title>Story {i}</title>"
            f"<description>&lt;p&gt;{text} #{i}&lt;/p&gt;</description>"
            f"<pubDate>Tue, 01 Dec 2026 10:{i:02d}:00 GMT</pubDate>"
            f"<dc:creator>desk {i}</dc:creator></item>")


def rss(items: list[str]) -> bytes:
    return ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0' "
            "xmlns:dc='http://purl.org/dc/elements/1.1/'><channel><title>News</title>"
            + "".join(items) + "</channel></rss>").encode()


def atom(n: int) -> bytes:
    entries = "".join(
        f"<entry><id>review-{i}</id><title>1 star</title><updated>2026-12-01T11:{i:02d}:00Z</updated>"
        f"<author><name>user{i}</name></author><content type='text'>Acme app crashes on login {i}"
        "</content></entry>" for i in range(n))
    return ("<?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'><title>Reviews</title>"
            f"<id>urn:reviews</id><updated>2026-12-01T12:00:00Z</updated>{entries}</feed>").encode()


class FeedServer:
    """/news.xml (ETag) and /reviews.atom (Last-Modified), with scripted faults."""

    def __init__(self) -> None:
        self.news: list[str] = [rss_item(i) for i in range(3)]
        self.reviews = 2
        self.faults: dict[str, list[str]] = {"/news.xml": [], "/reviews.atom": []}
        self.log: list[tuple[float, str, int, dict[str, str]]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/news.xml", self.handle)
        app.router.add_get("/reviews.atom", self.handle)
        app.router.add_get("/broken.xml", self.broken)
        return app

    async def broken(self, request: web.Request) -> web.Response:
        self.log.append((time.monotonic(), request.path, 200, dict(request.headers)))
        return web.Response(body=b"<rss><channel><item><title>unclosed", content_type="application/rss+xml")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        fault = self.faults[path].pop(0) if self.faults[path] else ""
        if fault == "429":
            self.log.append((time.monotonic(), path, 429, dict(request.headers)))
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "1"})
        body = rss(self.news) if path == "/news.xml" else atom(self.reviews)
        etag = f'"v{len(self.news)}"'
        modified = f"Tue, 01 Dec 2026 12:{self.reviews:02d}:00 GMT"
        if path == "/news.xml" and request.headers.get("If-None-Match") == etag:
            self.log.append((time.monotonic(), path, 304, dict(request.headers)))
            return web.Response(status=304, headers={"ETag": etag})
        if path == "/reviews.atom" and request.headers.get("If-Modified-Since") == modified:
            self.log.append((time.monotonic(), path, 304, dict(request.headers)))
            return web.Response(status=304, headers={"Last-Modified": modified})
        self.log.append((time.monotonic(), path, 200, dict(request.headers)))
        headers = {"ETag": etag} if path == "/news.xml" else {"Last-Modified": modified}
        if fault == "cut":  # promise the whole body, send half, drop the connection
            resp = web.StreamResponse(headers={**headers, "Content-Length": str(len(body)),
                                               "Content-Type": "application/rss+xml"})
            await resp.prepare(request)
            await resp.write(body[: len(body) // 2])
            assert request.transport is not None
            request.transport.close()
            return resp
        return web.Response(body=body, headers=headers, content_type="application/xml")

    def statuses(self, path: str) -> list[int]:
        return [s for _, p, s, _ in self.log if p == path]


def ids(sink: MemorySink) -> list[str]:
    return sorted(p.id for p in sink.posts)


def run(server: FeedServer, body: Any) -> Any:
    async def main() -> Any:
        async with running(server.app()) as base:
            return await body(base)

    return asyncio.run(main())


def test_normal_flow_conditional_get_and_new_entries_only(tmp_path):
    server = FeedServer()
    sink = MemorySink()
    state = StateFile(tmp_path / "rss.json")  # the second run goes on from the first

    async def body(base: str) -> dict[str, Any]:
        src = RssSource([f"{base}/news.xml", f"{base}/reviews.atom"], channel="news", interval=0.1)
        first = await run_until(src, sink, lambda: len(sink.posts) == 5 and
                                len(server.statuses("/news.xml")) >= 3, state=state)
        server.news.append(rss_item(3))
        server.reviews = 3
        await run_until(src, sink, lambda: len(sink.posts) == 7 and len(server.statuses("/news.xml")) >= 5,
                        state=state)
        return first

    summary = run(server, body)
    assert ids(sink) == ["news-0", "news-1", "news-2", "news-3", "review-0", "review-1", "review-2"]
    news = next(p for p in sink.posts if p.id == "news-1")
    assert (news.brand, news.channel, news.text) == ("Acme", "news", "Story 1. acme card payments failing #1")
    assert news.created_at.isoformat() == "2026-12-01T10:01:00+00:00"
    assert news.author is None  # no salt set: the creator is dropped, never sent raw
    # After the first fetch the server answers 304 to the validators we send back.
    assert server.statuses("/news.xml")[:3] == [200, 304, 304]
    assert any(h.get("If-Modified-Since") for _, p, s, h in server.log if p == "/reviews.atom" and s == 304)
    assert summary["duplicates"] == 0 and not sink.dead


def test_disconnect_mid_body_then_rate_limit_lose_nothing_and_duplicate_nothing():
    server = FeedServer()
    server.faults["/news.xml"] = ["cut", "429"]
    sink = MemorySink()

    async def body(base: str) -> None:
        src = RssSource([f"{base}/news.xml"], interval=0.1, backoff_base=0.1)
        await run_until(src, sink, lambda: len(sink.posts) == 3 and len(server.statuses("/news.xml")) >= 4)

    run(server, body)
    assert ids(sink) == ["news-0", "news-1", "news-2"] and len(sink.posts) == 3
    log = [(t, s) for t, p, s, _ in server.log if p == "/news.xml"]
    assert [s for _, s in log][:3] == [200, 429, 200]  # cut (a 200 that never finished), 429, then ok
    t429 = next(t for t, s in log if s == 429)
    t_next = next(t for t, s in log if t > t429)
    assert t_next - t429 >= 0.95, "the feed was fetched again before its Retry-After"


def test_malformed_entries_and_documents_go_to_the_dlq_and_the_other_feeds_go_on():
    server = FeedServer()
    bad_date = "<item><guid>bad-date</guid><title>acme</title><pubDate>someday</pubDate></item>"
    server.news = [rss_item(0), bad_date, "<item><title>acme no id</title></item>", rss_item(1)]
    sink = MemorySink()

    async def body(base: str) -> None:
        src = RssSource([f"{base}/broken.xml", f"{base}/news.xml"], interval=0.1)
        await run_until(src, sink, lambda: len(sink.posts) == 2 and len(sink.dead) >= 3)

    run(server, body)
    assert ids(sink) == ["news-0", "news-1"]
    reasons = sorted({(d.reason, d.source.rsplit("/", 1)[1]) for d in sink.dead})
    assert reasons == [("bad_timestamp", "news.xml"), ("malformed_xml", "broken.xml"),
                       ("missing_field", "news.xml")]
    assert all(d.stage == "ingest" and d.raw for d in sink.dead)


def test_restart_resumes_with_the_saved_validators_and_sends_nothing_twice(tmp_path):
    server = FeedServer()
    state = StateFile(tmp_path / "rss.json")
    first, second = MemorySink(), MemorySink()

    async def body(base: str) -> None:
        await run_until(RssSource([f"{base}/news.xml"], interval=0.1), first, lambda: len(first.posts) == 3,
                        state=state)
        server.news.append(rss_item(3))
        # The server forgets ETags this time: the restarted connector relies on the saved ids.
        server.news[0] = server.news[0].replace("Story 0", "Story 0 (updated)")
        await run_until(RssSource([f"{base}/news.xml"], interval=0.1), second, lambda: len(second.posts) >= 1,
                        state=state)

    run(server, body)
    assert ids(first) == ["news-0", "news-1", "news-2"]
    assert ids(second) == ["news-3"]
    saved = state.load()
    assert saved["cursor"][next(iter(saved["cursor"]))]["etag"] == '"v4"'
    assert "Acme\x1fnews-2" in saved["seen"]
