"""What every live connector shares, written once: backoff, rate limits, cursors, dedupe,
brand assignment, and the loop that turns a source's events into posts on ``posts.raw``.

A connector is two things:

* a pure **decoder**: one source event → a :class:`Candidate` (a post without its brand)
  or a :class:`Rejected` (reason + detail; it goes to ``posts.dlq`` and the stream goes on);
* a :class:`Source`: an async generator of :class:`Item` (a decoded event and the cursor
  *after* it) that raises :class:`RateLimited` or :class:`Disconnected` when the server
  says so. It knows nothing about Kafka, retries or state files.

:func:`run_source` does the rest: it reconnects with :class:`Backoff` (honouring a
``Retry-After``), drops ids it has already produced (:class:`Dedupe`, bounded), assigns
brands (:func:`assign_brands`), hands posts to a sink (``PostProducer`` in production;
:class:`MemorySink` in tests) and saves the cursor and the recent ids to a
:class:`StateFile` only after the sink has confirmed delivery, so a restarted
connector resumes where the last *delivered* post was: no loss, and the ids it had
sent remember what not to send again.

>>> b = Backoff(base=1.0, cap=8.0, jitter=0.0)
>>> [b.next_delay() for _ in range(5)]
[1.0, 2.0, 4.0, 8.0, 8.0]
>>> b.next_delay(retry_after=30.0)
30.0
>>> d = Dedupe(capacity=2)
>>> [d.add(x) for x in ["a", "b", "a", "c", "b"]]
[True, True, False, True, True]
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import html.parser
import json
import logging
import os
import random
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from stormwatch.config import Settings
from stormwatch.model import DeadLetter, Post
from stormwatch.pipeline import dead_letter

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- what decoders return

@dataclass(frozen=True, slots=True)
class Candidate:
    """A decoded post that does not know its brand yet (live sources never do).

    ``fields`` is what :func:`stormwatch.model.parse_post` reads (``id``, ``created_at``,
    ``channel``, ``text``, optionally ``lang``, ``author``, ``retweets``); ``brand`` is
    added by :func:`assign_brands`, unless the source already set one.
    """

    fields: Mapping[str, Any]

    @property
    def id(self) -> str:
        return str(self.fields.get("id", ""))


@dataclass(frozen=True, slots=True)
class Rejected:
    """A source event that is not a post we can use, and why (it goes to the DLQ)."""

    reason: str
    detail: str
    raw: Any


@dataclass(frozen=True, slots=True)
class Item:
    """One event from a source: a candidate, a rejection, or ``None`` for an event that is
    simply not a post (a delete, a like, a heartbeat: skipped, not an error), with the
    source's cursor *after* this event and where it came from (for dead letters)."""

    value: Candidate | Rejected | None
    cursor: Any = None
    where: str = ""

    @classmethod
    def cursor_only(cls, cursor: Any) -> Item:
        """No event, only a new position (a feed's ETag after its items)."""
        return cls(None, cursor, "")

    @property
    def is_cursor_only(self) -> bool:
        return self.value is None and not self.where


# ---------------------------------------------------------------- errors a source raises

class Disconnected(Exception):
    """The connection dropped or failed; reconnect after a backoff."""


class RateLimited(Exception):
    """The server said 429 (or 503 with Retry-After); wait at least ``retry_after`` s."""

    def __init__(self, retry_after: float | None, detail: str = "") -> None:
        super().__init__(f"rate limited ({detail or 'no detail'}); retry after {retry_after} s")
        self.retry_after = retry_after


class SourceRefused(Exception):
    """The server refused for good (bad token, unknown list): no retry helps; stop and say why."""


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from now, or None.

    >>> retry_after_seconds("7")
    7.0
    >>> retry_after_seconds("Thu, 01 Jan 1970 00:01:40 GMT", now=40.0)
    60.0
    >>> retry_after_seconds("soon") is None
    True
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        stamp = when.timestamp()
    except (TypeError, ValueError, OverflowError):  # OverflowError: a year of twenty digits
        return None
    now = time.time() if now is None else now
    return max(0.0, stamp - now)


def check_status(status: int, headers: Mapping[str, str], what: str) -> None:
    """Turn an HTTP status into what the loop should do: nothing (2xx/304), wait
    (429, or 503 with Retry-After), reconnect (5xx), or stop (other 4xx: no retry helps).

    >>> check_status(429, {"Retry-After": "3"}, "feed")
    Traceback (most recent call last):
    ...
    stormwatch.ingest.source.RateLimited: rate limited (feed: HTTP 429); retry after 3.0 s
    >>> check_status(401, {}, "stream")
    Traceback (most recent call last):
    ...
    stormwatch.ingest.source.SourceRefused: stream: HTTP 401 (check the token)
    """
    if status < 400:
        return
    retry = retry_after_seconds(headers.get("Retry-After"))
    if status == 429 or (status == 503 and retry is not None):
        raise RateLimited(retry, f"{what}: HTTP {status}")
    if status >= 500:
        raise Disconnected(f"{what}: HTTP {status}")
    hint = " (check the token)" if status in (401, 403) else ""
    raise SourceRefused(f"{what}: HTTP {status}{hint}")


