"""``stormwatch ingest webhook``: any tool pushes posts over HTTP (support tickets, exports).

``POST /posts`` with one JSON post or a JSON array of them (the fields of
``stormwatch ingest replay``'s files; ``brand`` may be left out when the webhook runs
with ``--brand``/``--track``). ``GET /healthz`` answers 200.

* **Auth**: ``Authorization: Bearer <token>`` (``STORMWATCH_WEBHOOK_TOKEN`` or ``_FILE``)
  or ``X-Stormwatch-Signature: sha256=<hex HMAC-SHA256 of the body>``
  (``STORMWATCH_WEBHOOK_SECRET`` or ``_FILE``); compared in constant time, never logged.
* **Limits**: body size (413), records per request (413), requests per client and second
  (429 with ``Retry-After``).
* **Answers**: 202 ``{"accepted": n, "duplicates": d, "ignored": i, "rejected": []}`` once
  Kafka has confirmed every post; 4xx with ``{"error": code, "message": ...}`` for bad
  input. A request with some invalid records gets 422 listing them by index; the other
  records were accepted (resending them is safe: ids are deduplicated). Invalid records
  and unparsable bodies also go to ``posts.dlq``; 503 if Kafka did not confirm.

>>> sign(b'{"id": "1"}', "s3cret")
'sha256=9b6cbdf1305168354d186eef3b0c32688153fba756a3fe2f7a03bf0283df458e'
>>> cfg = WebhookConfig(token="t0k")
>>> check_auth({"Authorization": "Bearer t0k"}, b"{}", cfg) is None
True
>>> check_auth({}, b"{}", cfg).status
401
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from stormwatch.config import Settings, _secret
from stormwatch.ingest.source import BrandMatcher, Candidate, Dedupe, Ingest, Rejected, Sink
from stormwatch.model import json_error
from stormwatch.pipeline import dead_letter
from stormwatch.ratelimit import TokenBucket

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Stormwatch-Signature"
INGEST = web.AppKey("ingest", Ingest)  # the app's counters, for tests and /healthz


@dataclass(frozen=True)
class WebhookConfig:
    """Secrets and limits. At least one of ``token``/``secret`` unless ``anonymous``."""

    token: str = ""
    secret: str = ""
    anonymous: bool = False
    max_body_bytes: int = 4 * 1024 * 1024
    max_records: int = 1000
    rate_per_s: float = 20.0  # requests per client and second, sustained
    burst: int = 40

    def __post_init__(self) -> None:
        if not (self.token or self.secret or self.anonymous):
            raise ValueError("the webhook needs STORMWATCH_WEBHOOK_TOKEN or STORMWATCH_WEBHOOK_SECRET "
                             "(or _FILE); --anonymous accepts unauthenticated posts (tests only)")

    @classmethod
    def from_env(cls, env: Mapping[str, str], **limits: Any) -> WebhookConfig:
        return cls(token=_secret(env, "STORMWATCH_WEBHOOK_TOKEN"),
                   secret=_secret(env, "STORMWATCH_WEBHOOK_SECRET"), **limits)

    def __repr__(self) -> str:  # the secrets never reach a log
        return (f"WebhookConfig(token={'set' if self.token else 'unset'}, "
                f"secret={'set' if self.secret else 'unset'}, max_body_bytes={self.max_body_bytes})")


@dataclass(frozen=True)
class Refusal:
    """An HTTP error answer: status, a stable code and a message for the client."""

    status: int
    error: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def response(self) -> web.Response:
        return web.json_response({"error": self.error, "message": self.message}, status=self.status,
                                 headers=dict(self.headers))


def sign(body: bytes, secret: str) -> str:
    """The signature header value a client sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_auth(headers: Mapping[str, str], body: bytes, cfg: WebhookConfig) -> Refusal | None:
    """None if the request carries a valid token or body signature, else the refusal."""
    auth = headers.get("Authorization", "")
    sig = headers.get(SIGNATURE_HEADER, "")
    if cfg.anonymous and not (auth or sig):
        return None
    if not auth and not sig:
        return Refusal(401, "unauthorized", "send 'Authorization: Bearer <token>' or "
                       f"'{SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256 of the body>'",
                       {"WWW-Authenticate": "Bearer"})
    if auth:
        scheme, _, given = auth.partition(" ")
        if (scheme.lower() == "bearer" and cfg.token
                and hmac.compare_digest(given.strip().encode(), cfg.token.encode())):
            return None
    if sig and cfg.secret and hmac.compare_digest(sig.strip().encode(), sign(body, cfg.secret).encode()):
        return None
    what = "signature does not match the body" if sig else "token is not valid"
    return Refusal(403, "forbidden", what)


