"""Resuming from restored state: a crash that loses any suffix of the changelog loses no post."""

import json
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from stormwatch.model import Post, ScoredPost, Sentiment
from stormwatch.pipeline import Aggregator
from stormwatch.positions import Position, marker, marker_key, resume_offsets

T0 = datetime(2015, 2, 23, tzinfo=UTC)


class Changelog(dict):
    """A table that records every write in order, as a Faust changelog topic does."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, dict]] = []

    def __setitem__(self, key, value):
        self.log.append((key, json.loads(json.dumps(value))))  # serialized, as on the topic
        super().__setitem__(key, value)

    @classmethod
    def restored(cls, writes):
        table = cls()
        for k, v in writes:
            table[k] = v
        return table


def posts(n: int, seed: int) -> list[ScoredPost]:
    rng = random.Random(seed)
    t, out = 0.0, []
    for i in range(n):
        t += rng.expovariate(1 / 20)
        brand = rng.choice(["Acme", "Bolt", "Cape"])
        label = rng.choice(["negative", "neutral", "positive"])
        post = Post(f"p{i}", T0 + timedelta(seconds=t), rng.choice(["x", "y"]), brand, "t")
        out.append(ScoredPost(post, Sentiment(label, 0.9, 0.5, "m"), source_offset=1000 + i))
    return out


def assert_same_buckets(emitted: list, reference: list) -> None:
    """Every bucket of the undisturbed run, none more; one handed on twice (sent, then the
    ack lost) is the same record both times."""
    by_bucket = {(s.series, s.bucket_start): s for s in emitted}
    assert len(by_bucket) == len({(s.series, s.bucket_start) for s in reference})
    for s in reference:
        assert by_bucket[(s.series, s.bucket_start)] == s
    for s in emitted:
        assert by_bucket[(s.series, s.bucket_start)] == s


def run(agg: Aggregator, stream: list[ScoredPost], start: int, emitted: list) -> None:
    for offset in range(start, len(stream)):
        sp = stream[offset]
        emitted.extend(agg.add(sp, Position(0, offset, sp.source_offset)))
        agg.ack(sp.post.brand)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), crash=st.floats(0, 1), kept=st.floats(0, 1),
       resent=st.integers(0, 40))
def test_any_lost_changelog_suffix_resumes_without_loss_or_double_count(seed, crash, kept, resent):
    stream = posts(300, seed)
    reference: list = []
    run(Aggregator({}), stream, 0, reference)

    # First worker: processes up to a crash point; only a prefix of its writes survives.
    first = Changelog()
    emitted: list = []
    run(Aggregator(first), stream[: int(crash * len(stream))], 0, emitted)
    survived = first.log[: int(kept * len(first.log))]

    # The upstream enrich step, restarted too, sends copies of its last posts again
    # (new offsets on posts.scored, same posts.raw offsets).
    cut = int(crash * len(stream))
    stream2 = stream[:cut] + stream[max(0, cut - resent):cut] + stream[cut:]

    restored = Changelog.restored(survived)
    start = resume_offsets(restored.values(), [0])[0]
    assert start <= cut  # never beyond what was processed
    run(Aggregator(restored), stream2, start, emitted)

    assert_same_buckets(emitted, reference)


def test_a_redelivered_post_changes_nothing():
    sp = posts(1, 1)[0]
    table: dict = {}
    agg = Aggregator(table)
    agg.add(sp, Position(3, 10, sp.source_offset))
    before = dict(table[sp.post.brand])
    agg.add(sp, Position(3, 10, sp.source_offset))  # the same record again
    agg.add(sp, Position(3, 11, sp.source_offset))  # a copy enrich sent again
    assert table[sp.post.brand] == before
    assert table[sp.post.brand]["applied"] == {"partition": 3, "offset": 10, "source": sp.source_offset}


def run_batched(agg: Aggregator, table: dict, stream: list[ScoredPost], start: int, emitted: list,
                size: int, markers: bool = True) -> None:
    """As the worker's aggregate agent: batches, outputs sent, states written once, a marker."""
    for first in range(start, len(stream), size):
        agg.begin_batch()
        brands = []
        for offset in range(first, min(first + size, len(stream))):
            sp = stream[offset]
            agg.count(sp, Position(0, offset, sp.source_offset))
            brands.append(sp.post.brand)
        for brand in dict.fromkeys(brands):
            emitted.extend(agg.pending(brand))
            agg.ack(brand)
        agg.end_batch()
        if markers:
            table[marker_key(0)] = marker(Position(0, min(first + size, len(stream)) - 1))


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10_000), crash=st.floats(0, 1), kept=st.floats(0, 1),
       resent=st.integers(0, 40), size=st.integers(1, 60), size2=st.integers(1, 60))
def test_batches_resume_after_any_lost_changelog_suffix_without_loss_or_double_count(
        seed, crash, kept, resent, size, size2):
    stream = posts(300, seed)
    reference: list = []
    run(Aggregator({}), stream, 0, reference)

    first = Changelog()
    emitted: list = []
    cut = int(crash * len(stream))
    run_batched(Aggregator(first), first, stream[:cut], 0, emitted, size)
    survived = first.log[: int(kept * len(first.log))]
    stream2 = stream[:cut] + stream[max(0, cut - resent):cut] + stream[cut:]

    restored = Changelog.restored(survived)
    start = resume_offsets(restored.values(), [0])[0]
    assert start <= cut
    run_batched(Aggregator(restored), restored, stream2, start, emitted, size2)

    assert_same_buckets(emitted, reference)
