"""The producer every connector uses: validated posts to ``posts.raw``, rejects to ``posts.dlq``.

Delivery is checked, not assumed: every send's future is awaited (in windows of
``max_in_flight``), a failed delivery raises, and the counters say what went where.
Author ids are hashed with the secret salt before a post enters Kafka.

A broker that is away for a while (a restart) is waited for: the idempotent producer
retries each batch itself, without duplicates, for up to ``STORMWATCH_DELIVERY_TIMEOUT``
seconds (120 by default) before a delivery counts as failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaProducer

from stormwatch.config import Settings
from stormwatch.model import DeadLetter, InvalidRecord, Post, dumps, hash_author, parse_post
from stormwatch.pipeline import dead_letter

#: Largest message the producer sends (dead letters keep up to 1 MB of raw input).
MAX_REQUEST_BYTES = 4 * 1024 * 1024


class DeliveryError(RuntimeError):
    """A message could not be delivered to Kafka."""


class PostProducer:
    """Async producer for posts and dead letters, with delivery accounting."""

    def __init__(self, settings: Settings, source: str = "replay", max_in_flight: int = 1000) -> None:
        self.settings = settings
        self.source = source
        self.max_in_flight = max_in_flight
        self.salt = settings.author_salt.encode("utf-8")
        self._producer: AIOKafkaProducer | None = None
        self._pending: list[asyncio.Future[Any]] = []
        self.sent = Counter[str]()
        self.rejected = Counter[str]()

    async def __aenter__(self) -> PostProducer:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka,
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            compression_type="gzip",
            max_request_size=MAX_REQUEST_BYTES,
            client_id=f"stormwatch-{self.source}",
            request_timeout_ms=int(self.settings.delivery_timeout * 1000),
        )
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                await self.flush()
        finally:
            assert self._producer is not None
            await self._producer.stop()

    def prepare(self, raw: Any, where: str = "") -> Post | DeadLetter:
        """Validate one raw record; hash its author. Returns the Post or its dead letter."""
        try:
            post = parse_post(raw)
        except InvalidRecord as exc:
            return dead_letter("ingest", raw, exc.reason, exc.detail, where)
        if post.author is not None:
            # Without a salt the author is dropped: a raw handle never enters Kafka.
            hashed = hash_author(post.author, self.salt) if self.salt else None
            post = dataclasses.replace(post, author=hashed)
        return post

    async def send_post(self, post: Post) -> None:
        await self._send(self.settings.topic("posts.raw"), post.brand.encode("utf-8"), dumps(post))
        self.sent["posts"] += 1

    async def send_dead(self, dl: DeadLetter) -> None:
        await self._send(self.settings.topic("posts.dlq"), dl.reason.encode("utf-8"), dumps(dl))
        self.rejected[dl.reason] += 1

    async def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Send bytes as they are (tests use it to inject bad records past validation)."""
        await self._send(topic, key, value)

    async def _send(self, topic: str, key: bytes | None, value: bytes) -> None:
        assert self._producer is not None, "use 'async with PostProducer(...)'"
        self._pending.append(await self._producer.send(topic, value=value, key=key))
        if len(self._pending) >= self.max_in_flight:
            await self.flush()

    async def flush(self) -> None:
        """Wait for every pending delivery; raise DeliveryError on the first failure."""
        pending, self._pending = self._pending, []
        results = await asyncio.gather(*pending, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise DeliveryError(f"{len(failed)} of {len(results)} messages were not delivered: "
                                f"{failed[0]!r}")

    def summary(self) -> dict[str, Any]:
        return {"posts": self.sent["posts"], "dead_lettered": sum(self.rejected.values()),
                "reasons": dict(sorted(self.rejected.items()))}