def decode_body(body: bytes, cfg: WebhookConfig) -> list[Any] | Refusal:
    """The records of a request body: one object or an array of them (not checked yet)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return Refusal(400, "bad_encoding", "the body is not UTF-8")
    except (ValueError, RecursionError) as exc:  # ValueError: also an integer of > 4300 digits
        return Refusal(400, "malformed_json", f"the body is not JSON: {json_error(exc)}")
    records = data if isinstance(data, list) else [data]
    if not records:
        return Refusal(400, "empty_batch", "the array holds no posts")
    if len(records) > cfg.max_records:
        return Refusal(413, "too_many_records",
                       f"{len(records)} records in one request, limit {cfg.max_records}")
    return records


def to_candidate(record: Any) -> Candidate | Rejected:
    """One element of the body: an object becomes a candidate (parse_post checks it later).

    >>> to_candidate([1, 2])
    Rejected(reason='not_an_object', detail='expected a JSON object, got list', raw=[1, 2])
    """
    if isinstance(record, dict):
        return Candidate(record)
    return Rejected("not_an_object", f"expected a JSON object, got {type(record).__name__}", record)


async def read_limited(request: web.Request, limit: int) -> bytes | Refusal:
    too_big = Refusal(413, "too_large", f"the body exceeds {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        return too_big
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return too_big
        chunks.append(chunk)
    return b"".join(chunks)


def make_app(sink: Sink, cfg: WebhookConfig, matcher: BrandMatcher | None = None,
             dedupe_capacity: int = 100_000) -> web.Application:
    """The aiohttp application; ``sink`` is a started PostProducer (or a MemorySink)."""
    ingest = Ingest(sink, matcher or BrandMatcher(), "webhook", Dedupe(dedupe_capacity))
    limiter = TokenBucket(cfg.rate_per_s, cfg.burst)
    lock = asyncio.Lock()  # one request's records at a time: its flush confirms exactly them

    async def post(request: web.Request) -> web.Response:
        client = request.remote or "unknown"
        wait = limiter.take(client)
        if wait > 0:
            return Refusal(429, "rate_limited", f"more than {cfg.rate_per_s:g} requests/s from {client}",
                           {"Retry-After": str(max(1, math.ceil(wait)))}).response()
        body = await read_limited(request, cfg.max_body_bytes)
        if isinstance(body, Refusal):
            return body.response()
        refused = check_auth(request.headers, body, cfg)
        if refused is not None:
            log.warning("webhook: %s from %s", refused.error, client)
            return refused.response()
        if request.content_type not in ("application/json", "application/x-ndjson", "text/json"):
            return Refusal(415, "unsupported_media_type",
                           f"send Content-Type: application/json, not {request.content_type!r}").response()
        records = decode_body(body, cfg)
        where = f"webhook:{client}"
        async with lock:
            if isinstance(records, Refusal):
                if records.status == 400:  # unparsable input is kept for a look
                    await sink.send_dead(dead_letter("ingest", body, records.error, records.message, where))
                    await _flushed(sink)
                return records.response()
            sent: list[str] = []
            rejected: list[dict[str, Any]] = []
            duplicates = ignored = 0
            for i, record in enumerate(records):
                out = await ingest.handle(to_candidate(record), f"{where}#{i}")
                sent += out.keys
                duplicates += out.duplicates
                ignored += out.unmatched
                rejected += [{"index": i, "reason": d.reason, "error": d.error} for d in out.dead]
            try:
                await sink.flush()
            except Exception as exc:
                ingest.forget(sent)
                log.error("webhook: delivery to Kafka failed: %r", exc)
                return Refusal(503, "unavailable", "Kafka did not confirm the posts; retry later",
                               {"Retry-After": "5"}).response()
        result = {"accepted": len(sent), "duplicates": duplicates, "ignored": ignored, "rejected": rejected}
        if rejected:
            return web.json_response({"error": "invalid_records",
                                      "message": f"{len(rejected)} of {len(records)} records rejected "
                                                 "(see 'rejected'); the others were accepted", **result},
                                     status=422)
        return web.json_response(result, status=202)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **{k: ingest.counts[k] for k in sorted(ingest.counts)}})

    # The body limit is checked while reading (read_limited), so aiohttp's own is lifted.
    app = web.Application(client_max_size=cfg.max_body_bytes + 1024)
    app.router.add_post("/posts", post)
    app.router.add_get("/healthz", health)
    app[INGEST] = ingest
    return app


async def _flushed(sink: Sink) -> None:
    try:
        await sink.flush()
    except Exception as exc:  # the 400 answer stands; the dead letter is best effort
        log.error("webhook: dead letter not delivered: %r", exc)


async def serve(settings: Settings, cfg: WebhookConfig, host: str, port: int, matcher: BrandMatcher,
                stop: asyncio.Event | None = None, ready: Callable[[int], None] | None = None) -> None:
    """Run the webhook on host:port until ``stop`` is set (or the process is stopped)."""
    from stormwatch.app.topics import ensure_topics
    from stormwatch.ingest.producer import PostProducer

    await ensure_topics(settings)
    stop = stop or asyncio.Event()
    async with PostProducer(settings, source="webhook") as producer:
        runner = web.AppRunner(make_app(producer, cfg, matcher), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        print(json.dumps({"listening": f"http://{host}:{bound}/posts"}), flush=True)
        if ready is not None:
            ready(bound)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()


def main(args: argparse.Namespace) -> int:
    import os
    import signal

    try:
        cfg = WebhookConfig.from_env(os.environ, anonymous=args.anonymous, max_body_bytes=args.max_body,
                                     max_records=args.max_records, rate_per_s=args.rate, burst=args.burst)
        matcher = BrandMatcher.from_cli(args.brand or [], args.track or [])
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"stormwatch ingest webhook: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, cfg, args.host, args.port, matcher, stop)

    asyncio.run(run())
    return 0
