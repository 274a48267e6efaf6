"""The Faust app: topics, tables and three agents that move records between the pure parts.

::

    posts.raw ──enrich──▶ posts.scored ──aggregate──▶ stats ──detect──▶ alerts
        │ (validate, score,      (dedupe, event-time       (detector + alert
        │  micro-batched)         buckets, watermark)        policy per series)
        └──────────────▶ posts.dlq ◀── any stage's bad record, with the reason

Every topic has the same partition count, and ``posts.scored`` and ``stats`` records go
to the partition of the input they came from, so a brand's records and table state
share one partition. ``alerts`` are keyed (and compacted) by alert id.

Delivery: at least once from Kafka, applied once by the stateful agents. ``enrich`` is
stateless. ``aggregate`` and ``detect`` write, in each key's state record, the input
position they have applied (:mod:`stormwatch.positions`); a record at or before that
position changes nothing, and so does a post whose ``posts.raw`` offset the brand has
already counted (a copy ``enrich`` sent again after its own restart). After a restart
the restored tables, not the committed offsets, say where each input partition resumes
(:func:`resume_from_state`). Both stateful agents hand their outputs on in two phases:
the state is written with the outputs still pending, the agent sends them and waits for
Kafka, then a second write forgets them; a worker stopped in between sends them again,
and a repeated stats record or alert event is identical to the first.
Faust's ``exactly_once`` can be chosen with ``STORMWATCH_GUARANTEE`` but is not the
default: in faust-streaming 0.15 a worker restarted after SIGTERM stayed idle in our
restart test (faust-streaming issues #47, #323, #517 describe the same family).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
import weakref
from collections.abc import Awaitable
from typing import Any

import faust
from faust import streams as faust_streams
from faust.types import TP, EventT

from stormwatch import nlp, plugins
from stormwatch.app.readiness import RebalanceLog
from stormwatch.config import Settings
from stormwatch.ingest.producer import MAX_REQUEST_BYTES
from stormwatch.model import Alert, DeadLetter, ScoredPost, SeriesStats, dumps
from stormwatch.pipeline import Aggregator, Detection, Enricher, dead_letter
from stormwatch.positions import Position, marker, marker_key, resume_offsets
from stormwatch.sinks.metrics import PipelineMetrics, Telemetry, appended_at, appended_header
from stormwatch.watch import WatchFile

log = logging.getLogger(__name__)


async def changelog_flushed(app: faust.App) -> None:
    """Drain Faust's producer buffer, where table changelog writes wait.

    Faust may commit an event's offset while that event's changelog write still sits
    in this buffer, and a stopping worker drops what is left in it: the restarted
    worker then resumes after posts its restored state never counted. Draining the
    buffer before the agent moves on (and so before the event can be acknowledged)
    closes that gap; the restart test caught it.
    """
    await app.producer.buffer.flush()


async def delivered(futures: list[Awaitable[Any]]) -> None:
    """Wait until Kafka has acknowledged every send (raises if one failed)."""
    if futures:
        await asyncio.gather(*futures)


def in_context_of(event: EventT) -> None:
    """Make ``event`` the current event of this task while a ``take_events`` batch is handled.

    Faust writes a table change to the changelog partition of the current event, and
    inside a batch that is not the event being handled (or none at all): each event's
    state change must go to its own partition, or a rebalance restores it on the wrong
    worker. Only the task's context variable is set: the stream's ``current_event``
    attribute is how its background reader pairs the next value with its event, and
    overwriting it there pairs a new value with an old event.
    """
    faust_streams._current_event.set(weakref.ref(event))


def write_markers(table: faust.Table, events: list[EventT]) -> None:
    """After a batch's states: one marker per input partition with its last offset there
    (see :func:`stormwatch.positions.marker_key`), each on its own changelog partition."""
    last: dict[int, EventT] = {}
    for event in events:
        last[event.message.partition] = event
    for partition, event in sorted(last.items()):
        in_context_of(event)
        table[marker_key(partition)] = marker(Position(partition, event.message.offset))


def _where(event: EventT) -> str:
    m = event.message
    return f"{m.topic}:{m.partition}:{m.offset}"


def _position(event: EventT, source: int | None = None) -> Position:
    return Position(event.message.partition, event.message.offset, source)


def resume_from_state(app: faust.App, table: faust.Table, source: faust.TopicT) -> None:
    """Once ``table`` is restored, resume ``source`` where the restored state stopped.

    Faust commits an event's offset independently of the table's changelog write for
    it, so after a restart the committed offset can be ahead of the restored state
    (records lost) or behind it (records applied twice). The state records carry the
    input position they applied; this commits, for each input partition this worker now
    owns, one past the highest of them, just before Faust seeks every partition to its
    committed offset (table recovery callbacks run right before that seek).
    """
    topic = source.get_topic_name()

    async def on_recover() -> None:
        parts = [tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic]
        if not parts:
            return
        offsets = resume_offsets(table.values(), parts)
        log.info("resuming %s from restored %s state at %s", topic, table.name, offsets)
        # The consumer's commit of explicit offsets (faust's public commit() only commits
        # what the agents have acknowledged).
        await app.consumer._commit({TP(topic, p): o for p, o in offsets.items()})

    table.on_recover(on_recover)


def serve_metrics(app: faust.App, settings: Settings, tele: Telemetry) -> None:
    """Serve ``/metrics`` (and the JSON panels) once the worker starts."""

    @app.task
    async def start_http() -> None:
        tele.serve(settings.metrics_host, settings.metrics_port)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)


def watch_lag(app: faust.App, settings: Settings, tele: Telemetry | None) -> None:
    """Every ``metrics_lag_interval`` seconds read the group's lag: export it (with metrics
    on) and watch this worker's partitions for a stall (:class:`~stormwatch.app.lag.StallWatch`).

    A partition that holds records without a commit for ``stall_seconds`` is logged as an
    error and counted in ``stormwatch_stalled_partitions``; with ``stall_exit`` the worker
    then exits with :data:`~stormwatch.app.lag.STALL_EXIT_CODE` at once (no graceful shutdown: what stalled
    may hold it up), and its supervisor starts it again. That is safe by design: a
    worker killed at any point resumes from its restored state and pages nothing twice
    (docs/reliability.md), and a restart is what clears the consumer stall seen there.
    """
    from stormwatch.app.lag import STALL_EXIT_CODE, LagReader, StallWatch, per_topic

    reader = LagReader(settings)  # its clients live as long as the worker
    stalls = StallWatch(settings.stall_seconds) if settings.stall_seconds > 0 else None
    prefix = len(settings.topic_prefix)

    @app.on_before_shutdown.connect
    async def close_lag_reader(sender: faust.App, **kwargs: Any) -> None:
        await reader.close()

    @app.timer(settings.metrics_lag_interval)
    async def read_lag() -> None:
        try:
            parts = await reader.partitions()
        except Exception as exc:  # the metric keeps its last value; the next tick tries afresh
            log.warning("cannot read the consumer lag: %r", exc)
            await reader.close()
            return
        if tele is not None:
            tele.metrics.record_lag(per_topic(parts))
        if stalls is None:
            return
        mine = {(tp.topic[prefix:], tp.partition) for tp in app.assignor.assigned_actives()}
        stalled = stalls.observe(time.monotonic(), {k: v for k, v in parts.items() if k in mine})
        if tele is not None:
            tele.metrics.record_stalled(stalled)
        if not stalled:
            return
        what = ", ".join(f"{t}[{p}] at offset {parts[t, p][0]} with {parts[t, p][2]} records waiting "
                         f"for {s:.0f} s" for (t, p), s in stalled.items())
        if not settings.stall_exit:
            log.error("stalled partitions: %s", what)
            return
        log.critical("stalled partitions: %s; exiting with %d so the worker is restarted",
                     what, STALL_EXIT_CODE)
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(STALL_EXIT_CODE)


def create_app(settings: Settings, scorer: nlp.Scorer | None = None) -> faust.App:
    """Build the worker's Faust app from settings (a new app object each call)."""
    plugins.load(settings.plugins)
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
        broker_session_timeout=settings.session_timeout,
        broker_max_poll_interval=settings.max_poll_interval,
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

    app.sensors.add(RebalanceLog())
    buckets, monitors = table("buckets"), table("monitors")
    resume_from_state(app, buckets, scored_t)
    resume_from_state(app, monitors, stats_t)

    # The watch config (brand queries, detection presets), read again when its file changes.
    watch = WatchFile(settings.watch) if settings.watch else None
    enricher = Enricher(scorer or nlp.make(settings.scorer), watch.config if watch else None)
    det = Detection(monitors, settings.detector, settings.detector_params, settings.policy,
                    watch.config if watch else None, settings.bucket_seconds)
    if watch is not None:
        log.warning("watch config %s version %s", watch.path, watch.config.version)

        unmatched = [0]

        @app.timer(interval=settings.watch_poll)
        async def reload_watch() -> None:
            cfg = watch.poll()
            if cfg is not None:  # both steps decide their next records with it
                enricher.set_watch(cfg)
                det.set_watch(cfg)
            if enricher.unmatched != unmatched[0]:
                unmatched[0] = enricher.unmatched
                log.info("posts naming no watched brand so far: %d", unmatched[0])

    # Brand labels: the watch config's brands always, others up to a cap (never raw text).
    tele = Telemetry(PipelineMetrics(brands=watch.config.brands if watch else ()))
    if settings.metrics_port:
        serve_metrics(app, settings, tele)
    if settings.metrics_port or settings.stall_seconds > 0:
        watch_lag(app, settings, tele if settings.metrics_port else None)

    async def to_dlq(dl: DeadLetter) -> Awaitable[Any]:
        tele.dead(dl)
        return await dlq_t.send(key=dl.reason.encode(), value=dumps(dl))

    @app.agent(raw_t, name="enrich")
    async def enrich(stream: faust.StreamT) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(settings.scorer_batch, within=settings.scorer_within):
            # In a thread: a model batch must not stall the event loop (heartbeats, commits,
            # the other agents) however long it takes.
            results = await loop.run_in_executor(None, enricher.enrich_matched, [e.value for e in events],
                                                 [_where(e) for e in events])
            matching = enricher.matcher is not None
            sent = []
            for event, item in zip(events, results, strict=True):
                if isinstance(item, DeadLetter):
                    sent.append(await to_dlq(item))
                    continue
                for sp in item:  # one per brand; none for a post that names no watched brand
                    if matching:
                        # Brands come from the text, not from the raw record's key: each copy goes
                        # to its brand's partition (by key), so the raw offset says nothing there.
                        sent.append(await scored_t.send(key=sp.post.brand.encode(), value=dumps(sp),
                                                        headers=appended_header(event.message.timestamp)))
                    else:
                        sp = dataclasses.replace(sp, source_offset=event.message.offset)
                        sent.append(await scored_t.send(key=sp.post.brand.encode(), value=dumps(sp),
                                                        partition=event.message.partition,
                                                        headers=appended_header(event.message.timestamp)))
            await delivered(sent)  # before these events' offsets can be committed
            tele.enriched(results, [e.message.timestamp for e in events])

    @app.agent(scored_t, name="aggregate")
    async def aggregate(stream: faust.StreamT) -> None:
        agg = Aggregator(buckets, settings.bucket_seconds, settings.lateness_seconds)
        async for events in stream.take_events(settings.stage_batch, within=settings.stage_within):
            # Count the whole batch in memory, send each brand's closed buckets once, wait for
            # Kafka, acknowledge them, then write each brand's state once and drain the
            # changelog: per batch, not per post, one round trip and one state record per
            # brand. Faust acknowledges the batch's offsets only after this body returns.
            agg.begin_batch()
            last: dict[str, EventT] = {}  # per brand, its last event (a brand's posts share a partition)
            for event in events:
                in_context_of(event)
                try:
                    sp = ScoredPost.from_dict(json.loads(event.value))
                    last[sp.post.brand] = event
                    agg.count(sp, _position(event, sp.source_offset))
                except Exception as exc:  # a bad record must not stop the stream
                    await to_dlq(dead_letter("aggregate", event.value, "bad_record", repr(exc)[:500],
                                             _where(event)))
                    continue
            closed = {brand: pending for brand in last if (pending := agg.pending(brand))}
            sends = []
            for brand, brand_stats in closed.items():
                ev = last[brand]
                headers = appended_header(appended_at(ev.headers, ev.message.timestamp))
                sends += [await stats_t.send(key=st.series.encode(), value=dumps(st),
                                             partition=ev.message.partition, headers=headers)
                          for st in brand_stats]
            await delivered(sends)
            for brand in closed:
                agg.ack(brand)  # only once Kafka has them
            agg.end_batch(before_write=lambda key, last=last: in_context_of(last[key]))
            write_markers(buckets, events)
            await changelog_flushed(app)
            for event in events:
                tele.aggregated(event.message.timestamp)

    @app.agent(stats_t, name="detect")
    async def detect(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.stage_batch, within=settings.stage_within):
            det.begin_batch()  # as in aggregate: one state record per series and batch
            last: dict[str, EventT] = {}
            outboxes: dict[str, list[Alert]] = {}
            for event in events:
                in_context_of(event)
                try:
                    st = SeriesStats.from_dict(json.loads(event.value))
                except Exception as exc:
                    await to_dlq(dead_letter("detect", event.value, "bad_record", repr(exc)[:500],
                                             _where(event)))
                    continue
                last[st.series] = event
                try:
                    alerts = det.observe(st, _position(event))
                except Exception as exc:  # a detector bug on one bucket: that bucket only
                    log.exception("detector failed on %s", _where(event))
                    await to_dlq(dead_letter("detect", event.value, "detector_error", repr(exc)[:500],
                                             _where(event)))
                    continue
                new = [a for a in alerts if a not in outboxes.get(st.series, [])]
                if alerts:  # the series' whole outbox: the latest list wins
                    outboxes[st.series] = alerts
                tele.detected(st, det.last, new, event.message.timestamp, appended_at(event.headers))
            await delivered([await alerts_t.send(key=alert.id.encode(), value=dumps(alert))
                             for alerts in outboxes.values() for alert in alerts])
            for series in outboxes:
                in_context_of(last[series])
                det.ack(series)  # only once Kafka has them
            det.end_batch(before_write=lambda key, last=last: in_context_of(last[key]))
            write_markers(monitors, events)
            await changelog_flushed(app)

    return app
