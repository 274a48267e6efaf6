"""The escalation state machine (re-send, escalate, ack, resolve, auto-resolve), playbooks,
and the policy's escalation by duration and reach."""

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from stormwatch.crisis.escalation import SYSTEM, Escalation, IncidentError
from stormwatch.crisis.playbooks import (
    CrisisConfigError,
    default_playbooks,
    load_playbooks,
    parse_playbooks,
)
from stormwatch.detectors.policy import AlertPolicy, PolicyConfig
from stormwatch.model import Alert, SeriesStats

T0 = datetime(2015, 2, 22, 22, 22, tzinfo=UTC)
MIN = 60.0


def alert(event="open", severity="critical", brand="US Airways", channel="*", playbook="service", **kw):
    return Alert(f"{brand}/{channel}@2015-02-22T22:22Z", event, brand, channel, severity, T0, T0,
                 40.0, 8.0, 2.0, 15.0, 0.999, "seasonal-baseline", 0.85, playbook=playbook, **kw)


def test_unacknowledged_critical_is_resent_and_escalated_level_by_level():
    esc = Escalation()
    a = alert()
    levels = default_playbooks()["service"].escalation.levels  # 30 minutes, 3 levels
    assert esc.on_alert(a, now=0) == []
    assert esc.tick(29 * MIN) == []
    first = esc.tick(30 * MIN)
    assert [(e.event, e.level, e.by, e.id) for e in first] == [("resend", 1, SYSTEM, a.id)]
    assert esc.tick(45 * MIN) == []  # the timer restarts with every page
    assert [e.level for e in esc.tick(60 * MIN)] == [2]
    assert [e.level for e in esc.tick(90 * MIN)] == [2]  # top level: re-sent there
    assert esc.get(a.id).history[-1]["notify"] == levels[2]
    assert esc.get(a.id).state == "open"


def test_acknowledged_is_not_resent_and_warnings_are_not_resent():
    esc = Escalation()
    esc.on_alert(alert(), now=0)
    ack = esc.ack(alert().id, "maria", now=10 * MIN)
    assert (ack.event, ack.by, ack.level) == ("ack", "maria", 0)
    assert esc.tick(300 * MIN) == []
    with pytest.raises(IncidentError) as exc:
        esc.ack(alert().id, "tom", now=11 * MIN)
    assert exc.value.status == 409 and "maria" in exc.value.message
    esc2 = Escalation()
    esc2.on_alert(alert(severity="warning"), now=0)
    assert esc2.tick(300 * MIN) == []


def test_warning_escalated_by_the_policy_pages_and_then_resends():
    esc = Escalation()
    esc.on_alert(alert(severity="warning"), now=0)
    esc.on_alert(alert(event="escalate"), now=20 * MIN)  # warning → critical: a page at 20'
    assert esc.tick(40 * MIN) == []
    assert [e.event for e in esc.tick(50 * MIN)] == ["resend"]


def test_auto_resolve_from_the_policy_stops_everything_and_gives_time_until_calm():
    esc = Escalation()
    esc.on_alert(alert(), now=0)
    esc.ack(alert().id, "maria", now=MIN)
    for i in range(40):
        esc.on_stats(SeriesStats("US Airways", "*", T0 + timedelta(minutes=i), 60, 10 - i // 4,
                                 negative=5, retweets=1))
    resolved = dataclasses.replace(alert(event="resolve"), at=T0 + timedelta(minutes=35))
    assert esc.on_alert(resolved, now=40 * MIN) == []
    inc = esc.get(alert().id)
    assert inc.state == "resolved" and inc.resolved_by == ""
    assert esc.tick(500 * MIN) == []
    impact = esc.impact(alert().id)
    assert impact["minutes_until_calm"] == 35.0
    assert impact["total_reach"] == 40 and impact["peak_volume"] == 10 and len(impact["points"]) == 40
    assert impact["points"][0] == {"t": "2015-02-22T22:22:00Z", "volume": 10, "negative_share": 0.5,
                                   "reach": 1}
    assert [e["event"] for e in impact["events"]] == ["open", "ack", "resolve"]
    with pytest.raises(IncidentError) as exc:
        esc.resolve(alert().id, "maria", now=41 * MIN)
    assert exc.value.status == 409


def test_manual_resolve_and_unknown_ids():
    esc = Escalation()
    esc.on_alert(alert(), now=0)
    ev = esc.resolve(alert().id, "tom", now=5 * MIN)
    assert (ev.event, ev.by) == ("resolve", "tom")
    assert esc.tick(100 * MIN) == []
    esc.on_alert(alert(event="resolve"), now=6 * MIN)  # the policy's later resolve: no change
    assert esc.get(alert().id).resolved_by == "tom"
    with pytest.raises(IncidentError) as exc:
        esc.ack("nope", "x", now=0)
    assert exc.value.status == 404
    assert esc.on_alert(alert(event="escalate", brand="Other"), now=0) == []  # never saw it open
    assert "Other/*@2015-02-22T22:22Z" not in esc.incidents


