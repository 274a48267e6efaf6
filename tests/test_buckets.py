import random
from datetime import UTC, datetime, timedelta

from stormwatch.buckets import BrandBuckets
from stormwatch.model import Post, ScoredPost, Sentiment

T0 = datetime(2015, 2, 23, 0, 0, tzinfo=UTC)


def sp(i: int, seconds: float, channel: str = "twitter", label: str = "negative") -> ScoredPost:
    post = Post(str(i), T0 + timedelta(seconds=seconds), channel, "Acme", f"text {i}", retweets=1)
    return ScoredPost(post, Sentiment(label, 0.8, 0.8 if label == "negative" else 0.1, "m"))


def closed(b: BrandBuckets, posts):
    """Feed posts, handing on (and acknowledging) what each one closes."""
    out = []
    for p in posts:
        b.add(p)
        out.extend(b.pending())
        b.ack()
    return out


def flushed(b: BrandBuckets):
    b.flush()
    out = b.pending()
    b.ack()
    return out


def test_out_of_order_within_lateness_lands_in_its_bucket():
    b = BrandBuckets("Acme", 60, lateness_seconds=120)
    out = closed(b, [sp(1, 10), sp(2, 130), sp(3, 50), sp(4, 400)])
    totals = {(s.bucket_start - T0).seconds // 60: s.count for s in out if s.channel == "*"}
    assert totals == {0: 2, 1: 0, 2: 1, 3: 0}  # minute 0 got the late-arriving post 3
    assert b.late_total == 0


def test_post_after_its_bucket_closed_is_counted_as_late_not_lost():
    b = BrandBuckets("Acme", 60, lateness_seconds=0)
    out = closed(b, [sp(1, 10), sp(2, 70), sp(3, 130), sp(4, 5)])
    out += flushed(b)
    assert b.late_total == 1
    assert sum(s.count for s in out if s.channel == "*") == 3
    assert sum(s.late for s in out if s.channel == "*") == 1
    assert sum(s.late for s in out if s.channel == "twitter") == 1


def test_gaps_close_as_zero_buckets_for_every_known_channel():
    b = BrandBuckets("Acme", 60, lateness_seconds=0)
    out = closed(b, [sp(1, 0, "twitter"), sp(2, 1, "mastodon"), sp(3, 600)])
    assert [s.bucket_start.minute for s in out if s.channel == "*"] == list(range(10))
    assert {s.channel for s in out} == {"*", "twitter", "mastodon"}
    first = {s.channel: s.count for s in out if s.bucket_start == T0}
    assert first == {"*": 2, "twitter": 1, "mastodon": 1}
    assert all(s.count == 0 for s in out if s.bucket_start > T0)


def test_counts_sentiment_and_keeps_the_most_negative_samples():
    b = BrandBuckets("Acme", 60, 0)
    posts = [sp(1, 1, label="positive"), sp(2, 2), sp(3, 3, label="neutral"), sp(4, 4), sp(5, 5),
             sp(6, 6)]
    (star, tw) = closed(b, [*posts, sp(7, 61)])
    assert (star.count, star.negative, star.neutral, star.positive, star.retweets) == (6, 4, 1, 1, 6)
    assert star.negative_score_sum == round(4 * 0.8 + 0.1 + 0.1, 6)
    assert [pid for pid, _ in star.samples] == ["2", "4", "5"]  # ties keep arrival order
    assert tw.count == 6


def test_state_round_trip_gives_identical_output():
    rng = random.Random(7)
    posts = [sp(i, i * 7 + rng.uniform(-150, 150), rng.choice(["twitter", "rss"])) for i in range(400)]
    a = BrandBuckets("Acme", 60, 90)
    ref = closed(a, posts) + flushed(a)
    b = BrandBuckets("Acme", 60, 90)
    out = []
    for p in posts:
        b = BrandBuckets.from_state(b.state_dict())
        b.add(p)
        b = BrandBuckets.from_state(b.state_dict())
        out.extend(b.pending())
        b.ack()
    out += flushed(b)
    assert out == ref
    assert sum(s.count for s in ref if s.channel == "*") + a.late_total == 400


def test_a_duplicate_in_an_open_bucket_is_counted_once():
    b = BrandBuckets("Acme", 60, 60)
    assert [b.add(p) for p in [sp(1, 5), sp(1, 5), sp(2, 20), sp(1, 5)]] == [True, False, True, False]
    out = flushed(b)
    assert (out[0].count, b.duplicates) == (2, 2)


def test_pending_buckets_survive_a_restart_until_acknowledged():
    """A worker stopped after writing its state but before sending: the restarted one
    re-reads the state, the post is a duplicate, and the buckets are still pending."""
    b = BrandBuckets("Acme", 60, 0)
    b.add(sp(1, 5))
    b.add(sp(2, 130))  # closes minutes 0 and 1
    saved = b.state_dict()  # ... and the worker dies before sending them
    again = BrandBuckets.from_state(saved)
    assert again.add(sp(2, 130)) is False  # redelivered: counted once
    assert [(s.bucket_start.minute, s.channel, s.count) for s in again.pending()] == [
        (0, "*", 1), (0, "twitter", 1), (1, "*", 0), (1, "twitter", 0)]
    again.ack()
    assert again.pending() == []
