import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from stormwatch.detectors import make, restore
from stormwatch.detectors.poisson import PoissonWindow

counts = st.lists(st.integers(min_value=0, max_value=500), min_size=1, max_size=400)


@settings(max_examples=60, deadline=None)
@given(counts)
def test_scores_in_unit_interval_and_deterministic(xs):
    a, b = PoissonWindow(window=7, warmup=5, activation=3), PoissonWindow(window=7, warmup=5, activation=3)
    sa = [a.update({"t": 60.0 * i, "value": float(x)}) for i, x in enumerate(xs)]
    sb = [b.update({"t": 60.0 * i, "value": float(x)}) for i, x in enumerate(xs)]
    assert sa == sb
    assert all(0.0 <= s <= 1.0 and not math.isnan(s) for s in sa)


@settings(max_examples=40, deadline=None)
@given(counts, counts)
def test_save_restore_gives_identical_scores(head, tail):
    det = make("poisson-window", window=5, warmup=3, activation=2)
    for i, x in enumerate(head):
        det.update({"t": 60.0 * i, "value": float(x)})
    copy = restore(json.loads(json.dumps(det.state_dict())))
    n = len(head)
    for i, x in enumerate(tail, start=n):
        obs = {"t": 60.0 * i, "value": float(x)}
        assert det.update(obs) == copy.update(obs)


def test_silence_before_activation_is_no_baseline():
    det = PoissonWindow(window=10, warmup=30, activation=20)
    for i in range(3000):  # two days of nothing
        assert det.update({"t": 60.0 * i, "value": 0.0}) == 0.0
    # Activated after 10 buckets (20 posts), then 30 buckets of warm-up: the start is no crisis.
    scores = [det.update({"t": 60.0 * (3000 + i), "value": 2.0}) for i in range(39)]
    assert max(scores) == 0.0 and det.warming_up
    scores = [det.update({"t": 60.0 * (3039 + i), "value": 2.0}) for i in range(60)]
    assert not det.warming_up and max(scores) < 0.99


def test_memory_is_bounded_by_the_window():
    det = PoissonWindow(window=30)
    for i in range(10_000):
        det.update({"t": 60.0 * i, "value": float(i % 5)})
    assert len(det.buf) == 30 and len(json.dumps(det.state_dict())) < 2000
