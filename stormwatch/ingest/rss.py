"""``stormwatch ingest rss URL...``: news and app-store review feeds (RSS 2.0 and Atom 1.0).

Polite polling: every ``--interval`` seconds each feed is fetched with ``If-None-Match`` /
``If-Modified-Since`` from its last answer (a 304 costs the server nothing); a 429 or a
503 with ``Retry-After`` pauses that feed for as long as asked (other feeds go on), a
failed fetch backs that feed off exponentially. Entries are deduplicated by GUID / Atom
id across polls and restarts (the state file keeps the validators and recent ids).

Parsing uses the standard library's ElementTree through ``defusedxml`` (feeds are
untrusted input: no entity expansion, no external entities); only RSS 2.0 and Atom 1.0
are needed, so ``feedparser``'s leniency is not worth another dependency.

>>> doc = b'''<rss version="2.0"><channel><title>t</title>
... <item><guid>n-1</guid><title>Acme outage</title>
... <description>&lt;p&gt;Cards &lt;b&gt;declined&lt;/b&gt;&lt;/p&gt;</description>
... <pubDate>Tue, 01 Dec 2026 10:00:00 GMT</pubDate></item>
... <item><title>no id, no date</title></item></channel></rss>'''
>>> first, second = [i.value for i in parse_feed(doc, "http://x/feed", "news")]
>>> first.fields["id"], first.fields["created_at"], first.fields["text"]
('n-1', '2026-12-01T10:00:00+00:00', 'Acme outage. Cards declined')
>>> second.reason, second.detail
('missing_field', 'entry has no guid, id or link')
"""

from __future__ import annotations

import argparse
import email.utils
import time
from collections.abc import AsyncIterator
from typing import Any
from xml.etree.ElementTree import Element, ParseError, tostring

import aiohttp
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from stormwatch.ingest.source import (
    Backoff,
    Candidate,
    Disconnected,
    Item,
    RateLimited,
    Rejected,
    SourceRefused,
    check_status,
    html_to_text,
    run_cli,
)

ATOM = "{http://www.w3.org/2005/Atom}"
DC = "{http://purl.org/dc/elements/1.1/}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
#: Largest feed document read (bytes); a bigger one is an error, not a memory problem.
MAX_FEED_BYTES = 10 * 1024 * 1024
USER_AGENT = "stormwatch-rss/0.1 (+polite polling with ETag/Last-Modified)"


def _text(el: Element | None) -> str:
    return "".join(el.itertext()).strip() if el is not None else ""


def _rfc822(value: str) -> str | None:
    """An RSS date as ISO 8601 (parse_post reads that), or None if it is not a date."""
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a year of twenty digits
        return None
    return dt.isoformat() if dt is not None else None


def _raw(el: Element) -> str:
    return tostring(el, encoding="unicode")[:4000]


def decode_rss_item(el: Element, channel: str) -> Candidate | Rejected:
    guid = _text(el.find("guid")) or _text(el.find("link"))
    if not guid:
        return Rejected("missing_field", "entry has no guid, id or link", _raw(el))
    date = _text(el.find("pubDate")) or _text(el.find(f"{DC}date"))
    created = _rfc822(date) if date and not date[:4].isdigit() else (date or None)
    if created is None:
        return Rejected("bad_timestamp" if date else "missing_field",
                        f"entry {guid!r} has {'an unreadable' if date else 'no'} pubDate", _raw(el))
    body = _text(el.find(f"{CONTENT}encoded")) or _text(el.find("description"))
    author = _text(el.find(f"{DC}creator")) or _text(el.find("author"))
    return _candidate(guid, created, channel, _text(el.find("title")), body, author)


def decode_atom_entry(el: Element, channel: str) -> Candidate | Rejected:
    link = el.find(f"{ATOM}link")
    guid = _text(el.find(f"{ATOM}id")) or (link.get("href", "") if link is not None else "")
    if not guid:
        return Rejected("missing_field", "entry has no guid, id or link", _raw(el))
    created = _text(el.find(f"{ATOM}published")) or _text(el.find(f"{ATOM}updated"))
    if not created:
        return Rejected("missing_field", f"entry {guid!r} has no published/updated date", _raw(el))
    body = _text(el.find(f"{ATOM}content")) or _text(el.find(f"{ATOM}summary"))
    author = _text(el.find(f"{ATOM}author/{ATOM}name"))
    return _candidate(guid, created, channel, _text(el.find(f"{ATOM}title")), body, author)


