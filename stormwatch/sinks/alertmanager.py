"""Paging: every alert state change on ``alerts`` becomes a push to Alertmanager's v2 API.

``stormwatch page --alertmanager URL`` runs it. The mapping from an alert record to the
Alertmanager payload is pure (:func:`to_alertmanager`), and so is the incident memory
(:class:`Pager`); only :func:`run` reads Kafka and makes HTTP calls.

How one incident pages once, and only once:

* The label set of an incident is stable: ``alertname="StormwatchCrisis"``, ``alert_id``
  (series + first anomalous bucket), ``brand``, ``channel``, ``severity``, ``crisis_type``,
  ``team``. Alertmanager identifies an alert by its labels, so re-sending the same
  incident (the periodic re-send while it fires, a retry, a restarted pager, a second
  pager) updates one alert and never notifies twice. The labels an incident was first
  sent with are kept for its later events (a crisis type refined later changes an
  annotation, not the identity).
* While firing, the alert is re-sent every ``resend_s`` seconds with ``endsAt`` a few
  re-sends ahead; a resolve sends ``endsAt`` = the resolving bucket's time.
* An escalation (warning → critical) is a new alert (its severity label differs) and
  pages as such; the warning one is resolved at the same moment, and Alertmanager's
  inhibition (critical silences warning for the same series) covers the gap.
* ``alerts`` is compacted and keyed by alert id: it *is* the incident state. On start the
  pager reads it from the beginning without pushing, then pushes the state it found
  (open incidents firing, recently resolved ones resolved) and follows new records.

>>> from stormwatch.model import Alert
>>> from datetime import datetime, UTC
>>> t = datetime(2015, 2, 22, 22, 22, tzinfo=UTC)
>>> a = Alert("US Airways/*@2015-02-22T22:22Z", "open", "US Airways", "*", "warning", t, t,
...           5.0, 0.644, 0.0, 2.1, 0.93, "seasonal-baseline", 0.85, 0.8)
>>> p = to_alertmanager(a.to_dict(), now=t.timestamp(), evidence_base="http://sw:9464")
>>> p["labels"]
{'alertname': 'StormwatchCrisis', 'alert_id': 'US Airways/*@2015-02-22T22:22Z', 'brand': 'US Airways', \
'channel': 'all', 'severity': 'warning', 'crisis_type': 'unknown', 'team': 'social'}
>>> p["annotations"]["summary"]
'US Airways (all channels): 5 posts in a minute, 0.6 expected'
>>> p["startsAt"], p["endsAt"]
('2015-02-22T22:22:00Z', '2015-02-22T22:27:00Z')
>>> p["annotations"]["evidence_url"]
'http://sw:9464/api/alerts/US%20Airways/%2A%402015-02-22T22%3A22Z'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import logging
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from stormwatch.config import Settings
from stormwatch.model import ALL_CHANNELS
from stormwatch.sinks.metrics import channel_label

log = logging.getLogger(__name__)

ALERTNAME = "StormwatchCrisis"
#: The playbook link when an alert names none (the crisis-alert section of the on-call guide).
DEFAULT_RUNBOOK = "docs/oncall.md#stormwatchcrisis"
#: A firing alert's endsAt lies this many re-send intervals ahead (missed re-sends tolerated).
ENDS_AHEAD = 5
#: After a fetch, the pager goes on reading what follows at once (gaps < 0.25 s) for at most
#: this long, so that records written together are pushed together (see Pager.apply_batch).
DRAIN_S = 2.0
Payload = dict[str, Any]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def playbook_url(alert: Mapping[str, Any], default: str = DEFAULT_RUNBOOK) -> str:
    """The playbook link of an alert: its ``playbook`` (a URL, or an object with ``url``).

    >>> playbook_url({"playbook": {"name": "outage", "url": "https://wiki/outage"}})
    'https://wiki/outage'
    >>> playbook_url({"playbook": "https://wiki/fees"}), playbook_url({})
    ('https://wiki/fees', 'docs/oncall.md#stormwatchcrisis')
    """
    pb = alert.get("playbook")
    if isinstance(pb, Mapping):
        pb = pb.get("url") or pb.get("link")
    return pb if isinstance(pb, str) and pb else default


def base_labels(alert: Mapping[str, Any]) -> dict[str, str]:
    """The labels of an incident, without its severity (they never change for one id)."""
    return {"alertname": ALERTNAME, "alert_id": str(alert["id"]), "brand": str(alert["brand"]),
            "channel": channel_label(str(alert["channel"])),
            "crisis_type": str(alert.get("crisis_type") or "unknown"), "team": "social"}


def _labels(base: Mapping[str, str], severity: str) -> dict[str, str]:
    labels = dict(base)
    crisis = labels.pop("crisis_type")
    team = labels.pop("team")
    labels.update(severity=severity, crisis_type=crisis, team=team)
    return labels


def to_alertmanager(alert: Mapping[str, Any], now: float, resend_s: float = 60.0, evidence_base: str = "",
                    labels: Mapping[str, str] | None = None, severity: str | None = None,
                    resolved: bool | None = None) -> Payload:
    """One Alertmanager v2 alert for an alert record (``Alert.to_dict()``).

    ``labels`` are the incident's first labels (default: from this record), ``severity``
    overrides the record's, ``resolved`` too (default: the record is a resolve).
    """
    sev = severity or str(alert["severity"])
    is_resolved = alert["event"] == "resolve" if resolved is None else resolved
    channel = str(alert["channel"])
    where = "all channels" if channel == ALL_CHANNELS else channel
    observed, expected = float(alert["observed"]), float(alert["expected"])
    neg = alert.get("negative_share")
    samples = [f"{pid}: {text[:200]}" for pid, text in list(alert.get("samples") or [])[:3]]
    annotations = {
        "summary": f"{alert['brand']} ({where}): {observed:g} posts in a minute, {expected:.1f} expected",
        "description": (f"observed {observed:g} vs expected {expected:.2f} (band "
                        f"{float(alert['lower']):.2f}..{float(alert['upper']):.2f}); {alert['detector']} "
                        f"score {float(alert['score']):.4f} (threshold {alert['threshold']})"
                        + (f"; negative share {float(neg):.0%}" if neg is not None else "")),
        "observed": f"{observed:g}",
        "expected": f"{expected:.3f}",
        "band": f"{float(alert['lower']):.3f}..{float(alert['upper']):.3f}",
        "event": str(alert["event"]),
        "started_at": str(alert["started_at"]),
        "runbook_url": playbook_url(alert),
        "evidence": "\n".join(samples),
    }
    if evidence_base:
        annotations["evidence_url"] = f"{evidence_base.rstrip('/')}/api/alerts/{quote(str(alert['id']))}"
    ends = _ts(str(alert["at"])) if is_resolved else now + ENDS_AHEAD * resend_s
    payload: Payload = {
        "labels": _labels(labels or base_labels(alert), sev),
        "annotations": annotations,
        "startsAt": str(alert["started_at"]),
        "endsAt": _iso(ends),
    }
    if evidence_base:
        payload["generatorURL"] = annotations["evidence_url"]
    return payload


@dataclass
class Incident:
    labels: dict[str, str]
    last: dict[str, Any]
    severities: list[str] = field(default_factory=list)  # every severity it has fired with


class Pager:
    """Incident memory of the paging sink: what to push for each alert record.

    >>> pager = Pager()
    >>> rec = {"id": "A/*@x", "event": "open", "brand": "A", "channel": "*", "severity": "warning",
    ...        "started_at": "2015-02-22T22:22:00Z", "at": "2015-02-22T22:22:00Z", "observed": 5,
    ...        "expected": 1, "lower": 0, "upper": 2, "score": 0.9, "detector": "d", "threshold": 0.85}
    >>> [p["labels"]["severity"] for p in pager.apply(rec, now=0)]
    ['warning']
    >>> up = pager.apply({**rec, "event": "escalate", "severity": "critical"}, now=0)
    >>> [(p["labels"]["severity"], p["endsAt"]) for p in up]
    [('critical', '1970-01-01T00:05:00Z'), ('warning', '2015-02-22T22:22:00Z')]
    >>> len(pager.firing(now=0))
    1
    """

    def __init__(self, resend_s: float = 60.0, evidence_base: str = "",
                 resolved_window_s: float = 24 * 3600) -> None:
        self.resend_s = resend_s
        self.evidence_base = evidence_base
        self.resolved_window_s = resolved_window_s
        self.incidents: dict[str, Incident] = {}

    def _payload(self, inc: Incident, now: float, severity: str, resolved: bool) -> Payload:
        return to_alertmanager(inc.last, now, self.resend_s, self.evidence_base, inc.labels, severity,
                               resolved)

    def apply(self, alert: Mapping[str, Any], now: float) -> list[Payload]:
        """Take one alert record; return the pushes it causes (its severity first)."""
        inc = self.incidents.get(str(alert["id"]))
        if inc is None:
            inc = self.incidents[str(alert["id"])] = Incident(base_labels(alert), dict(alert))
        inc.last = dict(alert)
        sev = str(alert["severity"])
        if sev not in inc.severities:
            inc.severities.append(sev)
        if alert["event"] == "resolve":
            return [self._payload(inc, now, s, True) for s in inc.severities]
        return [self._payload(inc, now, sev, False)] + [self._payload(inc, now, s, True)
                                                        for s in inc.severities if s != sev]

    def apply_batch(self, alerts: Sequence[Any], now: float,
                    skip: Callable[[int, Exception], None] | None = None) -> list[Payload]:
        """Take records read together; return their pushes, a brand-wide incident's resolve
        after all the others. (Alertmanager inhibits a per-channel incident while its
        brand-wide one fires: were the brand-wide resolve pushed first, the per-channel one
        would be uninhibited for a moment, and page, just before its own resolve arrives.)
        A record that is not an alert raises, or is passed to ``skip`` with its index.

        >>> pager = Pager()
        >>> rec = {"event": "resolve", "brand": "A", "severity": "warning",
        ...        "started_at": "2015-02-22T22:22:00Z", "at": "2015-02-22T22:52:00Z", "observed": 1,
        ...        "expected": 1, "lower": 0, "upper": 2, "score": 0.1, "detector": "d", "threshold": 0.85}
        >>> wide, twin = {**rec, "id": "A/*@x", "channel": "*"}, {**rec, "id": "A/tw@x", "channel": "tw"}
        >>> [p["labels"]["alert_id"] for p in pager.apply_batch([wide, ["bad"], twin], 0, print)]
        1 list indices must be integers or slices, not str
        ['A/tw@x', 'A/*@x']
        """
        pushes: list[Payload] = []
        last: list[Payload] = []
        for i, alert in enumerate(alerts):
            try:
                out = self.apply(alert, now)
            except (ValueError, KeyError, TypeError) as exc:
                if skip is None:
                    raise
                skip(i, exc)
                continue
            brand_wide_resolve = alert["event"] == "resolve" and alert["channel"] == ALL_CHANNELS
            (last if brand_wide_resolve else pushes).extend(out)
        return pushes + last

    def firing(self, now: float) -> list[Payload]:
        """Re-sends for every incident still open."""
        return [self._payload(inc, now, str(inc.last["severity"]), False)
                for inc in self.incidents.values() if inc.last["event"] != "resolve"]

    def snapshot(self, now: float) -> list[Payload]:
        """Everything a (re)started pager pushes once it has read the topic: open incidents
        firing, and those resolved within ``resolved_window_s`` of the newest event resolved."""
        newest = max((_ts(str(i.last["at"])) for i in self.incidents.values()), default=0.0)
        out = self.firing(now)
        for inc in self.incidents.values():
            if inc.last["event"] == "resolve" and _ts(str(inc.last["at"])) >= newest - self.resolved_window_s:
                out += [self._payload(inc, now, s, True) for s in inc.severities]
        return out


def extend_firing(alerts: Sequence[Payload], made: float, now: float) -> list[Payload]:
    """The alerts as they should be sent at ``now`` when they were made at ``made``: a firing
    alert's ``endsAt`` (ahead of ``made``) moves on by the time spent retrying, so that an
    alert held back by an outage longer than its lead does not arrive already expired (and
    briefly resolved); a resolved one (``endsAt`` not ahead) is left as it is.

    >>> made = _ts("2026-03-02T10:00:00Z")
    >>> out = extend_firing([{"endsAt": "2026-03-02T10:05:00Z"}, {"endsAt": "2026-03-02T09:58:00Z"}, {}],
    ...                     made, made + 600)
    >>> out
    [{'endsAt': '2026-03-02T10:15:00Z'}, {'endsAt': '2026-03-02T09:58:00Z'}, {}]
    """
    if now <= made:
        return list(alerts)
    out: list[Payload] = []
    for a in alerts:
        ends = a.get("endsAt")
        if isinstance(ends, str) and _ts(ends) > made:
            a = {**a, "endsAt": _iso(_ts(ends) + now - made)}
        out.append(a)
    return out


#: Seconds between pushing firing brand-wide alerts and the per-channel ones they inhibit.
INHIBIT_SETTLE_S = 0.5


def split_sources(alerts: Sequence[Payload], now: float) -> tuple[list[Payload], list[Payload]]:
    """(firing brand-wide alerts, everything else), each in its order.

    >>> wide = {"labels": {"channel": "all"}, "endsAt": "2099-01-01T00:00:00Z"}
    >>> twin = {"labels": {"channel": "twitter"}, "endsAt": "2099-01-01T00:00:00Z"}
    >>> gone = {"labels": {"channel": "all"}, "endsAt": "2015-02-22T22:52:00Z"}
    >>> split_sources([twin, gone, wide], now=1.8e9) == ([wide], [twin, gone])
    True
    """
    first: list[Payload] = []
    rest: list[Payload] = []
    for a in alerts:
        firing = _ts(str(a.get("endsAt", ""))) > now if a.get("endsAt") else True
        brand_wide = a.get("labels", {}).get("channel") == channel_label(ALL_CHANNELS)
        (first if firing and brand_wide else rest).append(a)
    return first, rest


class AlertmanagerClient:
    """POST alerts to ``URL/api/v2/alerts``, retrying with exponential backoff while it is down."""

    def __init__(self, url: str, timeout_s: float = 10.0, max_backoff_s: float = 30.0) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.timeout_s = timeout_s
        self.max_backoff_s = max_backoff_s
        self.sent = 0

    def post_once(self, alerts: Sequence[Payload]) -> None:
        req = urllib.request.Request(self.url, data=json.dumps(list(alerts)).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            resp.read()

    async def push(self, alerts: Sequence[Payload], chunk: int = 200,
                   settle_s: float = INHIBIT_SETTLE_S) -> None:
        """Send all of them; a 4xx answer (a payload Alertmanager refuses) is logged, not retried.

        Anything else that fails (refused or dropped connection, timeout, 5xx, an answer
        cut short) is retried with exponential backoff until it is accepted: a re-send is
        harmless, Alertmanager identifies an alert by its labels. Each retry sends firing
        alerts with ``endsAt`` moved on by the time spent (:func:`extend_firing`).

        Firing brand-wide alerts go first, and the rest ``settle_s`` later: Alertmanager's
        inhibitor learns of a new source alert asynchronously, and a per-channel alert that
        arrives with it (an incident older than ``group_wait`` is notified at once) can
        slip through before it is inhibited.
        """
        first, rest = split_sources(alerts, time.time())
        if first and rest:
            await self._push(first, chunk)
            await asyncio.sleep(settle_s)
            alerts = rest
        await self._push(alerts, chunk)

    async def _push(self, alerts: Sequence[Payload], chunk: int) -> None:
        for i in range(0, len(alerts), chunk):
            part = alerts[i:i + chunk]
            backoff, retries, first, wall = 0.5, 0, time.monotonic(), time.time()
            while True:
                try:
                    await asyncio.to_thread(self.post_once, extend_firing(part, wall, time.time()))
                    self.sent += len(part)
                    if retries:
                        log.info("Alertmanager at %s back: %d alerts sent after %d retries (%.1f s)",
                                 self.url, len(part), retries, time.monotonic() - first)
                    break
                except urllib.error.HTTPError as exc:
                    if 400 <= exc.code < 500:
                        log.error("Alertmanager refused %d alerts: %s %s", len(part), exc.code,
                                  exc.read()[:500].decode("utf-8", "replace"))
                        break
                    reason = f"HTTP {exc.code}"
                except (OSError, http.client.HTTPException) as exc:  # HTTPException: a broken answer
                    reason = repr(exc)
                log.warning("Alertmanager at %s unavailable (%s); retrying in %.1f s", self.url, reason,
                            backoff)
                retries += 1
                await asyncio.sleep(backoff)
                backoff = min(self.max_backoff_s, backoff * 2)


async def run(settings: Settings, client: AlertmanagerClient, pager: Pager,
              stop: asyncio.Event | None = None) -> None:
    """Rebuild the incident state from the alerts topic, push it, then follow the topic."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    stop = stop or asyncio.Event()
    topic = settings.topic("alerts")
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka, group_id=f"{settings.app_id}-pager",
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                isolation_level="read_committed")
    await consumer.start()
    try:
        parts: set[int] = set()
        while not parts and not stop.is_set():
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
            if not parts:
                log.info("waiting for topic %s", topic)
                await asyncio.sleep(2.0)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        caught_up = False
        last_resend = time.monotonic()
        while not stop.is_set():
            batch = await consumer.getmany(*tps, timeout_ms=1000)
            if batch and caught_up:
                # Records written together (a brand-wide resolve and its per-channel twins', on
                # different partitions) may come in separate fetches: take what follows at once.
                deadline = time.monotonic() + DRAIN_S
                while time.monotonic() < deadline and (more := await consumer.getmany(*tps, timeout_ms=250)):
                    for tp, recs in more.items():
                        batch.setdefault(tp, []).extend(recs)
            read: list[tuple[str, Any]] = []
            for records in batch.values():
                for rec in records:
                    where = f"{rec.topic}:{rec.partition}:{rec.offset}"
                    try:
                        read.append((where, json.loads(rec.value)))
                    except ValueError as exc:
                        log.warning("skipping a bad alert record at %s: %r", where, exc)

            def skip(i: int, exc: Exception, read: list[tuple[str, Any]] = read) -> None:
                log.warning("skipping a bad alert record at %s: %r", read[i][0], exc)

            out = pager.apply_batch([a for _, a in read], time.time(), skip)
            pushes: list[Payload] = out if caught_up else []
            if not caught_up:
                positions = {tp: await consumer.position(tp) for tp in tps}
                if all(positions[tp] >= ends[tp] for tp in tps):
                    caught_up = True
                    pushes = pager.snapshot(time.time())
                    log.info("read %d incidents from %s; pushing %d alerts", len(pager.incidents), topic,
                             len(pushes))
            if pushes:
                await client.push(pushes)
            if batch and caught_up:
                await consumer.commit()  # for lag monitoring only: a start always re-reads the topic
            if caught_up and time.monotonic() - last_resend >= pager.resend_s:
                await client.push(pager.firing(time.time()))
                last_resend = time.monotonic()
    finally:
        await consumer.stop()


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    if not args.alertmanager.startswith(("http://", "https://")):
        print(f"stormwatch page: --alertmanager must be an http(s) URL, got {args.alertmanager!r}",
              file=sys.stderr)
        return 2
    if args.resend <= 0:
        print("stormwatch page: --resend must be > 0 seconds", file=sys.stderr)
        return 2
    pager = Pager(args.resend, args.evidence_url or "")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(settings, AlertmanagerClient(args.alertmanager), pager))
    return 0
