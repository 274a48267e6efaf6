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
