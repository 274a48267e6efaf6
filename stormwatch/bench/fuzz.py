"""``stormwatch bench fuzz``: coverage-guided fuzzing (atheris) of the code that reads hostile input.

Each target is a function of raw bytes that must either accept the input or reject it
with the project's own error carrying a reason and a message; any other exception is a
crash, and atheris stops there and prints the input. The contracts are plain functions,
so the property tests (``tests/test_hostile_input.py``) check exactly the same thing on
every CI build, and the fuzzer pushes the same check to millions of inputs::

    stormwatch bench fuzz --target post --runs 1000000

The run starts from a small seed corpus of valid and nearly valid records (written to a
temporary folder) so that mutations reach the field checks, not only the JSON parser.
At the end it prints one JSON line: inputs run, accepted, rejected per reason, seconds.

>>> check_post(b'{"id": "1", "created_at": 1424653323, "channel": "tw", "brand": "A", "text": "hi"}')
'accepted'
>>> check_post(b'{"id": "1"}')
'missing_field'
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from stormwatch.ingest.bluesky import decode_frame
from stormwatch.ingest.mastodon import SSEParser, decode_sse_event
from stormwatch.ingest.rss import parse_feed
from stormwatch.ingest.source import BrandMatcher, Candidate, Rejected, assign_brands
from stormwatch.ingest.webhook import Refusal, WebhookConfig, decode_body, to_candidate
from stormwatch.model import REASONS, InvalidRecord, ScoredPost, Sentiment, dumps, parse_post
from stormwatch.pipeline import dead_letter
from stormwatch.watch import WatchConfigError, parse_watch

#: A fixed clock for the parser, so "more than a day ahead" does not depend on the day.
NOW = 1.8e9


def check_post(raw: bytes | str | dict) -> str:
    """The post parser's contract on one input; returns ``accepted`` or the reason code.

    Accepted posts must serialise as UTF-8 JSON (as every stage writes them) and parse
    back to the same post; rejections must carry a known reason and a message.
    """
    try:
        post = parse_post(raw, now=NOW)
    except InvalidRecord as exc:
        if exc.reason not in REASONS or not exc.detail or not str(exc).startswith(exc.reason + ": "):
            raise AssertionError(f"rejection without a known reason and message: {exc!r}") from exc
        return exc.reason
    wire = dumps(ScoredPost(post, Sentiment("neutral", 0.5, 0.1, "fuzz")))
    wire.decode("utf-8")
    again = parse_post(json.loads(wire)["post"], now=NOW)
    if again != post:
        raise AssertionError(f"post does not round-trip: {post!r} != {again!r}")
    return "accepted"


# ---------------------------------------------------------------- the watch-config loader

_WATCH_REASONS = (("not valid YAML", "yaml_syntax"), ("not UTF-8", "bad_encoding"),
                  ("bytes, limit", "too_large"), ("nested deeper", "too_deep"),
                  ("values (aliases", "alias_bomb"), ("unknown", "unknown_field"),
                  ("no brands", "no_brands"), ("no query", "no_query"), ("cannot read", "unreadable_value"))
_WATCH_MESSAGE = re.compile(r"fuzz\.yaml:[1-9][0-9]*: \S.*", re.S)


def check_watch(raw: bytes | str) -> str:
    """The watch-config loader's contract: a valid config, or ``WatchConfigError`` saying
    ``file:line: field: what`` (returns ``accepted`` or a coarse reason for the counts).

    >>> check_watch(b"brands: {Acme: {keywords: [acme]}}")
    'accepted'
    >>> check_watch(b"brands: [")
    'yaml_syntax'
    """
    try:
        parse_watch(raw, "fuzz.yaml")
    except WatchConfigError as exc:
        msg = str(exc)
        if not _WATCH_MESSAGE.fullmatch(msg):
            raise AssertionError(f"rejection without file:line: message: {msg!r}") from exc
        return next((code for part, code in _WATCH_REASONS if part in msg), "bad_value")
    return "accepted"


# ---------------------------------------------------------------- the connectors' decoders

#: Reasons a connector's decoder gives, besides the post parser's own.
CONNECTOR_REASONS = REASONS | {"malformed_event", "malformed_xml", "not_a_feed"}
_MATCHER = BrandMatcher.from_cli(["Acme"], [])  # every post is about Acme: all of it reaches parse_post


def _check_decoded(value: Candidate | Rejected | None) -> str:
    """One decoder result: a candidate the post parser accepts or rejects with a reason,
    a rejection with a known reason whose dead letter can be written, or None (skipped)."""
    if value is None:
        return "skipped"
    if isinstance(value, Rejected):
        if value.reason not in CONNECTOR_REASONS or not value.detail:
            raise AssertionError(f"rejection without a known reason and message: {value!r}")
        dumps(dead_letter("ingest", value.raw, value.reason, value.detail, "fuzz")).decode("utf-8")
        return value.reason
    if not isinstance(value, Candidate):
        raise AssertionError(f"a decoder returned {type(value).__name__}")
    outcomes = [check_post(rec) for rec in assign_brands(value, _MATCHER)]
    return outcomes[0] if outcomes else "unmatched"


def _worst(outcomes: list[str]) -> str:
    """One count per input: the first rejection among its records, else ``accepted``."""
    rejected = [o for o in outcomes if o not in ("accepted", "skipped")]
    return rejected[0] if rejected else ("accepted" if "accepted" in outcomes else "skipped")


_WEBHOOK = WebhookConfig(anonymous=True, max_records=100)


def check_webhook(raw: bytes) -> str:
    """The webhook's body: a 4xx with a code and a message, or records that each become a
    post or a reasoned rejection (the per-record answer of a 202/422).

    >>> check_webhook(b'[{"id": "1", "created_at": 1424653323, "channel": "web", "text": "hi"}]')
    'accepted'
    >>> check_webhook(b"[]")
    'empty_batch'
    """
    got = decode_body(raw, _WEBHOOK)
    if isinstance(got, Refusal):
        if not 400 <= got.status < 500 or not got.error or not got.message:
            raise AssertionError(f"refusal without a 4xx, a code and a message: {got!r}")
        json.dumps({"error": got.error, "message": got.message})
        return got.error
    return _worst([_check_decoded(to_candidate(r)) for r in got])


def check_mastodon(raw: bytes) -> str:
    """A piece of a Mastodon SSE stream, read as the connector reads it (lines, events).

    >>> check_mastodon(b'event: update\\ndata: {"id": "1", "created_at": "2026-12-01T10:00:00Z", '
    ...                b'"content": "<p>acme</p>"}\\n\\n')
    'accepted'
    """
    parser = SSEParser()
    outcomes = []
    for line in [*raw.decode("utf-8", "replace").split("\n"), ""]:
        event = parser.feed(line.rstrip("\r"))
        if event is not None:
            outcomes.append(_check_decoded(decode_sse_event(event[0], event[1])[0]))
    return _worst(outcomes) if outcomes else "no_event"


def check_bluesky(raw: bytes) -> str:
    """One Jetstream frame (decoded as the connector does: UTF-8, bad bytes replaced).

    >>> check_bluesky(b'{"kind": "account"}')
    'skipped'
    """
    value, t = decode_frame(raw.decode("utf-8", "replace"))
    if t is not None and not isinstance(t, int):
        raise AssertionError(f"cursor is not an integer: {t!r}")
    return _check_decoded(value)


def check_rss(raw: bytes) -> str:
    """One feed document: every entry a post or a reasoned rejection.

    >>> check_rss(b"<html/>")
    'not_a_feed'
    """
    items = parse_feed(raw, "http://fuzz/feed", "news")
    return _worst([_check_decoded(i.value) for i in items]) if items else "no_entries"


# ---------------------------------------------------------------- the HTTP API

API_TOKEN = "fuzz-token"
_API: dict[str, Any] = {}
_ROUTES = [("POST", "/alerts/{}/ack"), ("POST", "/alerts/{}/resolve"), ("GET", "/alerts/{}"),
           ("GET", "/alerts/{}/timeline"), ("GET", "/alerts"), ("GET", "/playbooks/{}"),
           ("POST", "/alerts/{}"), ("PUT", "/alerts/{}/ack")]
_ALERT_ID = "Acme/*@2015-02-22T22:22Z"


def _api() -> dict[str, Any]:
    """The app over an escalation machine holding one open critical alert (built once)."""
    if not _API:
        import asyncio
        from datetime import UTC, datetime

        from stormwatch.api.app import create_app
        from stormwatch.crisis.escalation import Escalation
        from stormwatch.model import Alert

        t0 = datetime(2015, 2, 22, 22, 22, tzinfo=UTC)
        alert = Alert(_ALERT_ID, "open", "Acme", "*", "critical", t0, t0, 40.0, 8.0, 2.0, 15.0, 0.999,
                      "seasonal-baseline", 0.85, samples=(("p1", "down"),), playbook="outage")
        esc = Escalation()

        def reset() -> None:
            esc.incidents.clear()
            esc.on_alert(alert, now=0)

        _API.update(esc=esc, reset=reset, loop=asyncio.new_event_loop(),
                    app=create_app(esc, API_TOKEN, clock=lambda: 1000.0, rate=UNLIMITED))
    return _API


#: The fuzzer's requests all come from one client, far faster than any real one: the
#: rate limit would answer almost all of them (it has its own test).
UNLIMITED = (1e12, 10**12)


def api_request(raw: bytes) -> tuple[str, bytes, bytes, bytes]:
    """Fuzz bytes → (method, raw path, query string, body): the first byte picks the route,
    the next two lines are the alert id (or playbook id) and the query, the rest the body."""
    method, route = _ROUTES[raw[0] % len(_ROUTES)] if raw else _ROUTES[0]
    ident, _, rest = raw[1:].partition(b"\n")
    query, _, body = rest.partition(b"\n")
    path = route.replace("{}", quote(ident, safe="/@*:"))
    return method, path.encode("ascii"), query, body


def check_api(raw: bytes) -> str:
    """The API's contract on one request: never a 5xx, every 4xx a JSON ``detail`` saying why.

    Runs the request through the ASGI app in-process (as a server would call it, the path
    percent-decoded from the raw path); returns the status code.

    >>> check_api(b"\\x00" + _ALERT_ID.encode() + b'\\n\\n{"by": "ana"}')
    '200'
    >>> check_api(b"\\x00" + _ALERT_ID.encode() + b'\\n\\n{"by": ""}')
    '422'
    """
    api = _api()
    api["reset"]()
    method, raw_path, query, body = api_request(raw)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": unquote(raw_path.decode("ascii")), "raw_path": raw_path,
             "query_string": query, "root_path": "", "client": ("127.0.0.1", 1), "server": ("fuzz", 80),
             "headers": [(b"host", b"fuzz"), (b"authorization", b"Bearer " + API_TOKEN.encode()),
                         (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    sent: list[dict[str, Any]] = []
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return pending.pop() if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    api["loop"].run_until_complete(api["app"](scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if status >= 500:
        raise AssertionError(f"HTTP {status} for {method} {raw_path!r} ?{query!r}: {payload[:300]!r}")
    if status >= 400:
        detail = json.loads(payload).get("detail")
        if not detail or not (isinstance(detail, str) or all(isinstance(d, dict) and d.get("msg")
                                                              for d in detail)):
            raise AssertionError(f"HTTP {status} without a message: {payload[:300]!r}")
    return str(status)


#: The example watch config of a source checkout (a seed when it is there).
_EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "watch.example.yaml"

#: Target name -> (contract, seed inputs).
TARGETS: dict[str, tuple[Callable[[bytes], str], list[bytes]]] = {
    "post": (check_post, [
        json.dumps({"id": "p1", "created_at": "2015-02-23T01:02:03Z", "channel": "twitter",
                    "brand": "United", "text": "flight Cancelled Flightled \U0001F621", "lang": "en",
                    "author": "@x", "retweets": 3}).encode(),
        json.dumps({"id": "p2", "created_at": 1424653323.5, "channel": "rss", "brand": "Bank",
                    "text": "App geht nicht \u200b\u202e", "lang": "de"}, ensure_ascii=False).encode(),
        b'{"id": "p3", "created_at": "2015-02-30T00:00:00Z", "channel": "t", "brand": "B", "text": ""}',
        b'{"id": "p4", "created_at": null, "text": "\\ud800"}',
        b'[[[[{"id": 1}]]]]',
    ]),
    "watch": (check_watch, [
        _EXAMPLE.read_bytes() if _EXAMPLE.exists() else b"",
        b"version: 1\ndefaults: {preset: balanced, cooldown: 30m}\nchannels: [twitter, rss]\n"
        b"brands:\n  Acme:\n    handles: ['@acme']\n    hashtags: [AcmeDown]\n    keywords: [acme bank]\n"
        b"    query: 'acme AND (down OR outage) AND NOT test'\n    exclude: giveaway\n    team: ops\n"
        b"    lang: {de: {keywords: [acme]}}\n    channels: {twitter: {preset: fewer, persist: 2m}}\n"
        b"routing:\n  receivers: {pager: {type: webhook, url: 'http://x'}}\n"
        b"  teams: {ops: {critical: [pager], warning: pager}}\n  default_team: ops\n",
        b"defaults: &d {threshold: 0.9}\nbrands:\n  A: {<<: *d, keywords: [a], warmup: 1d}\n",
        b"brands:\n  A: {keywords: &a [x, x, x]}\n  B: {keywords: &b [*a, *a, *a]}\n"
        b"  C: {keywords: [*b, *b, *b]}\n",
        b"brands: {A: {keywords: [a], cooldown: 2026-02-30}}\n",
        b"brands: {'Uni\xe2\x80\xaeted\x00': {keywords: [\"\\u200b\"]}}\n",
        b"[[[[[[[[[[[[[[[[[[[[[[[[{a: !!binary AAAA}]]]]]]]]]]]]]]]]]]]]]]]\n",
    ]),
    "webhook": (check_webhook, [
        json.dumps([{"id": "w1", "created_at": "2026-12-01T10:00:00Z", "channel": "support",
                     "text": "card declined \u200d\U0001F4B3", "author": "t-1", "lang": "en"},
                    {"id": "w2", "created_at": 1764583200, "channel": "support", "brand": "Acme",
                     "text": "app crash"}], ensure_ascii=False).encode(),
        b'{"id": "w3", "created_at": 1764583200, "channel": "s", "text": "x", "retweets": 1e999}',
        b'[1, "x", null, [], {"id": "\\udfff"}]',
        b"\xff\xfe{}",
        b"[]",
    ]),
    "mastodon": (check_mastodon, [
        b":thump\nevent: update\ndata: " + json.dumps({
            "id": "109", "uri": "https://m.example/users/a/statuses/109",
            "created_at": "2026-12-01T10:00:00Z",
            "content": "<p>acme <b>down</b> &amp; <a href='x'>#AcmeDown</a></p><br/>\u202e",
            "spoiler_text": "cw", "language": "en", "reblogs_count": 2,
            "account": {"acct": "a@m.example", "url": "https://m.example/@a"}}).encode() + b"\n\n"
        b"event: delete\ndata: 109\n\nevent: update\ndata: {\"reblog\": {\"id\": \"1\"}}\n\n",
        b"event: update\ndata: {\"id\": \"1\",\ndata: \"created_at\": 1}\nid: 5\n\n",
        b"event: update\r\ndata: [1]\r\n\r\nevent: update\ndata: {\"id\": 1\n\n",
    ]),
    "bluesky": (check_bluesky, [
        json.dumps({"did": "did:plc:abc", "time_us": 1764583200000000, "kind": "commit",
                    "commit": {"operation": "create", "collection": "app.bsky.feed.post", "rkey": "3k2a",
                               "record": {"text": "acme is down \U0001F621",
                                          "createdAt": "2026-12-01T10:00:00Z",
                                          "langs": ["en"]}}}).encode(),
        b'{"kind": "commit", "did": "d", "commit": {"operation": "create", '
        b'"collection": "app.bsky.feed.post", "rkey": 5, "record": []}}',
        b'{"kind": "identity", "time_us": true}',
        b'{"kind": "commit", "time_us": 1e3, "commit": null}',
    ]),
    "rss": (check_rss, [
        b'<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        b'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>t</title>'
        b'<item><guid>n-1</guid><title>Acme outage</title><description>&lt;p&gt;Cards&lt;/p&gt;</description>'
        b'<pubDate>Tue, 01 Dec 2026 10:00:00 GMT</pubDate><dc:creator>ed</dc:creator></item>'
        b'<item><link>http://x/2</link><dc:date>2026-12-01T10:00:00Z</dc:date>'
        b'<content:encoded><![CDATA[<b>x</b>]]></content:encoded></item>'
        b'<item><guid>n-3</guid><pubDate>yesterday</pubDate></item></channel></rss>',
        b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>tag:x,2026:1</id>'
        b'<published>2026-12-01T10:00:00Z</published><title type="html">A &amp;amp; B</title>'
        b'<summary>s</summary><author><name>n</name></author><link href="http://x"/></entry>'
        b'<entry><link href=""/></entry></feed>',
        b'<!DOCTYPE r [<!ENTITY a "aaaa">]><rss>&a;</rss>',
        b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/">'
        b'<item><guid>\xe2\x80\x8b</guid></item></rdf:RDF>',
    ]),
    "api": (check_api, [
        b"\x00" + _ALERT_ID.encode() + b'\n\n{"by": "ana", "note": "on it \\u202e"}',
        b"\x01" + _ALERT_ID.encode() + b'\n\n{"by": "ana\\u0000", "extra": 1}',
        b"\x02" + _ALERT_ID.encode() + b"\n\n",
        b"\x03" + _ALERT_ID.encode() + b"\n\n",
        b"\x04\nstate=open&brand=Acme&limit=0&channel=%00\n",
        b"\x05outage\n\n",
        b"\x00nope%2F..\n\n[1,2",
    ]),
}


#: Code whose branches guide the fuzzer, per target (module name prefixes); the rest of
#: what is imported is left uninstrumented, so that starting takes seconds, not minutes.
INSTRUMENT: dict[str, tuple[str, ...]] = {
    "post": ("stormwatch.model", "stormwatch.bench", "json"),
    "watch": ("stormwatch.watch", "stormwatch.nlp.brands", "stormwatch.detectors.policy", "yaml"),
    "webhook": ("stormwatch.ingest", "stormwatch.model", "stormwatch.pipeline", "json"),
    "mastodon": ("stormwatch.ingest", "stormwatch.model", "stormwatch.pipeline", "html", "json"),
    "bluesky": ("stormwatch.ingest", "stormwatch.model", "stormwatch.pipeline", "json"),
    "rss": ("stormwatch.ingest", "stormwatch.model", "stormwatch.pipeline", "html", "xml", "defusedxml",
            "email"),
    "api": ("stormwatch.api", "stormwatch.crisis", "fastapi", "starlette", "pydantic"),
}


def _instrument(prefixes: tuple[str, ...]) -> int:
    """Add coverage instrumentation to the loaded functions of these modules; returns how many."""
    import gc
    import types

    import atheris

    done = 0
    for obj in gc.get_objects():
        name = getattr(obj, "__module__", None) if isinstance(obj, types.FunctionType) else None
        if name and any(name == p or name.startswith(p + ".") for p in prefixes):
            try:
                atheris.instrument_func(obj)
                done += 1
            except Exception:
                continue
    return done


def run(target: str, runs: int, seconds: int | None = None) -> dict:
    """Fuzz ``target`` for ``runs`` inputs (or ``seconds``); returns the summary."""
    import atheris  # the fuzzer is a benchmark tool: imported only here

    contract, seeds = TARGETS[target]
    outcomes: Counter[str] = Counter()
    started = time.monotonic()

    def summary() -> dict:
        n = sum(outcomes.values())
        return {"target": target, "inputs": n, "accepted": outcomes["accepted"],
                "rejected": {k: v for k, v in sorted(outcomes.items()) if k != "accepted"},
                "crashes": 0, "seconds": round(time.monotonic() - started, 1)}

    first = [started]

    def one_input(data: bytes) -> None:
        outcomes[contract(data)] += 1
        n = sum(outcomes.values())
        if n % 100_000 == 0:
            print(f"fuzz {target}: {n:,} inputs, {time.monotonic() - started:.0f} s", file=sys.stderr)
        if n == runs:  # libFuzzer exits right after its last run: report now
            print(json.dumps(summary()), flush=True)
        elif n == 1:
            first[0] = time.monotonic()  # the time limit counts from the first input on
        elif seconds and n % 100 == 0 and time.monotonic() - first[0] >= seconds:
            print(json.dumps(summary()), flush=True)  # libFuzzer's own time limit exits unreported
            os._exit(0)

    corpus = Path(tempfile.mkdtemp(prefix=f"stormwatch-fuzz-{target}-"))
    for i, seed in enumerate(seeds):
        (corpus / f"seed{i}").write_bytes(seed)
    argv = [sys.argv[0], f"-runs={runs}", "-max_len=4096", f"-artifact_prefix={corpus}/",
            str(corpus)]
    if target == "api":
        _api()  # load the app (and its routes' code) before instrumenting it
    print(f"fuzz {target}: instrumented {_instrument(INSTRUMENT[target]):,} functions", file=sys.stderr)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
    return summary()  # reached only if libFuzzer returns instead of exiting


def main(args: argparse.Namespace) -> int:
    if args.target not in TARGETS:
        print(f"stormwatch bench fuzz: unknown target {args.target!r}; known: {', '.join(TARGETS)}",
              file=sys.stderr)
        return 2
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("stormwatch bench fuzz needs atheris: pip install atheris", file=sys.stderr)
        return 2
    print(json.dumps(run(args.target, args.runs, args.seconds)))
    return 0
