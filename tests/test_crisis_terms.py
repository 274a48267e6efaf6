"""Tokenising, burst-term ranking, and the evidence window with its decayed baseline."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from stormwatch.crisis.evidence import EvidenceConfig, EvidenceWindow
from stormwatch.crisis.terms import burst_terms, g2, tokens
from stormwatch.model import SeriesStats

T0 = datetime(2015, 2, 22, tzinfo=UTC)


def test_tokens_drop_noise_and_stopwords_per_language():
    assert tokens("@DB_Bahn Die Bahn hat schon wieder Verspätung!!! https://x.y/z #fail", "de") == \
        ["bahn", "fail", "verspätung"]
    assert tokens("RT @united Flights cancelled, 3 bags lost &amp; no system updates", "en") == \
        ["bag", "cancelled", "flight", "lost", "system", "update"]
    assert tokens("system system SYSTEM", "en") == ["system"]  # once per post


def test_g2_is_zero_for_equal_shares_and_grows_with_the_difference():
    assert g2(10, 100, 100, 1000) == pytest.approx(0.0, abs=1e-9)
    assert 0 < g2(20, 100, 100, 1000) < g2(40, 100, 100, 1000)


def test_burst_ranking_puts_new_terms_first_and_drops_falling_and_rare_ones():
    base = {"flight": 500.0, "thanks": 300.0, "delay": 50.0}
    recent = {"computer": 15, "system": 10, "flight": 40, "delay": 12, "thanks": 2, "rare": 2}
    rows = burst_terms(recent, 80, base, 1000.0, top=10, min_count=3)
    terms = [r["term"] for r in rows]
    assert terms[:2] == ["computer", "system"]
    assert "thanks" not in terms  # falling
    assert "rare" not in terms  # below min_count
    assert "flight" not in terms  # 50 % of posts both times
    assert all(rows[i]["score"] >= rows[i + 1]["score"] for i in range(len(rows) - 1))
    assert rows[0]["count"] == 15 and rows[0]["ratio"] > 50


def test_burst_ranking_ties_go_by_term():
    rows = burst_terms({"zulu": 5, "alpha": 5, "mike": 5}, 20, {}, 100.0)
    assert [r["term"] for r in rows] == ["alpha", "mike", "zulu"]


def test_no_posts_no_terms():
    assert burst_terms({"x": 5}, 0, {}, 0.0) == []


def bucket(i, n, terms, lang="en", crisis=(), retweets=0, neg=()):
    return SeriesStats("Acme", "*", T0 + timedelta(minutes=i), 60, n, negative=n // 2, retweets=retweets,
                       langs=((lang, n),) if n else (), terms=tuple((lang, t, c) for t, c in terms),
                       crisis=crisis, negative_posts=neg)


def test_window_baseline_per_language_and_evidence_shape():
    w = EvidenceWindow(EvidenceConfig(window=10, half_life=600))
    for i in range(300):
        w.observe(bucket(i, 4, [("flight", 3), ("thanks", 1)]))
        w.observe(bucket(i, 0, []))  # a repeat with nothing: ignored by the monitor, harmless here
    for i in range(300, 310):
        w.observe(bucket(i, 8, [("flight", 4), ("computer", 6), ("system", 5)],
                         crisis=(("outage", 6), ("service", 1)), retweets=3,
                         neg=((f"p{i}", "twitter", round(0.9 + i / 10000, 4), f"text {i}"),)))
    w.observe(SeriesStats("Acme", "*", T0 + timedelta(minutes=310), 60, 2, negative=1,
                          langs=(("de", 2),), terms=(("de", "störung", 2),)))
    ev = w.evidence()
    assert ev["posts"] == 9 * 8 + 2  # buckets 301..310 are the window
    assert ev["languages"] == {"en": 72, "de": 2}
    assert [t["term"] for t in ev["burst_terms"]["en"]][:2] == ["computer", "system"]
    assert "de" not in ev["burst_terms"]  # 2 posts < min_term_posts
    assert ev["crisis_mix"] == {"outage": 54, "service": 9, "unclassified": 11}
    assert w.dominant() == ("outage", round(54 / 74, 3))
    assert ev["reach"] == 27
    assert [p["id"] for p in ev["most_negative"]] == ["p309", "p308", "p307", "p306", "p305"]
    assert ev["most_negative"][0] == {"id": "p309", "channel": "twitter", "negative": 0.9309,
                                      "text": "text 309"}
    assert len(json.dumps(ev)) < 8000  # bounded
    # the baseline saw the quiet period and the one burst bucket that left the window (300)
    base, docs = w.baseline("en")
    assert base["flight"] > base["thanks"] and docs > 500
    assert base["computer"] == pytest.approx(6.0 * 0.5 ** (10 / 600))  # decayed from bucket 300 to 310


def test_open_incident_holds_the_window_and_keeps_it_out_of_the_baseline():
    w = EvidenceWindow(EvidenceConfig(window=5, max_window=50))
    for i in range(100):
        w.observe(bucket(i, 2, [("flight", 2)]))
    for i in range(100, 130):
        w.observe(bucket(i, 5, [("computer", 5)]), hold_from=T0.timestamp() + 100 * 60)
    assert w.totals()["posts"] == 30 * 5
    assert "computer" not in w.base_terms.get("en", {})
    w.observe(bucket(130, 1, [("flight", 1)]))  # resolved: the window shrinks back
    assert w.totals()["posts"] == 4 * 5 + 1


def test_vocabulary_is_bounded_and_the_state_round_trips():
    w = EvidenceWindow(EvidenceConfig(window=2, vocabulary=20))
    for i in range(200):
        w.observe(bucket(i, 3, [(f"t{i}", 1), (f"u{i % 7}", 2), ("common", 3)]))
    assert len(w.base_terms["en"]) <= 25
    assert "common" in w.baseline("en")[0]
    state = json.loads(json.dumps(w.state_dict()))
    again = EvidenceWindow.from_state(state)
    assert again.state_dict() == w.state_dict()
    assert again.evidence() == w.evidence()


def test_baseline_decays():
    w = EvidenceWindow(EvidenceConfig(window=1, half_life=10))
    w.observe(bucket(0, 10, [("old", 10)]))
    w.observe(bucket(1, 10, [("new", 10)]))
    w.observe(bucket(11, 10, [("x", 1)]))  # bucket 1 leaves
    w.observe(bucket(21, 10, [("x", 1)]))  # bucket 11 leaves; now is minute 21
    base, docs = w.baseline("en")
    assert base["old"] == pytest.approx(10 * 0.5 ** 2.1)  # 21 minutes = 2.1 half-lives old
    assert base["new"] == pytest.approx(10 * 0.5 ** 2.0)
    assert docs == pytest.approx(10 * (0.5 ** 2.1 + 0.5 ** 2.0 + 0.5 ** 1.0))
    for i in range(22, 400, 10):  # far past 2^20 growth: the units are reset, shares stay the same
        w.observe(bucket(i, 10, [("x", 1)]))
    base, docs = w.baseline("en")
    assert w.base_t > 21 and base["x"] / docs == pytest.approx(0.1, rel=1e-3)


def test_topic_watch_needs_a_warm_baseline_and_no_volume_incident_and_cools_down():
    from stormwatch.crisis.emerging import TopicConfig, TopicWatch

    hot = {"en": [{"term": "computer", "count": 9, "ratio": 40.0, "score": 55.0},
                  {"term": "system", "count": 7, "ratio": 30.0, "score": 41.0},
                  {"term": "flight", "count": 20, "ratio": 1.5, "score": 12.0}]}
    w = TopicWatch(TopicConfig(clear_buckets=3, cooldown=5))
    assert w.step(0, hot, baseline_posts=100, volume_open=False) is None  # baseline too young
    assert w.step(1, hot, baseline_posts=1000, volume_open=True) is None  # the volume already moved
    event, start, cluster = w.step(2, hot, 1000, False)
    assert (event, start, [r["term"] for r in cluster]) == ("open", 2, ["computer", "system"])
    assert [w.step(i, {}, 1000, False) for i in (3, 4)] == [None, None]
    assert w.step(5, hot, 1000, False) is None  # still going: the quiet count restarts
    assert [w.step(i, {}, 1000, False) for i in (6, 7)] == [None, None]
    assert w.step(8, {}, 1000, False)[0:2] == ("resolve", 2)
    assert all(w.step(i, hot, 1000, False) is None for i in range(9, 14))  # cooldown
    assert w.step(14, hot, 1000, False)[0] == "open"
    assert TopicWatch.from_state(w.state_dict()).state_dict() == w.state_dict()


def test_everyday_terms_that_rise_a_little_are_no_burst_terms():
    # US Airways 2015-02-22 22:22 (trimmed): "flight" is in 44 % of the window's posts
    # and 31 % of the baseline's; that lift (1.4x) is no burst, "bag" (4.7x) is.
    base = {"flight": 195.8, "bag": 27.0, "service": 57.9}
    recent = {"flight": 11, "bag": 5, "service": 3}
    rows = burst_terms(recent, 25, base, 631.4)
    assert [r["term"] for r in rows] == ["bag"]
    assert rows[0]["ratio"] >= 2 and rows[0]["score"] >= 3.84
    # a big lift on too little evidence (G² under the 5 % level) is left out too
    assert burst_terms({"gate": 3}, 25, {"gate": 20.0}, 631.4) == []
    # the thresholds are parameters: 0 keeps every rising term (the earlier behaviour)
    assert [r["term"] for r in burst_terms(recent, 25, base, 631.4, min_ratio=0, min_score=0)] == \
        ["bag", "flight", "service"]


def test_tokens_fold_short_forms_and_drop_modal_verbs():
    assert tokens("Stuck 3 hrs, may miss my connection, 45 mins on hold", "en") == \
        ["connection", "hold", "hour", "minute", "miss", "stuck"]