def test_own_events_read_back_from_the_topic_rebuild_the_same_state():
    esc = Escalation()
    esc.on_alert(alert(), now=0)
    published = [*esc.tick(30 * MIN), esc.ack(alert().id, "maria", now=31 * MIN)]
    again = Escalation()  # a restarted API reads the alerts topic from its start
    again.on_alert(alert(), now=100)
    for ev in published:
        again.on_alert(ev, now=200)
        again.on_alert(ev, now=201)  # at least once: repeats change nothing
    inc = again.get(alert().id)
    assert (inc.state, inc.level, inc.acked_by) == ("acknowledged", 1, "maria")
    assert [h["event"] for h in inc.history] == ["open", "resend", "ack"]


def test_per_brand_and_per_channel_resend_delays():
    esc = Escalation(overrides={"US Airways/*": 5, "*/facebook": 2})
    esc.on_alert(alert(), now=0)
    esc.on_alert(alert(brand="United", channel="facebook"), now=0)
    esc.on_alert(alert(brand="United", channel="twitter"), now=0)
    assert sorted(e.id for e in esc.tick(2 * MIN)) == ["United/facebook@2015-02-22T22:22Z"]
    assert [e.id for e in esc.tick(3 * MIN)] == []
    assert [e.id for e in esc.tick(5 * MIN)] == ["US Airways/*@2015-02-22T22:22Z",
                                                 "United/facebook@2015-02-22T22:22Z"]
    assert "United/twitter@2015-02-22T22:22Z" in [e.id for e in esc.tick(30 * MIN)]  # the playbook's 30


def test_policy_escalates_by_duration_and_by_reach():
    p = AlertPolicy(PolicyConfig(threshold=0.9, clear=0.5, critical=0.999, critical_after=3, clear_buckets=2))
    out = [p.step(i, 0.95, 10, False) for i in range(5)]
    assert out[0] == ("open", "warning", 0) and out[3] == ("escalate", "critical", 0)
    p = AlertPolicy(PolicyConfig(threshold=0.9, clear=0.5, critical=0.999, critical_reach=100))
    assert p.step(0, 0.95, 10, False, reach=20) == ("open", "warning", 0)
    assert p.step(1, 0.95, 10, False, reach=150) == ("escalate", "critical", 0)
    p = AlertPolicy(PolicyConfig(threshold=0.9, clear=0.5, critical=0.999, critical_reach=100))
    assert p.step(0, 0.95, 10, False, reach=500) == ("open", "critical", 0)
    state = AlertPolicy.from_state(p.state_dict()).state_dict()
    assert state == p.state_dict()
    with pytest.raises(ValueError, match="critical_after"):
        PolicyConfig(critical_after=-1)


def test_default_playbooks_cover_every_type_in_two_languages():
    book = default_playbooks()
    assert list(book) == ["outage", "security", "fraud", "fees", "statement", "service", "general"]
    for pb in book.values():
        assert set(pb.core_messages) >= {"en", "de"}
        assert pb.owner and pb.channels and pb.escalation.levels and pb.runbook.startswith("https://")
        assert pb.to_dict()["escalation"]["resend_after_minutes"] > 0


def test_playbook_config_errors(tmp_path):
    good = {"id": "general", "title": "t", "owner": "o", "channels": ["x"], "core_messages": {"en": "hi"},
            "runbook": "https://wiki.example.com/x",
            "escalation": {"resend_after_minutes": 5, "levels": ["a"]}}
    assert parse_playbooks([good])["general"].escalation.resend_after_minutes == 5
    for change, message in [({"runbook": "wiki"}, "http(s) link"), ({"channels": []}, "non-empty list"),
                            ({"core_messages": {"english": "x"}}, "not a language code"),
                            ({"escalation": {"resend_after_minutes": 5, "levels": []}}, "levels")]:
        with pytest.raises(CrisisConfigError, match=r"playbooks\[0\]") as exc:
            parse_playbooks([{**good, **change}])
        assert message in str(exc.value)
    path = tmp_path / "pb.yaml"
    path.write_text("playbooks:\n  - id: general\n    title: t\n    owner: o\n    channels: [x]\n"
                    "    core_messages: {en: hi}\n    runbook: https://wiki.example.com/x\n"
                    "    escalation: {resend_after_minutes: 5, levels: [a]}\n", encoding="utf-8")
    with pytest.raises(CrisisConfigError, match="no playbook for security, fraud, outage"):
        load_playbooks(path)


def test_timeline_backfills_the_buckets_that_arrived_before_the_alert():
    esc = Escalation()
    for i in range(-3, 2):  # the stats topic is read ahead of the alerts topic
        esc.on_stats(SeriesStats("US Airways", "*", T0 + timedelta(minutes=i), 60, 5 + i))
    esc.on_alert(alert(), now=0)
    esc.on_stats(SeriesStats("US Airways", "*", T0 + timedelta(minutes=2), 60, 9))
    esc.on_stats(SeriesStats("US Airways", "*", T0 + timedelta(minutes=2), 60, 9))  # a repeat
    assert [p["volume"] for p in esc.impact(alert().id)["points"]] == [5, 6, 9]
