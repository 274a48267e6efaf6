"""``stormwatch ingest mastodon``: a Mastodon streaming timeline (server-sent events).

Streams ``GET /api/v1/streaming/{public,public/local,hashtag?tag=,list?list=}``: ``update``
events carry a status (JSON) and become posts; ``delete``, ``status.update`` and the
``:`` heartbeats are skipped. The token is optional (``STORMWATCH_MASTODON_TOKEN`` or
``_FILE``; a list timeline needs one) and goes in an ``Authorization`` header only.

Mastodon's stream does not replay what was missed while disconnected, so on every
reconnect with a cursor (the last status id) the connector first opens the stream, then
fills the gap from the matching REST timeline (``/api/v1/timelines/...?min_id=<cursor>``,
page by page) and only then reads the stream: nothing falls between the two, and what
both deliver is dropped by the id dedupe. ``Last-Event-ID`` is sent too, for servers
and proxies that honour it.

>>> p = SSEParser()
>>> [p.feed(line) for line in [":thump", "event: update", 'data: {"id": "1"}', ""]]
[None, None, None, ('update', '{"id": "1"}', None)]
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from stormwatch.config import _secret
from stormwatch.ingest.source import (
    Candidate,
    Disconnected,
    Item,
    Rejected,
    check_status,
    html_to_text,
    run_cli,
)
from stormwatch.model import json_error

#: Statuses per page when filling a gap from the REST timeline (Mastodon's maximum is 40).
PAGE = 40
#: Most pages fetched to fill one gap; older posts than that are left out (and counted).
MAX_PAGES = 25


class SSEParser:
    """Server-sent events, line by line: returns ``(event, data, id)`` at each blank line."""

    def __init__(self) -> None:
        self._event, self._data, self._id = "message", [], None  # type: tuple[str, list[str], str | None]

    def feed(self, line: str) -> tuple[str, str, str | None] | None:
        if not line:
            if not self._data:
                self._event = "message"
                return None
            out = (self._event, "\n".join(self._data), self._id)
            self._event, self._data = "message", []
            return out
        if line.startswith(":"):
            return None  # a comment: Mastodon's heartbeat
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None


def decode_status(status: Any, channel: str = "mastodon") -> Candidate | Rejected | None:
    """A Mastodon status → a candidate post; a boost → None (its original counts).

    >>> decode_status({"id": "109", "uri": "https://m.example/users/a/statuses/109",
    ...   "created_at": "2026-12-01T10:00:00.000Z", "content": "<p>acme <b>down</b></p>",
    ...   "language": "en", "reblogs_count": 2, "account": {"acct": "a@m.example"}}).fields["text"]
    'acme down'
    >>> decode_status({"id": "1"}).reason
    'malformed_event'
    """
    if not isinstance(status, dict):
        return Rejected("malformed_event", "a status must be a JSON object", status)
    if status.get("reblog"):
        return None
    missing = [k for k in ("id", "created_at", "content") if not status.get(k) and status.get(k) != ""]
    if missing:
        return Rejected("malformed_event", f"status lacks {', '.join(missing)}", status)
    text = html_to_text(str(status["content"]))
    if status.get("spoiler_text"):
        text = f"{html_to_text(str(status['spoiler_text']))}: {text}"
    account = status.get("account") if isinstance(status.get("account"), dict) else {}
    fields: dict[str, Any] = {
        # The uri is the same on every instance that sees the status: one post, one id.
        "id": str(status.get("uri") or status["id"]),
        "created_at": status["created_at"],
        "channel": channel,
        "text": text,
        "lang": status.get("language") if isinstance(status.get("language"), str) else None,
        "retweets": status.get("reblogs_count") if isinstance(status.get("reblogs_count"), int) else 0,
    }
    if account.get("acct") or account.get("id"):
        fields["author"] = str(account.get("url") or account.get("acct") or account["id"])
    return Candidate(fields)


def decode_sse_event(kind: str, data: str) -> tuple[Candidate | Rejected | None, str | None]:
    """One server-sent event → (what it decodes to, the status id it moves the cursor to).

    Only ``update`` events carry new statuses; every other kind is ``(None, None)``.

    >>> decode_sse_event("delete", "109")
    (None, None)
    >>> decode_sse_event("update", '{"id": 1')[0].reason
    'malformed_json'
    >>> decode_sse_event("update", '{"id": "7", "created_at": "2026-12-01T10:00:00Z", "content": "hi"}')[1]
    '7'
    """
    if kind != "update":
        return None, None
    try:
        status = json.loads(data)
    except (ValueError, RecursionError) as exc:  # ValueError: also an integer of > 4300 digits
        return Rejected("malformed_json", f"update event: {json_error(exc)}", data), None
    status_id = str(status["id"]) if isinstance(status, dict) and status.get("id") else None
    return decode_status(status), status_id


def timeline_paths(timeline: str) -> tuple[str, str]:
    """(streaming path, REST timeline path) of a timeline spec.

    >>> timeline_paths("hashtag:AcmeDown")
    ('/api/v1/streaming/hashtag?tag=AcmeDown', '/api/v1/timelines/tag/AcmeDown?')
    >>> timeline_paths("cats")
    Traceback (most recent call last):
    ...
    ValueError: --timeline must be public, public:local, hashtag:TAG or list:ID, got 'cats'
    """
    kind, _, arg = timeline.partition(":")
    if kind == "public" and not arg:
        return "/api/v1/streaming/public", "/api/v1/timelines/public?"
    if kind == "public" and arg == "local":
        return "/api/v1/streaming/public/local", "/api/v1/timelines/public?local=true&"
    if kind == "hashtag" and arg:
        tag = quote(arg.lstrip("#"), safe="")
        return f"/api/v1/streaming/hashtag?tag={tag}", f"/api/v1/timelines/tag/{tag}?"
    if kind == "list" and arg:
        lid = quote(arg, safe="")
        return f"/api/v1/streaming/list?list={lid}", f"/api/v1/timelines/list/{lid}?"
    raise ValueError(f"--timeline must be public, public:local, hashtag:TAG or list:ID, got {timeline!r}")


def _sort_key(status_id: str) -> tuple[int, str]:
    return (int(status_id), "") if status_id.isdigit() else (0, status_id)


class MastodonSource:
    """One streaming timeline of one instance; cursor = the last status id seen."""

    name = "mastodon"
    poll_interval = None

    def __init__(self, server: str, timeline: str = "public", token: str = "",
                 read_timeout: float = 90.0) -> None:
        if urlsplit(server).scheme not in ("http", "https"):
            raise ValueError(f"--server must be an http(s) URL, got {server!r}")
        self.base = server.rstrip("/")
        self.stream_path, self.rest_path = timeline_paths(timeline)
        self.token = token
        # Mastodon sends a heartbeat every ~15 s: a silent minute and a half means a dead link.
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=read_timeout)
        self.gap_truncated = 0

    def _headers(self) -> dict[str, str]:
        h = {"User-Agent": "stormwatch-mastodon/0.1"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    async def items(self, cursor: Any) -> AsyncIterator[Item]:
        headers = {**self._headers(), "Accept": "text/event-stream"}
        if cursor:
            headers["Last-Event-ID"] = str(cursor)
        async with aiohttp.ClientSession(timeout=self.timeout) as http, \
                http.get(self.base + self.stream_path, headers=headers) as stream:
            check_status(stream.status, stream.headers, "streaming API")
            if cursor:
                async for item in self._fill_gap(http, str(cursor)):
                    yield item
            parser = SSEParser()
            last = cursor
            while True:
                try:
                    raw = await stream.content.readline()
                except aiohttp.ClientPayloadError as exc:
                    raise Disconnected(f"stream cut: {exc}") from exc
                if not raw:
                    raise Disconnected("the server closed the stream")
                event = parser.feed(raw.decode("utf-8", "replace").rstrip("\r\n"))
                if event is None:
                    continue
                kind, data, _ = event
                where = f"{self.base}{self.stream_path}"
                value, status_id = decode_sse_event(kind, data)
                if kind != "update" or (isinstance(value, Rejected) and value.reason == "malformed_json"):
                    yield Item(value, last, where)  # delete, status.update, notification: not new posts
                    continue
                if status_id is not None:
                    last = status_id
                yield Item(value, last, f"{where}#{last}")

    async def _fill_gap(self, http: aiohttp.ClientSession, since: str) -> AsyncIterator[Item]:
        """Statuses newer than ``since`` from the REST timeline, oldest first."""
        for _ in range(MAX_PAGES):
            url = f"{self.base}{self.rest_path}min_id={quote(since, safe='')}&limit={PAGE}"
            async with http.get(url, headers=self._headers()) as r:
                check_status(r.status, r.headers, "timeline API")
                page = await r.json(content_type=None)
            if not isinstance(page, list):
                yield Item(Rejected("malformed_event", "timeline page is not a JSON array", page), since, url)
                return
            good = [s for s in page if isinstance(s, dict) and isinstance(s.get("id"), str)]
            for status in sorted(good, key=lambda s: _sort_key(s["id"])):
                since = status["id"]
                yield Item(decode_status(status), since, f"{url}#{since}")
            if len(page) < PAGE:
                return
        self.gap_truncated += 1


def main(args: argparse.Namespace) -> int:
    token = _secret(os.environ, "STORMWATCH_MASTODON_TOKEN")
    return run_cli(lambda: MastodonSource(args.server, args.timeline, token), args)