def _candidate(guid: str, created: str, channel: str, title: str, body: str, author: str) -> Candidate:
    title, body = html_to_text(title), html_to_text(body)
    text = f"{title}. {body}" if title and body and not body.startswith(title) else (body or title)
    fields: dict[str, Any] = {"id": guid, "created_at": created, "channel": channel, "text": text}
    if author:
        fields["author"] = author
    return Candidate(fields)


def parse_feed(body: bytes, url: str, channel: str) -> list[Item]:
    """Every entry of an RSS or Atom document, decoded (or rejected with the reason)."""
    try:
        root = fromstring(body)
    except (ParseError, DefusedXmlException) as exc:
        return [Item(Rejected("malformed_xml", f"{url}: {exc}", body[:4000]), where=url)]
    if root.tag == f"{ATOM}feed":
        return [Item(decode_atom_entry(e, channel), where=url) for e in root.iter(f"{ATOM}entry")]
    if root.tag in ("rss", "rdf", "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}RDF"):
        items = root.iter("item") if root.tag == "rss" else root.iter("{http://purl.org/rss/1.0/}item")
        return [Item(decode_rss_item(e, channel), where=url) for e in items]
    return [Item(Rejected("not_a_feed", f"{url}: root element <{root.tag}> is neither rss nor feed",
                          body[:4000]), where=url)]


class RssSource:
    """Polls feeds; cursor = ``{url: {"etag": ..., "last_modified": ...}}``."""

    name = "rss"

    def __init__(self, urls: list[str], channel: str = "news", interval: float = 300.0,
                 timeout: float = 30.0, backoff_base: float = 5.0, backoff_cap: float = 3600.0) -> None:
        if not urls:
            raise ValueError("give at least one feed URL")
        self.urls, self.channel, self.poll_interval = urls, channel, interval
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._backoff = {u: Backoff(backoff_base, backoff_cap) for u in urls}
        self.not_before: dict[str, float] = {}
        self.counts: dict[str, int] = {"fetched": 0, "not_modified": 0, "rate_limited": 0, "failed": 0}

    async def items(self, cursor: Any) -> AsyncIterator[Item]:
        feeds: dict[str, dict[str, str]] = dict(cursor or {})
        async with aiohttp.ClientSession(timeout=self.timeout, headers={"User-Agent": USER_AGENT}) as http:
            for url in self.urls:
                if time.monotonic() < self.not_before.get(url, 0.0):
                    continue  # this feed asked us to wait, or keeps failing
                try:
                    got = await self._fetch(http, url, feeds.get(url, {}))
                except RateLimited as exc:
                    self.counts["rate_limited"] += 1
                    self._pause(url, exc.retry_after)
                    continue
                except (Disconnected, aiohttp.ClientError, OSError, TimeoutError):
                    self.counts["failed"] += 1
                    self._pause(url, None)
                    continue
                self._backoff[url].reset()
                if got is None:
                    continue
                body, validators = got
                for item in parse_feed(body, url, self.channel):
                    yield item
                feeds[url] = validators
                yield Item.cursor_only(dict(feeds))  # only after its entries went to the sink

    def _pause(self, url: str, retry_after: float | None) -> None:
        self.not_before[url] = time.monotonic() + self._backoff[url].next_delay(retry_after)

    async def _fetch(self, http: aiohttp.ClientSession, url: str,
                     validators: dict[str, str]) -> tuple[bytes, dict[str, str]] | None:
        headers = {}
        if validators.get("etag"):
            headers["If-None-Match"] = validators["etag"]
        if validators.get("last_modified"):
            headers["If-Modified-Since"] = validators["last_modified"]
        async with http.get(url, headers=headers) as r:
            if r.status == 304:
                self.counts["not_modified"] += 1
                return None
            check_status(r.status, r.headers, url)
            if r.content_length is not None and r.content_length > MAX_FEED_BYTES:
                raise SourceRefused(f"{url}: feed is {r.content_length} bytes, limit {MAX_FEED_BYTES}")
            chunks, size = [], 0
            async for chunk in r.content.iter_chunked(64 * 1024):  # a cut connection raises here
                size += len(chunk)
                if size > MAX_FEED_BYTES:
                    raise SourceRefused(f"{url}: feed exceeds {MAX_FEED_BYTES} bytes")
                chunks.append(chunk)
            body = b"".join(chunks)
            self.counts["fetched"] += 1
            new = {k: v for k, v in (("etag", r.headers.get("ETag")),
                                     ("last_modified", r.headers.get("Last-Modified"))) if v}
            return body, new


def main(args: argparse.Namespace) -> int:
    return run_cli(lambda: RssSource(args.url, args.channel, args.interval), args)
