"""The Faust app: topics, tables and three agents that move records between the pure parts.

::

    posts.raw ──enrich──▶ posts.scored ──aggregate──▶ stats ──detect──▶ alerts
        │ (validate, score,      (dedupe, event-time       (detector + alert
        │  micro-batched)         buckets, watermark)        policy per series)
        └──────────────▶ posts.dlq ◀── any stage's bad record, with the reason

Every topic has the same partition count, and ``posts.scored`` and ``stats`` records go
to the partition of the input they came from, so a brand's records and table state
share one partition. ``alerts`` are keyed (and compacted) by alert id.

Delivery: at least once (the default), with idempotent stages. ``enrich`` is
stateless; ``aggregate`` dedupes post ids, so a post scored twice is counted once;
``detect`` ignores a bucket it has already seen; an alert event repeated after a
crash carries the same id and event, so sinks keyed on (id, event) page once.
Faust's ``exactly_once`` can be chosen with ``STORMWATCH_GUARANTEE`` but is not the
default: in faust-streaming 0.15 a worker restarted after SIGTERM stayed idle in our
restart test (faust-streaming issues #47, #323, #517 describe the same family).
"""

from __future__ import annotations

import json
import logging

import faust
from faust.types import EventT

from stormwatch import nlp
from stormwatch.config import Settings
from stormwatch.ingest.producer import MAX_REQUEST_BYTES
from stormwatch.model import DeadLetter, ScoredPost, SeriesStats, dumps
from stormwatch.pipeline import Aggregator, Detection, Enricher, dead_letter

log = logging.getLogger(__name__)


def _where(event: EventT) -> str:
    m = event.message
    return f"{m.topic}:{m.partition}:{m.offset}"


def create_app(settings: Settings, scorer: nlp.Scorer | None = None) -> faust.App:
    """Build the worker's Faust app from settings (a new app object each call)."""
    n = settings.partitions
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka}",
        store="memory://",
        processing_guarantee=settings.guarantee,
        topic_partitions=n,
        topic_disable_leader=True,
        datadir=f"{settings.state_dir}/{settings.app_id}",
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=MAX_REQUEST_BYTES,
        web_enabled=False,
    )

    def topic(name: str) -> faust.TopicT:
        return app.topic(settings.topic(name), key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw", partitions=n)

    raw_t, scored_t, stats_t = topic("posts.raw"), topic("posts.scored"), topic("stats")
    alerts_t, dlq_t = topic("alerts"), topic("posts.dlq")

    # Names as in stormwatch.app.topics.TABLES, which creates their changelogs up front.
    # Plain JSON keys and values: the pure parts keep their state as JSON-able dicts.
    def table(name: str) -> faust.Table:
        return app.Table(name, partitions=n, key_type=str)

    buckets, seen, monitors = table("buckets"), table("seen"), table("monitors")

    enricher = Enricher(scorer or nlp.make(settings.scorer))

    async def to_dlq(dl: DeadLetter) -> None:
        await dlq_t.send(key=dl.reason.encode(), value=dumps(dl))

    @app.agent(raw_t, name="enrich")
    async def enrich(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.scorer_batch, within=settings.scorer_within):
            results = enricher.enrich([e.value for e in events], [_where(e) for e in events])
            for event, item in zip(events, results, strict=True):
                if isinstance(item, DeadLetter):
                    await to_dlq(item)
                else:
                    await scored_t.send(key=item.post.brand.encode(), value=dumps(item),
                                        partition=event.message.partition)

    @app.agent(scored_t, name="aggregate")
    async def aggregate(stream: faust.StreamT) -> None:
        agg = Aggregator(buckets, seen, settings.bucket_seconds, settings.lateness_seconds,
                         settings.dedupe_hours)
        async for event in stream.events():
            try:
                closed = agg.add(ScoredPost.from_dict(json.loads(event.value)))
            except Exception as exc:  # a bad record must not stop the stream
                await to_dlq(dead_letter("aggregate", event.value, "bad_record", repr(exc)[:500],
                                                _where(event)))
                continue
            for st in closed:
                await stats_t.send(key=st.series.encode(), value=dumps(st),
                                   partition=event.message.partition)

    @app.agent(stats_t, name="detect")
    async def detect(stream: faust.StreamT) -> None:
        det = Detection(monitors, settings.detector, settings.detector_params, settings.policy)
        async for event in stream.events():
            try:
                alerts = det.observe(SeriesStats.from_dict(json.loads(event.value)))
            except Exception as exc:
                await to_dlq(dead_letter("detect", event.value, "bad_record", repr(exc)[:500],
                                                _where(event)))
                continue
            for alert in alerts:
                await alerts_t.send(key=alert.id.encode(), value=dumps(alert))

    return app
