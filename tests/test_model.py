import json
from datetime import UTC, datetime

import pytest

from stormwatch.model import (
    Alert,
    InvalidRecord,
    Post,
    ScoredPost,
    Sentiment,
    SeriesStats,
    alert_id,
    hash_author,
    parse_post,
)

GOOD = {"id": "p1", "created_at": "2015-02-23T01:02:03Z", "channel": "Twitter", "brand": "American",
        "text": "my flight got Cancelled Flightled", "lang": "en", "retweets": 2}


def with_(**kw):
    d = dict(GOOD)
    for k, v in kw.items():
        if v is ...:
            d.pop(k)
        else:
            d[k] = v
    return json.dumps(d)


def test_valid_post_is_normalised():
    p = parse_post(json.dumps(GOOD))
    assert p == Post("p1", datetime(2015, 2, 23, 1, 2, 3, tzinfo=UTC), "twitter", "American",
                     "my flight got Cancelled Flightled", "en", None, 2)
    assert p.ts == 1424653323.0


@pytest.mark.parametrize("raw, reason", [
    ('{"id": "p1", "created_at": ', "malformed_json"),
    ("[1, 2]", "not_an_object"),
    (b"\xff\xfe{}", "bad_encoding"),
    ("[" * 200_000 + "]" * 200_000, "too_large"),
    ("[" * 50_000 + "]" * 50_000, "malformed_json"),  # nested too deeply for the parser
    (with_(id=...), "missing_field"),
    (with_(brand=...), "missing_field"),
    (with_(text=None), "missing_field"),
    (with_(created_at=...), "missing_field"),
    (with_(id=17), "wrong_type"),
    (with_(text=["a"]), "wrong_type"),
    (with_(retweets="many"), "wrong_type"),
    (with_(retweets=True), "wrong_type"),
    (with_(retweets=-1), "bad_value"),
    (with_(created_at=True), "wrong_type"),
    (with_(text="   \n"), "empty_text"),
    (with_(text="x" * 20_001), "text_too_long"),
    (with_(text="a" * 1_000_000), "too_large"),
    (with_(text="nul\x00byte"), "bad_value"),
    (with_(brand=" "), "bad_value"),
    (with_(created_at="2015-02-30T10:00:00Z"), "bad_timestamp"),
    (with_(created_at="yesterday"), "bad_timestamp"),
    (with_(created_at="1969-12-31T23:59:59Z"), "bad_timestamp"),
    (with_(created_at="9999-12-31T23:59:59Z"), "bad_timestamp"),
    (with_(created_at=1e300), "bad_timestamp"),
    (with_(created_at=float("nan")), "bad_timestamp"),
])
def test_invalid_records_have_a_stable_reason(raw, reason):
    with pytest.raises(InvalidRecord) as info:
        parse_post(raw)
    assert info.value.reason == reason
    assert str(info.value).startswith(reason + ": ")


def test_epoch_seconds_and_naive_timestamps_are_utc():
    assert parse_post(with_(created_at=1424653323)).created_at == datetime(2015, 2, 23, 1, 2, 3, tzinfo=UTC)
    assert parse_post(with_(created_at="2015-02-23T01:02:03")).created_at.tzinfo is UTC
    assert parse_post(with_(created_at="2015-02-23T02:02:03+01:00")).created_at.hour == 1


def test_future_is_judged_against_the_clock():
    raw = with_(created_at="2030-01-01T00:00:00Z")
    assert parse_post(raw, now=datetime(2030, 1, 1, tzinfo=UTC).timestamp()).brand == "American"
    with pytest.raises(InvalidRecord):
        parse_post(raw, now=datetime(2026, 1, 1, tzinfo=UTC).timestamp())


def test_author_hash_is_keyed_and_short():
    h = hash_author("@alice", b"k1")
    assert len(h) == 16 and h != hash_author("@alice", b"k2") and "alice" not in h


def test_records_round_trip_through_dicts():
    post = parse_post(json.dumps(GOOD))
    sp = ScoredPost(post, Sentiment("negative", 0.9, 0.9, "m"), "en")
    assert ScoredPost.from_dict(json.loads(json.dumps(sp.to_dict()))) == sp
    st = SeriesStats("American", "*", datetime(2015, 2, 23, 1, tzinfo=UTC), 60, 3, 2, 1, 0, 1.5, 4, 1,
                     (("p1", "text"),))
    assert SeriesStats.from_dict(json.loads(json.dumps(st.to_dict()))) == st
    assert st.negative_share == pytest.approx(2 / 3)
    t = datetime(2015, 2, 23, 1, tzinfo=UTC)
    al = Alert(alert_id("American/*", t), "open", "American", "*", "warning", t, t, 70, 50, 30, 71,
               0.9991, "poisson-window", 0.999, 0.8, (("p1", "text"),))
    assert Alert.from_dict(json.loads(json.dumps(al.to_dict()))) == al
    assert al.id == "American/*@2015-02-23T01:00Z"
