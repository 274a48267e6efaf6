"""The HTTP webhook: a real aiohttp server on 127.0.0.1, real HTTP requests.

Unit tests hand posts to an in-memory sink with the producer's interface (same
validation); the last test goes through the real broker and reads ``posts.raw`` and
``posts.dlq`` back.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from stormwatch.ingest.source import BrandMatcher, MemorySink
from stormwatch.ingest.webhook import WebhookConfig, make_app, serve, sign
from tests.connectors_util import running

TOKEN, SECRET = "tok-123", "hmac-secret"


def post(i: str, text: str = "the app is down again", **kw: Any) -> dict[str, Any]:
    return {"id": i, "created_at": "2026-12-01T10:00:00Z", "channel": "support", "brand": "Acme",
            "text": text, **kw}


def run(coro_fn: Callable[..., Any], sink: MemorySink | None = None, cfg: WebhookConfig | None = None,
        matcher: BrandMatcher | None = None) -> Any:
    sink = sink or MemorySink()
    cfg = cfg or WebhookConfig(token=TOKEN, secret=SECRET)

    async def main() -> Any:
        async with running(make_app(sink, cfg, matcher)) as base, aiohttp.ClientSession() as http:
            return await coro_fn(http, base)

    return asyncio.run(main())


async def send(http: aiohttp.ClientSession, url: str, body: bytes | Any,
               headers: dict[str, str] | None = None, auth: bool = True) -> tuple[int, dict[str, Any], Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json", **({"Authorization": f"Bearer {TOKEN}"} if auth else {}),
         **(headers or {})}
    async with http.post(url + "/posts", data=data, headers=h) as r:
        return r.status, await r.json(), r.headers


def test_one_post_and_a_batch_are_accepted_and_duplicates_counted_once():
    sink = MemorySink()

    async def go(http, base):
        a = await send(http, base, post("1"))
        b = await send(http, base, [post("2"), post("3"), post("1")])
        return a, b

    (s1, b1, _), (s2, b2, _) = run(go, sink)
    assert (s1, b1) == (202, {"accepted": 1, "duplicates": 0, "ignored": 0, "rejected": []})
    assert (s2, b2["accepted"], b2["duplicates"]) == (202, 2, 1)
    assert [p.id for p in sink.posts] == ["1", "2", "3"]
    assert sink.posts[0].channel == "support" and sink.flushes >= 2


def test_hmac_signature_is_accepted_and_bad_credentials_get_401_or_403():
    body = json.dumps(post("s1")).encode()

    async def go(http, base):
        return [await send(http, base, body, {"X-Stormwatch-Signature": sign(body, SECRET)}, auth=False),
                await send(http, base, body, {"X-Stormwatch-Signature": sign(body, "wrong")}, auth=False),
                await send(http, base, body, {"Authorization": "Bearer nope"}, auth=False),
                await send(http, base, body, auth=False)]

    sink = MemorySink()
    (ok, *_), (bad_sig, sig_body, _), (bad_tok, tok_body, _), (none, none_body, hdrs) = run(go, sink)
    assert ok == 202 and [p.id for p in sink.posts] == ["s1"]
    assert (bad_sig, sig_body["error"]) == (403, "forbidden") and "signature" in sig_body["message"]
    assert (bad_tok, tok_body["error"]) == (403, "forbidden") and "token" in tok_body["message"]
    assert none == 401 and "Bearer" in none_body["message"] and hdrs["WWW-Authenticate"] == "Bearer"
    assert SECRET not in json.dumps([sig_body, tok_body, none_body])
    assert not sink.dead  # auth failures are not input to keep


def test_malformed_body_and_invalid_records_get_4xx_and_go_to_the_dlq():
    sink = MemorySink()

    async def go(http, base):
        return [await send(http, base, b'{"id": "x", "text": '),
                await send(http, base, [post("ok1"), post("bad1", text="  "), [1, 2],
                                        {**post("bad2"), "created_at": "yesterday"}]),
                await send(http, base, b"[]"),
                await send(http, base, post("ok2"))]  # the stream goes on

    (s1, b1, _), (s2, b2, _), (s3, b3, _), (s4, _, _) = run(go, sink)
    assert (s1, b1["error"]) == (400, "malformed_json") and "not JSON" in b1["message"]
    assert s2 == 422 and b2["error"] == "invalid_records" and b2["accepted"] == 1
    assert [(r["index"], r["reason"]) for r in b2["rejected"]] == [
        (1, "empty_text"), (2, "not_an_object"), (3, "bad_timestamp")]
    assert (s3, b3["error"]) == (400, "empty_batch")
    assert s4 == 202 and [p.id for p in sink.posts] == ["ok1", "ok2"]
    assert [d.reason for d in sink.dead] == ["malformed_json", "empty_text", "not_an_object", "bad_timestamp",
                                              "empty_batch"]
    assert sink.dead[1].source.endswith("#1") and sink.dead[0].raw == '{"id": "x", "text": '


def test_size_limits_content_type_and_rate_limit():
    cfg = WebhookConfig(token=TOKEN, max_body_bytes=2000, max_records=3, rate_per_s=0.5, burst=4)

    async def go(http, base):
        big = await send(http, base, post("big", text="a" * 5000))
        many = await send(http, base, [post(str(i)) for i in range(4)])
        form_headers = {"Authorization": f"Bearer {TOKEN}",
                        "Content-Type": "application/x-www-form-urlencoded"}
        async with http.post(base + "/posts", data=b"id=1", headers=form_headers) as r:
            form = (r.status, await r.json())
        limited = await send(http, base, post("r1"))  # the 4th request in the burst passes ...
        over = await send(http, base, post("r2"))  # ... the 5th does not
        return big, many, form, limited, over

    sink = MemorySink()
    big, many, form, limited, over = run(go, sink, cfg)
    assert (big[0], big[1]["error"]) == (413, "too_large") and "2000 bytes" in big[1]["message"]
    assert (many[0], many[1]["error"]) == (413, "too_many_records")
    assert (form[0], form[1]["error"]) == (415, "unsupported_media_type")
    assert limited[0] == 202
    assert (over[0], over[1]["error"]) == (429, "rate_limited") and int(over[2]["Retry-After"]) >= 1
    assert [p.id for p in sink.posts] == ["r1"]


def test_brand_from_the_track_keywords_when_the_client_sends_none():
    matcher = BrandMatcher.from_cli(["Acme", "Globex"], ["acme", "globex"])

    async def go(http, base):
        p = {k: v for k, v in post("k1", text="acme and globex both down").items() if k != "brand"}
        q = {k: v for k, v in post("k2", text="unrelated").items() if k != "brand"}
        return await send(http, base, [p, q])

    sink = MemorySink()
    status, body, _ = run(go, sink, matcher=matcher)
    assert status == 202 and body["accepted"] == 2 and body["ignored"] == 1
    assert sorted(p.brand for p in sink.posts) == ["Acme", "Globex"]


def test_config_needs_a_secret_and_hides_it():
    with pytest.raises(ValueError, match="STORMWATCH_WEBHOOK_TOKEN"):
        WebhookConfig()
    cfg = WebhookConfig.from_env({"STORMWATCH_WEBHOOK_TOKEN": "abc", "STORMWATCH_WEBHOOK_SECRET": "xyz"})
    assert (cfg.token, cfg.secret) == ("abc", "xyz") and "abc" not in repr(cfg) and "xyz" not in repr(cfg)


@pytest.mark.kafka
def test_webhook_through_kafka_posts_on_raw_and_bad_input_on_the_dlq(env):
    from stormwatch.sinks.console import read_topic
    from tests.conftest import settings_of

    settings = settings_of(env)
    cfg = WebhookConfig(token=TOKEN)
    stop = asyncio.Event()
    got_port: list[int] = []
    ready = threading.Event()

    async def main() -> tuple[list[Any], ...]:
        server = asyncio.create_task(serve(settings, cfg, "127.0.0.1", 0, BrandMatcher(), stop,
                                           lambda p: (got_port.append(p), ready.set())))
        for _ in range(600):
            if ready.is_set() or server.done():
                break
            await asyncio.sleep(0.1)
        assert ready.is_set(), server.exception() if server.done() else "webhook did not start"
        base = f"http://127.0.0.1:{got_port[0]}"
        async with aiohttp.ClientSession() as http:
            answers = [await send(http, base, [post("w1"), post("w2")]),
                       await send(http, base, [post("w3"), post("w4", text="")]),
                       await send(http, base, b"not json at all")]
        stop.set()
        await server
        raw = [json.loads(v) async for v in read_topic(settings, "posts.raw", 3.0)]
        dlq = [json.loads(v) async for v in read_topic(settings, "posts.dlq", 2.0)]
        return answers, raw, dlq

    answers, raw, dlq = asyncio.run(main())
    assert [a[0] for a in answers] == [202, 422, 400]
    assert sorted(r["id"] for r in raw) == ["w1", "w2", "w3"] and {r["brand"] for r in raw} == {"Acme"}
    assert sorted((d["stage"], d["reason"]) for d in dlq) == [("ingest", "empty_text"),
                                                              ("ingest", "malformed_json")]
    assert all(d["source"].startswith("webhook:127.0.0.1") for d in dlq)
