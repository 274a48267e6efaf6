"""``stormwatch api``: the HTTP API as a service next to the worker.

It follows the ``alerts`` and ``stats`` topics from their beginning into one
:class:`~stormwatch.crisis.escalation.Escalation` (so a restart rebuilds the same
incidents), runs its clock every ``TICK_SECONDS``, and writes what the machine decides
— re-sends, acknowledgements, resolves — to ``alerts`` (same id, new event), where
the pager sinks see them. The token comes from ``STORMWATCH_API_TOKEN`` or the file
named by ``STORMWATCH_API_TOKEN_FILE`` and is never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from stormwatch.config import Settings, _secret
from stormwatch.crisis.escalation import Escalation
from stormwatch.model import Alert, SeriesStats, dumps

log = logging.getLogger(__name__)

#: How often unacknowledged critical incidents are checked for a re-send (seconds).
TICK_SECONDS = 15.0


def api_token(env: Any = None) -> str:
    token = _secret(os.environ if env is None else env, "STORMWATCH_API_TOKEN")
    if not token:
        raise ValueError("set STORMWATCH_API_TOKEN (or STORMWATCH_API_TOKEN_FILE) for the API")
    return token


def watch_playbooks(settings: Settings) -> dict[str, Any] | None:
    """The playbooks of the watch config (``STORMWATCH_WATCH``), if it has that section."""
    if not settings.watch:
        return None
    from stormwatch.watch import load_watch

    return load_watch(settings.watch).sections.get("playbooks")


def build(settings: Settings, token: str, escalation: Escalation | None = None) -> Any:
    """The FastAPI app wired to Kafka: consumers and the clock start with it, stop with it."""
    from aiokafka import AIOKafkaProducer

    from stormwatch.api.app import create_app
    from stormwatch.sinks.console import read_topic

    esc = escalation or Escalation(watch_playbooks(settings))
    producers: list[AIOKafkaProducer] = []  # made inside the server's event loop

    async def publish(alert: Alert) -> None:
        await producers[0].send_and_wait(settings.topic("alerts"), key=alert.id.encode(), value=dumps(alert))

    async def follow_alerts() -> None:
        async for value in read_topic(settings, "alerts", None):
            try:
                esc.on_alert(Alert.from_dict(json.loads(value)), time.time())
            except Exception as exc:  # one bad record must not stop the API
                log.warning("skipping a bad alert record: %r", exc)

    async def follow_stats() -> None:
        async for value in read_topic(settings, "stats", None):
            try:
                esc.on_stats(SeriesStats.from_dict(json.loads(value)))
            except Exception as exc:
                log.warning("skipping a bad stats record: %r", exc)

    async def clock() -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            for event in esc.tick(time.time()):
                await publish(event)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka, acks="all", enable_idempotence=True)
        await producer.start()
        producers.append(producer)
        tasks = [asyncio.create_task(f()) for f in (follow_alerts, follow_stats, clock)]
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            producers.clear()
            await producer.stop()

    return create_app(esc, token, publish=publish, lifespan=lifespan)


def main(args: argparse.Namespace) -> int:
    import uvicorn

    try:
        token = api_token()
    except ValueError as exc:
        print(f"stormwatch api: {exc}", file=sys.stderr)
        return 2
    app = build(Settings.from_env(), token)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                limit_concurrency=200, timeout_keep_alive=5)
    return 0
