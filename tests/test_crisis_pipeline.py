"""Crisis types and evidence through the shared pipeline objects: the enricher tags posts,
buckets count what the evidence needs, alerts carry type, share, playbook and evidence;
old records and states still load. On the airline posts: what a person would agree with."""

import json
from datetime import UTC, datetime

import pytest

from stormwatch.buckets import BrandBuckets
from stormwatch.config import Settings
from stormwatch.local import run_file
from stormwatch.model import Alert, ScoredPost, SeriesStats
from stormwatch.nlp.lexicon import LexiconScorer
from stormwatch.pipeline import Enricher


def raw(i, text, minute=0, lang="en", retweets=0):
    return json.dumps({"id": str(i), "created_at": f"2015-02-23T01:{minute:02d}:00Z", "channel": "twitter",
                       "brand": "Bank", "text": text, "lang": lang, "retweets": retweets})


def test_enricher_tags_posts_and_buckets_count_the_evidence():
    posts = Enricher(LexiconScorer()).enrich([
        raw(1, "Die App geht nicht, totale Störung!", lang="de"),
        raw(2, "app down again, terrible, cannot log in", retweets=5),
        raw(3, "thanks for the quick help"),
        raw(4, "next minute", minute=3),
    ])
    assert [p.crisis for p in posts] == ["outage", "outage", None, None]
    assert ScoredPost.from_dict(json.loads(json.dumps(posts[0].to_dict()))) == posts[0]
    b = BrandBuckets("Bank", 60, 60)
    for p in posts:
        b.add(p)
    st = b.pending()[0]
    assert st.series == "Bank/*" and st.count == 3
    assert st.crisis == (("outage", 2),)
    assert st.langs == (("de", 1), ("en", 2))
    assert ("de", "störung", 1) in st.terms and ("en", "app", 1) in st.terms
    assert st.reached == (("2", "twitter", 5, "app down again, terrible, cannot log in"),)
    assert [p[0] for p in st.negative_posts] == [s[0] for s in st.samples]
    assert SeriesStats.from_dict(json.loads(json.dumps(st.to_dict()))) == st


def test_records_and_bucket_state_written_before_the_crisis_fields_still_load():
    old_stats = {"brand": "A", "channel": "*", "bucket_start": "2015-02-23T01:00:00Z", "bucket_seconds": 60,
                 "count": 1, "samples": [["1", "x"]]}
    assert SeriesStats.from_dict(old_stats).crisis == ()
    old_alert = {"id": "A/*@2015-02-23T01:00Z", "event": "open", "brand": "A", "channel": "*",
                 "severity": "warning", "started_at": "2015-02-23T01:00:00Z", "at": "2015-02-23T01:00:00Z",
                 "observed": 5, "expected": 1, "lower": 0, "upper": 3, "score": 0.9, "detector": "d",
                 "threshold": 0.85}
    a = Alert.from_dict(old_alert)
    assert (a.crisis_type, a.playbook, a.evidence, a.level, a.by) == (None, None, {}, 0, "")
    state = BrandBuckets("A").state_dict()
    t = int(datetime(2015, 2, 23, 1, tzinfo=UTC).timestamp())
    state["open"] = {str(t): {"*": [1, 1, 0, 0, 0.9, 0, [[0.9, "1", "x"]], ["1"]],
                              "twitter": [1, 1, 0, 0, 0.9, 0, [[0.9, "1", "x"]], []]}}
    state.update(next_close=t, max_t=t, channels=["twitter"])
    b = BrandBuckets.from_state(state)
    b.flush()
    st = b.pending()[0]
    assert st.count == 1 and st.negative_posts == (("1", "", 0.9, "x"),) and st.crisis == ()


@pytest.fixture(scope="module")
def airline(data):
    return run_file(data / "posts" / "airline_posts_unlabelled.jsonl", Settings.from_env({}))


def test_airline_alerts_carry_type_playbook_and_sensible_burst_terms(airline):
    opened = {a.id: a for a in airline.alerts if a.event == "open"}
    resolved = {a.id: a for a in airline.alerts if a.event == "resolve"}
    assert opened, "no alerts on the airline posts"
    for a in opened.values():
        assert a.crisis_type is not None and a.playbook == a.crisis_type
        assert 0 < a.crisis_share <= 1
        assert {"posts", "reach", "languages", "crisis_mix", "burst_terms", "most_reached",
                "most_negative"} <= set(a.evidence)
        assert len(json.dumps(a.evidence)) < 12_000
    us = "US Airways/*@2015-02-22T22:22Z"  # the system-wide computer outage evening
    assert opened[us].crisis_type == "service" and opened[us].crisis_share > 0.3
    assert "outage" in resolved[us].evidence["crisis_mix"]
    terms = [t["term"] for t in resolved[us].evidence["burst_terms"]["en"]]
    assert "computer" in terms[:3] and "system" in terms
    assert opened[us].evidence["most_negative"][0]["channel"] == "twitter"


def test_airline_emerging_topic_finds_the_computer_outage_after_the_volume_incident(airline):
    topics = [a for a in airline.alerts if a.kind == "emerging" and a.event == "open"]
    assert all(a.id.endswith("#topic") and a.severity == "warning" for a in topics)
    assert len(topics) <= 10  # a handful over nine days, not a stream
    computer = [a for a in topics if a.brand == "US Airways" and a.channel == "*"
                and a.evidence["emerging_terms"][0]["term"] == "computer"]
    assert [a.started_at.isoformat() for a in computer] == ["2015-02-23T00:06:00+00:00"]