# ---------------------------------------------------------------- pure helpers

class _Text(html.parser.HTMLParser):
    BREAKS = frozenset({"p", "br", "div", "li", "blockquote", "h1", "h2", "h3", "tr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BREAKS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment (Mastodon ``content``, RSS ``description``).

    >>> html_to_text('<p>Card <b>declined</b> again&amp;again</p><p>#AcmeDown</p>')
    'Card declined again&again #AcmeDown'
    >>> html_to_text('<p>down <![CT again</p>')
    'down <![CT again'
    """
    if "<" not in markup and "&" not in markup:
        return " ".join(markup.split())
    p = _Text()
    try:
        p.feed(markup)
        p.close()
    except AssertionError:  # the standard parser on a malformed "<![" section: read it as text
        p = _Text()
        p.feed(markup.replace("<!", "&lt;!"))
        p.close()
    return " ".join("".join(p.parts).split())


class Backoff:
    """Exponential backoff with full jitter, capped; ``reset()`` after a good connection.

    A server's ``Retry-After`` wins when it asks for longer than the backoff would wait.
    """

    def __init__(self, base: float = 1.0, cap: float = 60.0, jitter: float = 0.5,
                 rng: random.Random | None = None) -> None:
        self.base, self.cap, self.jitter = base, cap, jitter
        self.rng = rng or random.Random()
        self.attempt = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        delay = min(self.cap, self.base * 2 ** self.attempt)
        self.attempt += 1
        if self.jitter:
            delay *= 1 - self.jitter * self.rng.random()
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def reset(self) -> None:
        self.attempt = 0


class Dedupe:
    """Ids seen recently, at most ``capacity`` of them (the oldest are forgotten first).

    ``add(id)`` is True for an id not seen before (and remembers it), False for a repeat.
    """

    def __init__(self, capacity: int = 100_000, ids: Iterable[str] = ()) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        for i in ids:
            self.add(i)

    def add(self, key: str) -> bool:
        if key in self._ids:
            self._ids.move_to_end(key)
            return False
        self._ids[key] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def discard(self, key: str) -> None:
        self._ids.pop(key, None)

    def __len__(self) -> int:
        return len(self._ids)

    def recent(self, n: int) -> list[str]:
        """The ``n`` most recent ids, oldest first (what a state file keeps)."""
        return list(self._ids)[-n:] if n else []


@dataclass(frozen=True)
class BrandMatcher:
    """Which brands a live post is about: ``tracks`` maps a brand to its keywords.

    A brand with no keywords takes every post (one ``--brand`` and no ``--track``).
    Matching is case-insensitive on words and phrases in the text.

    >>> m = BrandMatcher.from_cli(["Acme Bank", "Globex"], ["acme,#acmedown", "globex"])
    >>> m.brands_for("Is #AcmeDown again? globex works")
    ['Acme Bank', 'Globex']
    >>> m.brands_for("nothing here")
    []
    >>> BrandMatcher.from_cli(["Acme"], []).brands_for("anything")
    ['Acme']
    """

    tracks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_cli(cls, brands: Sequence[str], tracks: Sequence[str]) -> BrandMatcher:
        """``--brand NAME`` (repeatable) and ``--track kw1,kw2`` (the i-th for the i-th brand)."""
        if len(tracks) > len(brands):
            raise ValueError(f"{len(tracks)} --track options for {len(brands)} --brand options: "
                             "give one --brand per --track")
        out: dict[str, tuple[str, ...]] = {}
        for i, brand in enumerate(brands):
            if not brand.strip():
                raise ValueError("--brand must not be empty")
            kws = tracks[i] if i < len(tracks) else ""
            out[brand.strip()] = tuple(k.strip().lower() for k in kws.split(",") if k.strip())
        return cls(out)

    @property
    def keywords(self) -> list[str]:
        """Every keyword of every brand (sources that can filter server-side use them)."""
        return sorted({k for kws in self.tracks.values() for k in kws})

    def brands_for(self, text: str) -> list[str]:
        low = text.lower()
        return [b for b, kws in self.tracks.items() if not kws or any(k in low for k in kws)]


def assign_brands(candidate: Candidate, matcher: BrandMatcher) -> list[dict[str, Any]]:
    """The one place a live post gets its brand(s): one record per brand it is about.

    A candidate that carries a brand already (a webhook client that knows it) keeps it.
    The lead switches this to the watch config's brand queries at merge time.

    >>> c = Candidate({"id": "1", "text": "acme is down"})
    >>> [r["brand"] for r in assign_brands(c, BrandMatcher({"Acme": ("acme",), "B": ("bee",)}))]
    ['Acme']
    """
    if candidate.fields.get("brand") or not matcher.tracks:
        return [dict(candidate.fields)]  # without a brand, parse_post says it is missing
    text = candidate.fields.get("text")
    if not isinstance(text, str):
        return [dict(candidate.fields)]  # no text: parse_post rejects it with the reason
    return [{**candidate.fields, "brand": b} for b in matcher.brands_for(text)]


class StateFile:
    """A connector's resume state in a small JSON file, replaced atomically.

    Holds the source's cursor and the most recent ids produced (so a restart that
    re-reads a little of the source sends nothing twice). No path: kept in memory only.
    """

    def __init__(self, path: str | Path | None, keep_ids: int = 5000) -> None:
        self.path = Path(path) if path else None
        self.keep_ids = keep_ids

    def load(self) -> dict[str, Any]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"state file {self.path} is unreadable ({exc}); "
                             "delete it to start from the live position") from None
        if not isinstance(data, dict):
            raise ValueError(f"state file {self.path} does not hold a JSON object")
        return data

    def save(self, cursor: Any, dedupe: Dedupe) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"cursor": cursor, "seen": dedupe.recent(self.keep_ids)}),
                       encoding="utf-8")
        os.replace(tmp, self.path)


# ---------------------------------------------------------------- sinks and sources

class Sink(Protocol):
    """What the loop hands posts to: :class:`~stormwatch.ingest.producer.PostProducer`'s interface."""

    def prepare(self, raw: Any, where: str = "") -> Post | DeadLetter: ...
    async def send_post(self, post: Post) -> None: ...
    async def send_dead(self, dl: DeadLetter) -> None: ...
    async def flush(self) -> None: ...


class MemorySink:
    """A sink that keeps what it is given (tests, ``--dry-run``); validation is the producer's own."""

    def __init__(self, settings: Settings | None = None, echo: bool = False) -> None:
        from stormwatch.ingest.producer import PostProducer

        self._validator = PostProducer(settings or Settings())  # prepare() needs no broker
        self.echo = echo
        self.posts: list[Post] = []
        self.dead: list[DeadLetter] = []
        self.flushes = 0

    def prepare(self, raw: Any, where: str = "") -> Post | DeadLetter:
        return self._validator.prepare(raw, where)

    async def send_post(self, post: Post) -> None:
        self.posts.append(post)
        if self.echo:
            print(json.dumps(post.to_dict(), ensure_ascii=False), flush=True)

    async def send_dead(self, dl: DeadLetter) -> None:
        self.dead.append(dl)
        if self.echo:
            print(json.dumps({"dead_letter": dl.to_dict()}, ensure_ascii=False), flush=True)

    async def flush(self) -> None:
        self.flushes += 1


class Source(Protocol):
    """A live source: ``items(cursor)`` connects once and yields until the connection ends."""

    name: str
    #: Seconds between polls for a polling source (RSS); None for a stream.
    poll_interval: float | None

    def items(self, cursor: Any) -> AsyncIterator[Item]: ...


# ---------------------------------------------------------------- the loop

@dataclass
class Outcome:
    """What became of one decoded event (the webhook reports it per record)."""

    keys: list[str] = field(default_factory=list)  # dedupe keys of the posts sent
    dead: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0
    unmatched: bool = False


@dataclass
class Ingest:
    """Candidates and rejections → sink, with dedupe and brands (the loop's middle)."""

    sink: Sink
    matcher: BrandMatcher
    source: str
    dedupe: Dedupe = field(default_factory=Dedupe)
    counts: Counter[str] = field(default_factory=Counter)

    async def handle(self, value: Candidate | Rejected | None, where: str) -> Outcome:
        out = Outcome()
        if value is None:
            self.counts["skipped"] += 1
            return out
        if isinstance(value, Rejected):
            out.dead.append(dead_letter("ingest", value.raw, value.reason, value.detail,
                                        where or self.source))
        else:
            records = assign_brands(value, self.matcher)
            out.unmatched = not records
            self.counts["unmatched"] += out.unmatched
            for rec in records:
                key = f"{rec.get('brand')}\x1f{rec.get('id')}"
                if key in self.dedupe:
                    out.duplicates += 1
                    continue
                item = self.sink.prepare(rec, where or self.source)
                if isinstance(item, DeadLetter):
                    out.dead.append(item)
                    continue
                await self.sink.send_post(item)
                self.dedupe.add(key)
                out.keys.append(key)
        for dl in out.dead:
            await self.sink.send_dead(dl)
        self.counts["posts"] += len(out.keys)
        self.counts["duplicates"] += out.duplicates
        self.counts["dead_lettered"] += len(out.dead)
        return out

    def forget(self, keys: Iterable[str]) -> None:
        """Undo the dedupe memory of posts whose delivery failed (the client will resend)."""
        for key in keys:
            self.dedupe.discard(key)


async def run_source(source: Source, sink: Sink, matcher: BrandMatcher, state: StateFile | None = None,
                     backoff: Backoff | None = None, stop: asyncio.Event | None = None,
                     checkpoint_every: int = 100, max_posts: int | None = None,
                     dedupe_capacity: int = 100_000) -> dict[str, Any]:
    """Run ``source`` until ``stop`` is set (or ``max_posts`` posts were produced).

    Reconnects after a disconnect or a rate limit; a :class:`SourceRefused` ends the
    run (re-raised). The cursor is saved after each confirmed flush, every
    ``checkpoint_every`` items and whenever the connection ends.
    """
    state = state or StateFile(None)
    backoff = backoff or Backoff()
    stop = stop or asyncio.Event()
    saved = state.load()
    cursor = saved.get("cursor")
    ingest = Ingest(sink, matcher, source.name, Dedupe(dedupe_capacity, saved.get("seen", ())))
    counts = ingest.counts

    async def checkpoint() -> None:
        await sink.flush()  # the cursor moves only past delivered posts
        state.save(cursor, ingest.dedupe)

    def done() -> bool:
        return stop.is_set() or (max_posts is not None and counts["posts"] >= max_posts)

    while not done():
        delay: float
        since_checkpoint = 0
        try:
            async for item in _until(source.items(cursor), stop):
                backoff.reset()  # data flows again
                if not item.is_cursor_only:
                    await ingest.handle(item.value, item.where)
                if item.cursor is not None:
                    cursor = item.cursor
                since_checkpoint += 1
                if since_checkpoint >= checkpoint_every:
                    await checkpoint()
                    since_checkpoint = 0
                if done():
                    break
        except RateLimited as exc:
            counts["rate_limited"] += 1
            delay = backoff.next_delay(exc.retry_after)
            log.warning("%s: %s; waiting %.1f s", source.name, exc, delay)
        except SourceRefused:
            await checkpoint()
            raise
        except (TimeoutError, Disconnected, OSError, aiohttp.ClientError) as exc:
            counts["reconnects"] += 1
            delay = backoff.next_delay()
            log.warning("%s: connection lost (%s); reconnecting in %.1f s", source.name, exc, delay)
        else:
            if source.poll_interval is not None:
                delay = source.poll_interval
            else:  # a stream that ended cleanly is a disconnect too
                counts["reconnects"] += 1
                delay = backoff.next_delay()
        await checkpoint()
        if done():
            break
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
    await checkpoint()
    return {"source": source.name, "cursor": cursor, **{k: counts[k] for k in sorted(counts)}}


async def _until(items: AsyncIterator[Item], stop: asyncio.Event) -> AsyncIterator[Item]:
    """``items`` until ``stop`` is set, even while the source waits for its next event."""
    it = aiter(items)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            nxt = asyncio.ensure_future(anext(it))
            finished, _ = await asyncio.wait({nxt, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if nxt not in finished:
                nxt.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await nxt
                return
            try:
                yield nxt.result()
            except StopAsyncIteration:
                return
    finally:
        stopper.cancel()
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


def run_cli(make_source: Callable[[], Source], args: Any) -> int:
    """``stormwatch ingest <source>``: build the source from the CLI, run it until SIGINT/SIGTERM.

    Common options (``cli.live_options``): ``--brand``/``--track``, ``--state``,
    ``--max-posts``, ``--dry-run`` (posts as JSON lines on stdout, no Kafka).
    """
    import signal
    import sys

    name = args.source
    try:
        if not args.brand:
            raise ValueError("give --brand NAME (and --track kw1,kw2 to keep only posts about it)")
        matcher = BrandMatcher.from_cli(args.brand, args.track or [])
        settings = Settings.from_env()
        source = make_source()
        state = StateFile(args.state)
        state.load()  # an unreadable state file is reported now, not after connecting
    except ValueError as exc:
        print(f"stormwatch ingest {name}: {exc}", file=sys.stderr)
        return 2

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.dry_run:
            return await run_source(source, MemorySink(settings, echo=True), matcher, state, stop=stop,
                                    max_posts=args.max_posts)
        from stormwatch.app.topics import ensure_topics
        from stormwatch.ingest.producer import PostProducer

        await ensure_topics(settings)
        async with PostProducer(settings, source=name) as producer:
            return await run_source(source, producer, matcher, state, stop=stop, max_posts=args.max_posts)

    try:
        summary = asyncio.run(main())
    except SourceRefused as exc:
        print(f"stormwatch ingest {name}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, sort_keys=True, default=str), file=sys.stderr if args.dry_run else sys.stdout)
    return 0
