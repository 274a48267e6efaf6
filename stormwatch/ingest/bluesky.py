"""``stormwatch ingest bluesky``: Bluesky posts from a Jetstream websocket.

Connects to ``<url>?wantedCollections=app.bsky.feed.post[&wantedDids=...][&cursor=<time_us>]``
and reads JSON events: a ``commit`` with ``operation == "create"`` in
``app.bsky.feed.post`` becomes a post (id ``at://<did>/app.bsky.feed.post/<rkey>``,
author = the DID, hashed by the producer); identity/account events, deletes and
updates are skipped. Jetstream has no server-side keyword filter: ``--track`` keywords
are matched here (``--did`` filters by account on the server).

The cursor is the ``time_us`` of the last event read. On reconnect the connector asks
for ``cursor - rewind`` (Jetstream's advice, a few seconds, for a gapless replay) and
drops what it has already produced by id. A refused handshake with 429 waits for its
``Retry-After``.

>>> ev = {"did": "did:plc:abc", "time_us": 1764583200000000, "kind": "commit",
...       "commit": {"operation": "create", "collection": "app.bsky.feed.post", "rkey": "3k2a",
...                  "record": {"text": "acme is down", "createdAt": "2026-12-01T10:00:00Z",
...                             "langs": ["en"]}}}
>>> decode_event(ev).fields["id"]
'at://did:plc:abc/app.bsky.feed.post/3k2a'
>>> decode_event({**ev, "kind": "identity"}) is None
True
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from stormwatch.ingest.source import (
    Candidate,
    Disconnected,
    Item,
    Rejected,
    check_status,
    run_cli,
)
from stormwatch.model import json_error

POST = "app.bsky.feed.post"
#: Largest frame read; Jetstream events are a few kB.
MAX_FRAME = 1024 * 1024


def decode_event(event: Any) -> Candidate | Rejected | None:
    """A Jetstream event → a candidate post, a rejection, or None (not a new post)."""
    if not isinstance(event, dict):
        return Rejected("malformed_event", "an event must be a JSON object", event)
    if event.get("kind") != "commit":
        return None
    commit = event.get("commit")
    if not isinstance(commit, dict):
        return Rejected("malformed_event", "commit event without a commit object", event)
    if commit.get("collection") != POST or commit.get("operation") != "create":
        return None
    record, did, rkey = commit.get("record"), event.get("did"), commit.get("rkey")
    if not isinstance(record, dict) or not isinstance(did, str) or not isinstance(rkey, str):
        return Rejected("malformed_event", "post commit lacks did, rkey or record", event)
    langs = record.get("langs")
    fields: dict[str, Any] = {
        "id": f"at://{did}/{POST}/{rkey}",
        "created_at": record.get("createdAt"),
        "channel": "bluesky",
        "text": record.get("text"),
        "lang": langs[0] if isinstance(langs, list) and langs and isinstance(langs[0], str) else None,
        "author": did,
    }
    return Candidate(fields)


def decode_frame(data: str) -> tuple[Candidate | Rejected | None, int | None]:
    """One Jetstream text frame → (what it decodes to, its ``time_us`` cursor if it has one).

    >>> decode_frame('{"kind": "identity", "time_us": 17}')
    (None, 17)
    >>> decode_frame("[1, 2")[0].reason
    'malformed_json'
    """
    try:
        event = json.loads(data)
    except (ValueError, RecursionError) as exc:  # ValueError: also an integer of > 4300 digits
        return Rejected("malformed_json", f"jetstream frame: {json_error(exc)}", data), None
    t = event.get("time_us") if isinstance(event, dict) else None
    return decode_event(event), t if isinstance(t, int) and not isinstance(t, bool) else None


class JetstreamSource:
    """One Jetstream subscription; cursor = ``time_us`` of the last event."""

    name = "bluesky"
    poll_interval = None

    def __init__(self, url: str, dids: list[str] | None = None, rewind_s: float = 5.0,
                 heartbeat: float = 30.0) -> None:
        if urlsplit(url).scheme not in ("ws", "wss", "http", "https"):
            raise ValueError(f"--url must be a ws(s):// URL, got {url!r}")
        self.url, self.dids, self.rewind_us = url, list(dids or []), int(rewind_s * 1_000_000)
        self.heartbeat = heartbeat

    def subscribe_url(self, cursor: int | None) -> str:
        """The URL to connect to, resuming a little before ``cursor``.

        >>> JetstreamSource("ws://h/subscribe", ["did:plc:x"], 2.0).subscribe_url(10_000_000)
        'ws://h/subscribe?wantedCollections=app.bsky.feed.post&wantedDids=did%3Aplc%3Ax&cursor=8000000'
        """
        params: list[tuple[str, str]] = [("wantedCollections", POST)]
        params += [("wantedDids", d) for d in self.dids]
        if cursor:
            params.append(("cursor", str(max(0, int(cursor) - self.rewind_us))))
        return f"{self.url}{'&' if '?' in self.url else '?'}{urlencode(params)}"

    async def items(self, cursor: Any) -> AsyncIterator[Item]:
        last = cursor
        async with aiohttp.ClientSession() as http:
            try:
                ws = await http.ws_connect(self.subscribe_url(cursor), heartbeat=self.heartbeat,
                                           max_msg_size=MAX_FRAME)
            except aiohttp.WSServerHandshakeError as exc:
                check_status(exc.status, exc.headers or {}, "jetstream handshake")
                raise Disconnected(f"handshake failed: {exc.status}") from exc
            async with ws:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.ERROR:
                        raise Disconnected(f"websocket error: {ws.exception()!r}")
                    if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                        continue
                    data = msg.data if isinstance(msg.data, str) else msg.data.decode("utf-8", "replace")
                    value, t = decode_frame(data)
                    if t is not None:
                        last = max(t, last or 0)
                    unreadable = isinstance(value, Rejected) and value.reason == "malformed_json"
                    yield Item(value, last, self.url if unreadable else f"{self.url}@{t}")
            raise Disconnected(f"the server closed the websocket ({ws.close_code})")


def main(args: argparse.Namespace) -> int:
    return run_cli(lambda: JetstreamSource(args.url, args.did, args.rewind), args)
