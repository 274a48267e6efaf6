from datetime import UTC, datetime, timedelta

from stormwatch.detectors.policy import PolicyConfig
from stormwatch.model import SeriesStats
from stormwatch.pipeline import Detection

T0 = datetime(2015, 2, 22, tzinfo=UTC)


def bucket(i: int, n: int) -> SeriesStats:
    return SeriesStats("Acme", "*", T0 + timedelta(minutes=i), 60, n)


def test_alerts_stay_in_the_outbox_until_acknowledged():
    state: dict = {}
    det = Detection(state, "poisson-window", {"window": 5, "warmup": 30, "activation": 5},
                    PolicyConfig(0.999, critical=0.9999, min_volume=10, persist=2, activation_posts=5))
    for i in range(120):
        assert det.observe(bucket(i, 1 + i % 2)) == []
        det.ack("Acme/*")
    raised = []
    for i in range(120, 130):
        raised = det.observe(bucket(i, 12))
        if raised:
            break
    assert [a.event for a in raised] == ["open"]
    # The worker stops before sending: the same bucket again is ignored by the detector,
    # but the unacknowledged alert is handed out again, identical.
    assert det.observe(bucket(i, 12)) == raised
    det.ack("Acme/*")
    assert det.observe(bucket(i, 12)) == []


def _run_detection(batch: int | None, counts: list[int]) -> tuple[dict, list, int]:
    """Feed ``counts`` (one bucket each, with positions) record by record or in batches."""
    from stormwatch.positions import Position
    from tests.faults.faulty import FaultySeasonal  # noqa: F401  (registers faulty-seasonal)

    state: dict = {}
    det = Detection(state, "faulty-seasonal", {"warmup": 30}, PolicyConfig(min_volume=0))
    sent, failed = [], 0
    size = batch or 1
    for start in range(0, len(counts), size):
        if batch:
            det.begin_batch()
        for i in range(start, min(start + size, len(counts))):
            try:
                sent.extend(det.observe(bucket(i, counts[i]), Position(0, i)))
            except ValueError:
                failed += 1
                continue
            det.ack("Acme/*")
        if batch:
            det.end_batch()
    for v in state.values():  # a batch flags its writes (they resume from markers): else equal
        assert v.pop("batched", None) is (True if batch else None)
    return state, sent, failed


def test_a_batch_writes_the_same_state_and_alerts_as_record_by_record_even_when_a_bucket_raises():
    from tests.faults.faulty import POISON_COUNT

    counts = [2 + i % 3 for i in range(200)]
    counts[77] = POISON_COUNT  # raises after warm-up, inside a batch
    counts[150:153] = [40, 40, 40]  # a burst to alert on
    plain = _run_detection(None, counts)
    assert plain[2] == 1 and [a.event for a in plain[1]][:1] == ["open"]
    for batch in (7, 64, 500):
        assert _run_detection(batch, counts) == plain, batch


def test_a_batch_stores_nothing_until_it_ends():
    from stormwatch.positions import Position

    state: dict = {}
    det = Detection(state, "poisson-window", {"window": 5, "warmup": 30, "activation": 5})
    written: list[str] = []
    det.begin_batch()
    det.observe(bucket(0, 3), Position(0, 0))
    det.observe(bucket(1, 3), Position(0, 1))
    assert state == {}
    det.end_batch(before_write=written.append)
    assert written == ["Acme/*"] and state["Acme/*"]["applied"]["offset"] == 1
    assert det.observe(bucket(1, 3), Position(0, 1)) == [] and state["Acme/*"]["applied"]["offset"] == 1


def test_aggregator_batches_count_and_hand_on_as_record_by_record():
    from stormwatch.nlp.lexicon import LexiconScorer
    from stormwatch.pipeline import Aggregator, Enricher
    from stormwatch.positions import Position

    raws = [f'{{"id":"p{i}","created_at":{1424563200 + 25 * i},"channel":"tw","brand":"{"AB"[i % 2]}",'
            f'"text":"late again"}}'.encode() for i in range(300)]
    posts = Enricher(LexiconScorer()).enrich(raws)

    def run(batch: int) -> tuple[dict, list]:
        state: dict = {}
        agg, out = Aggregator(state), []
        for start in range(0, len(posts), batch):
            agg.begin_batch()
            closed = {}
            for i in range(start, min(start + batch, len(posts))):
                if pending := agg.add(posts[i], Position(0, i)):
                    closed[posts[i].post.brand] = pending
            for brand, pending in sorted(closed.items()):
                out.extend(pending)
                agg.ack(brand)
            agg.end_batch()
        for v in state.values():
            v.pop("batched", None)
        # across brands the order differs (a batch hands each brand's buckets on together)
        return state, sorted(out, key=lambda s: (s.brand, s.bucket_start, s.channel))

    one = run(1)
    assert len(one[1]) > 100 and sum(s.count for s in one[1] if s.channel == "*") > 250
    assert run(13) == one and run(300) == one
