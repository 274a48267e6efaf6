"""Escalation on top of the alert policy: acknowledge, re-send, escalate, resolve.

The alert policy (:mod:`stormwatch.detectors.policy`) opens an incident, raises it
from warning to critical (by score, duration or reach) and resolves it once the series
has been calm for ``clear_buckets`` buckets. :class:`Escalation` is the people side,
a pure state machine driven by three inputs — alert events, acknowledgements/resolves
from people, and a clock — that returns the state changes to publish:

* a **critical** incident nobody acknowledges is re-sent after the playbook's
  ``resend_after_minutes`` and moved one level up its escalation ``levels`` each time
  (event ``resend``, ``level`` = the level now paged);
* ``ack`` stops the re-sending (event ``ack``, ``by`` = who); ``resolve`` by a person
  closes it (event ``resolve``, ``by`` = who);
* a ``resolve`` from the policy (the series is back in its band) closes it too, acked
  or not: the automatic resolve;
* events this machine published come back on the ``alerts`` topic and are applied
  idempotently, so the state can be rebuilt by reading the topic from its start.

Incidents are per series, i.e. per brand and per channel; the re-send delay can be
set per brand or channel (``overrides``). The clock is the caller's (seconds);
incidents also keep a bounded impact timeline fed from the ``stats`` records.

>>> from datetime import datetime, UTC
>>> from stormwatch.model import Alert
>>> t = datetime(2015, 2, 22, 22, 22, tzinfo=UTC)
>>> a = Alert("US Airways/*@2015-02-22T22:22Z", "open", "US Airways", "*", "critical", t, t,
...           40, 8, 2, 15, 0.999, "seasonal-baseline", 0.85, playbook="service")
>>> esc = Escalation()
>>> esc.on_alert(a, now=0)
[]
>>> esc.tick(now=29 * 60), [(e.event, e.level) for e in esc.tick(now=30 * 60)]
([], [('resend', 1)])
>>> esc.ack(a.id, "maria", now=31 * 60).event, esc.tick(now=120 * 60)
('ack', [])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stormwatch.crisis.playbooks import Playbook, default_playbooks, playbook_id
from stormwatch.model import Alert, SeriesStats, series_key

#: Who the machine's own events are "by".
SYSTEM = "stormwatch"
#: Points an incident's timeline keeps (one per bucket: a day of minutes).
TIMELINE_POINTS = 1440
#: Buckets of calm after the resolve that the timeline still records.
AFTER_RESOLVE_POINTS = 60
#: Points per series kept for incidents that have not arrived yet.
RECENT_POINTS = 240
#: Incidents kept; the oldest resolved ones are forgotten first.
MAX_INCIDENTS = 5000


class IncidentError(Exception):
    """A request the incident's state does not allow; ``status`` is the HTTP code to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Incident:
    """What the machine knows about one incident (one alert id)."""

    alert: Alert  # the latest event seen or published for it
    state: str = "open"  # open | acknowledged | resolved
    level: int = 0
    notified_at: float = 0.0  # clock time of the last page (open, escalate or resend)
    opened_at: float = 0.0
    acked_by: str = ""
    acked_at: float | None = None
    resolved_by: str = ""
    resolved_at: datetime | None = None  # event time of the resolve
    history: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    after_resolve: int = 0

    def summary(self) -> dict[str, Any]:
        a = self.alert
        return {"id": a.id, "brand": a.brand, "channel": a.channel, "severity": a.severity,
                "state": self.state, "level": self.level, "kind": a.kind,
                "started_at": _iso(a.started_at), "last_event": a.event, "last_event_at": _iso(a.at),
                "crisis_type": a.crisis_type, "crisis_share": a.crisis_share, "playbook": a.playbook,
                "observed": a.observed, "expected": a.expected, "score": a.score,
                "acked_by": self.acked_by or None, "resolved_by": self.resolved_by or None}


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Escalation:
    """Incidents by alert id, and the rules that re-send and escalate them."""

    def __init__(self, playbooks: Mapping[str, Playbook] | None = None,
                 overrides: Mapping[str, float] | None = None, resend_warnings: bool = False) -> None:
        self.playbooks = dict(playbooks if playbooks is not None else default_playbooks())
        #: re-send delay in minutes per "brand/channel", "brand/*" or "*/channel"
        self.overrides = dict(overrides or {})
        self.resend_warnings = resend_warnings
        self.incidents: dict[str, Incident] = {}
        #: the latest timeline points of every series, so an incident whose stats arrived
        #: before its alert still gets its timeline from the first bucket
        self.recent: dict[str, list[dict[str, Any]]] = {}

    # -- policy -----------------------------------------------------------------------
    def _playbook(self, alert: Alert) -> Playbook | None:
        return self.playbooks.get(alert.playbook or playbook_id(alert.crisis_type))

    def resend_after(self, alert: Alert) -> float:
        """Seconds before an unacknowledged critical incident is re-sent."""
        for key in (series_key(alert.brand, alert.channel), series_key(alert.brand),
                    f"*/{alert.channel}"):
            if key in self.overrides:
                return float(self.overrides[key]) * 60
        book = self._playbook(alert)
        return (book.escalation.resend_after_minutes if book else 15.0) * 60

    def levels(self, alert: Alert) -> tuple[str, ...]:
        book = self._playbook(alert)
        return book.escalation.levels if book else ("on-call",)

    # -- inputs -----------------------------------------------------------------------
    def on_alert(self, alert: Alert, now: float) -> list[Alert]:
        """An event from the ``alerts`` topic. Returns events to publish (none so far:
        the policy's events are already on the topic; ours are applied idempotently)."""
        inc = self.incidents.get(alert.id)
        if inc is None:
            if alert.event != "open":
                return []  # the middle of an incident we never saw open: nothing to page
            inc = self.incidents[alert.id] = Incident(alert=alert, notified_at=now, opened_at=now,
                                                      level=alert.level)
            since = _iso(alert.started_at)
            inc.timeline = [p for p in self.recent.get(alert.series, []) if p["t"] >= since]
            self._log(inc, alert, now)
            self._forget_old()
            return []
        if alert.event == "open":
            return []  # a repeat (at least once delivery)
        if alert.by:  # published by an escalation machine (this one, or one before a restart)
            self._apply_own(inc, alert, now)
            return []
        inc.alert = dataclasses.replace(alert, level=inc.level)
        self._log(inc, alert, now)
        if alert.event == "escalate" and inc.state == "open":
            inc.notified_at = now  # the escalation itself was a page
        elif alert.event == "resolve" and inc.state != "resolved":
            inc.state, inc.resolved_at = "resolved", alert.at  # automatic: back in its band
        return []

    def _apply_own(self, inc: Incident, alert: Alert, now: float) -> None:
        if alert.event == "ack" and inc.state == "open":
            inc.state, inc.acked_by, inc.acked_at = "acknowledged", alert.by, now
        elif alert.event == "resolve" and inc.state != "resolved":
            inc.state, inc.resolved_by, inc.resolved_at = "resolved", alert.by, alert.at
        elif alert.event == "resend" and alert.level > inc.level:
            inc.level, inc.notified_at = alert.level, now
        else:
            return
        self._log(inc, alert, now)

    def ack(self, alert_id: str, by: str, now: float) -> Alert:
        """A person acknowledges: no more re-sends. Returns the event to publish."""
        inc = self._get(alert_id)
        if inc.state == "resolved":
            raise IncidentError(409, f"incident {alert_id!r} is already resolved")
        if inc.state == "acknowledged":
            raise IncidentError(409, f"incident {alert_id!r} was acknowledged by {inc.acked_by}")
        inc.state, inc.acked_by, inc.acked_at = "acknowledged", by, now
        return self._publish(inc, "ack", by, now)

    def resolve(self, alert_id: str, by: str, now: float) -> Alert:
        """A person resolves the incident. Returns the event to publish."""
        inc = self._get(alert_id)
        if inc.state == "resolved":
            raise IncidentError(409, f"incident {alert_id!r} is already resolved")
        ev = self._publish(inc, "resolve", by, now)
        inc.state, inc.resolved_by, inc.resolved_at = "resolved", by, ev.at
        return ev

    def tick(self, now: float) -> list[Alert]:
        """Re-send (one level up) every critical incident unacknowledged for too long."""
        out = []
        for inc in self.incidents.values():
            a = inc.alert
            if inc.state != "open" or (a.severity != "critical" and not self.resend_warnings):
                continue
            if now - inc.notified_at >= self.resend_after(a):
                inc.level = min(inc.level + 1, len(self.levels(a)) - 1)
                inc.notified_at = now
                out.append(self._publish(inc, "resend", SYSTEM, now))
        return out

    def on_stats(self, stats: SeriesStats) -> None:
        """A closed bucket: a point on the impact timeline of that series' incidents."""
        share = stats.negative_share
        point = {"t": _iso(stats.bucket_start), "volume": stats.count,
                 "negative_share": round(share, 3) if share is not None else None, "reach": stats.retweets}
        recent = self.recent.setdefault(stats.series, [])
        if not recent or recent[-1]["t"] < point["t"]:
            recent.append(point)
            del recent[:-RECENT_POINTS]
        for inc in self.incidents.values():
            a = inc.alert
            if a.brand != stats.brand or a.channel != stats.channel or stats.bucket_start < a.started_at:
                continue
            if inc.state == "resolved":
                if inc.after_resolve >= AFTER_RESOLVE_POINTS:
                    continue
                inc.after_resolve += 1
            if inc.timeline and inc.timeline[-1]["t"] >= _iso(stats.bucket_start):
                continue
            inc.timeline.append(dict(point))
            del inc.timeline[:-TIMELINE_POINTS]

    # -- views ------------------------------------------------------------------------
    def impact(self, alert_id: str) -> dict[str, Any]:
        """The crisis impact timeline: volume, negative share and reach since it opened,
        and the time until calm (None while it is not resolved)."""
        inc = self._get(alert_id)
        a = inc.alert
        calm = (inc.resolved_at - a.started_at).total_seconds() / 60 if inc.resolved_at else None
        pts = inc.timeline
        return {"id": a.id, "state": inc.state, "started_at": _iso(a.started_at),
                "resolved_at": _iso(inc.resolved_at) if inc.resolved_at else None,
                "minutes_until_calm": round(calm, 1) if calm is not None else None,
                "total_volume": sum(p["volume"] for p in pts), "total_reach": sum(p["reach"] for p in pts),
                "peak_volume": max((p["volume"] for p in pts), default=0),
                "points": list(pts), "events": list(inc.history)}

    def get(self, alert_id: str) -> Incident:
        return self._get(alert_id)

    # -- helpers ----------------------------------------------------------------------
    def _get(self, alert_id: str) -> Incident:
        inc = self.incidents.get(alert_id)
        if inc is None:
            raise IncidentError(404, f"no incident {alert_id!r}")
        return inc

    def _publish(self, inc: Incident, event: str, by: str, now: float) -> Alert:
        at = datetime.fromtimestamp(now, tz=UTC)
        inc.alert = dataclasses.replace(inc.alert, event=event, at=at, level=inc.level, by=by)
        self._log(inc, inc.alert, now)
        return inc.alert

    def _log(self, inc: Incident, alert: Alert, now: float) -> None:
        inc.history.append({"event": alert.event, "at": _iso(alert.at), "severity": alert.severity,
                            "level": alert.level, "by": alert.by or None,
                            "notify": self.levels(alert)[min(alert.level, len(self.levels(alert)) - 1)]})
        del inc.history[:-100]

    def _forget_old(self) -> None:
        if len(self.incidents) <= MAX_INCIDENTS:
            return
        for aid in [k for k, v in self.incidents.items() if v.state == "resolved"]:
            del self.incidents[aid]
            if len(self.incidents) <= MAX_INCIDENTS:
                return
