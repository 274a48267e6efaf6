"""Detector properties (hypothesis) and known behaviour of each detector."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormwatch.detectors import DEFAULT_VOLUME_DETECTOR, REGISTRY, make, restore
from stormwatch.detectors.ensemble import SeasonalEnsemble
from stormwatch.detectors.seasonal import SeasonalBaseline, gaussian_surprise
from stormwatch.detectors.share_cusum import ShareCusum

FAST = {  # small settings so that property tests stay quick; the same code paths
    "seasonal-baseline": {"warmup": 5},
    "poisson-window": {"window": 5, "warmup": 3, "activation": 2},
    "share-cusum": {"warmup_posts": 5},
    "null": {},
    "random": {"seed": 3},
    "river-hst": {"warmup": 5, "n_trees": 3, "height": 3, "window_size": 10},
    "river-gaussian": {"warmup": 5, "window_size": 20},
    "river-sad": {"warmup": 5},
    "seasonal-ensemble": {"seasonal": {"warmup": 5}, "freeze": 5, "cooldown": 600.0},
    "cooldown": {"inner": "seasonal-baseline", "inner_params": {"warmup": 5, "alarm": 0.99},
                 "alarm": 0.5, "cooldown": 600.0},
}

values = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.integers(min_value=0, max_value=50).map(float),
)
series = st.lists(st.tuples(st.floats(min_value=0.0, max_value=3600.0), values, st.integers(1, 200)),
                  min_size=1, max_size=60)


def observations(raw):
    t = 1_424_986_973.0
    out = []
    for dt, v, n in raw:
        t += dt
        out.append({"t": t, "value": v, "n": float(n)})
    return out


def fit_share(obs):  # the share detector reads a share in [0, 1]
    return [{**x, "value": min(1.0, abs(x["value"]) / 1e6 * 50)} for x in obs]


def prepared(name, raw):
    obs = observations(raw)
    return fit_share(obs) if name == "share-cusum" else obs


def test_every_registered_detector_is_covered():
    # Plugins that tests register (tests.faults.faulty) are not the product's detectors.
    builtin = {name for name, cls in REGISTRY.items() if cls.__module__.startswith("stormwatch.")}
    assert builtin == set(FAST)


@pytest.mark.parametrize("name", sorted(FAST))
@settings(max_examples=40, deadline=None)
@given(raw=series)
def test_scores_in_unit_interval(name, raw):
    det = make(name, **FAST[name])
    for x in prepared(name, raw):
        s = det.update(x)
        assert isinstance(s, float)
        assert 0.0 <= s <= 1.0


@pytest.mark.parametrize("name", sorted(FAST))
@settings(max_examples=25, deadline=None)
@given(raw=series)
def test_same_input_same_output(name, raw):
    obs = prepared(name, raw)
    a, b = make(name, **FAST[name]), make(name, **FAST[name])
    assert [a.update(x) for x in obs] == [b.update(x) for x in obs]


@pytest.mark.parametrize("name", sorted(FAST))
@settings(max_examples=25, deadline=None)
@given(raw=series, cut=st.integers(min_value=0, max_value=60))
def test_save_restore_gives_identical_scores(name, raw, cut):
    obs = prepared(name, raw)
    cut = min(cut, len(obs))
    det = make(name, **FAST[name])
    for x in obs[:cut]:
        det.update(x)
    saved = json.loads(json.dumps(det.state_dict(), allow_nan=False))  # what a Faust table holds
    twin = restore(saved)
    rest = obs[cut:]
    assert [twin.update(x) for x in rest] == [det.update(x) for x in rest]
    assert twin.state_dict() == det.state_dict()


PURE_SCORERS = ["seasonal-baseline", "seasonal-ensemble", "share-cusum", "random", "river-gaussian",
                "river-sad"]


@pytest.mark.parametrize("name", PURE_SCORERS)
@settings(max_examples=25, deadline=None)
@given(raw=series)
def test_score_one_does_not_learn(name, raw):
    obs = prepared(name, raw)
    det = make(name, **FAST[name])
    for x in obs:
        before = json.dumps(det.state_dict())
        s = det.score_one(x)
        assert json.dumps(det.state_dict()) == before
        assert det.update(x) == s


def test_seasonal_state_is_bounded():
    det = SeasonalBaseline()
    obs = [{"t": 300.0 * i, "value": float(i % 17)} for i in range(30_000)]
    for x in obs[:3000]:  # > one week of 5-minute buckets: every slot visited
        det.update(x)
    size = len(json.dumps(det.state_dict()))
    for x in obs[3000:]:
        det.update(x)
    assert len(json.dumps(det.state_dict())) <= size + 200  # digits only, no growth
    assert len(det.state_dict()["state"]["offsets"]) == 48


def test_gaussian_surprise_known_values():
    # −ln P(|Z| ≥ z): P = 0.3173 at z = 1, 0.0455 at z = 2, 2.7e−3 at z = 3
    assert gaussian_surprise(1.0) == pytest.approx(-math.log(0.3173105), rel=1e-6)
    assert gaussian_surprise(2.0) == pytest.approx(-math.log(0.0455003), rel=1e-6)
    assert gaussian_surprise(3.0) == pytest.approx(-math.log(0.0026998), rel=1e-5)
    assert gaussian_surprise(-3.0) == gaussian_surprise(3.0)


def _poisson(lam: float, u: float) -> int:
    """Inverse-CDF Poisson draw from a uniform u (deterministic tests, no RNG state)."""
    k, p = 0, math.exp(-lam)
    c = p
    while u > c:
        k += 1
        p *= lam / k
        c += p
    return k


def _uniforms(n: int, seed: int = 1):
    state = seed
    for _ in range(n):
        state = (state * 6364136223846793005 + 1442695040888963407) & ((1 << 64) - 1)
        yield (state >> 11) / float(1 << 53)


def test_seasonal_low_counts_rarely_alarm_and_catch_a_burst():
    # the product's case: 1-minute buckets, 0–5 posts, mean 1.5; two weeks
    det = SeasonalBaseline()
    n = 14 * 24 * 60
    alarms = 0
    for i, u in enumerate(_uniforms(n)):
        if det.update({"t": 60.0 * i, "value": float(_poisson(1.5, u))}) >= det.alarm:
            alarms += 1
    assert alarms <= 3  # Poisson noise alone: at most a handful in two weeks
    burst = [det.update({"t": 60.0 * (n + k), "value": 15.0}) for k in range(3)]
    assert burst[0] >= det.alarm


def test_seasonal_learns_the_daily_cycle():
    det = SeasonalBaseline(warmup=100)
    for i in range(14 * 288):  # two weeks of 5-minute buckets
        t = 300.0 * i
        det.update({"t": t, "value": 100.0 + 80.0 * math.sin(2 * math.pi * t / 86400)})
    t = 300.0 * 14 * 288 + 6 * 3600  # 06:00, the daily peak
    assert det.score_one({"t": t, "value": 180.0}) < 0.5
    exp = det.expectation()
    assert exp is not None and exp.lower <= exp.expected <= exp.upper
    # the same value at the daily trough, for a quarter of an hour, is an alarm
    twin = restore(det.state_dict())
    trough = [twin.update({"t": t + 12 * 3600 + 300.0 * k, "value": 180.0}) for k in range(3)]
    assert max(trough) >= det.alarm


def test_seasonal_cooldown_in_event_time():
    det = SeasonalBaseline(warmup=10, cooldown=3600.0)
    for i in range(200):
        det.update({"t": 60.0 * i, "value": 10.0 + (i % 3)})
    assert det.update({"t": 12000.0, "value": 100.0}) >= det.alarm
    assert det.update({"t": 12060.0, "value": 200.0}) == 0.0  # within the hour
    assert det.update({"t": 12000.0 + 3600.0, "value": 400.0}) > 0.0


def test_share_cusum_known_llr():
    # p0 = 0.2 learnt exactly; shift 0.25 → p1 = 0.2 + 0.25 × 0.8 = 0.4
    # 3 negative of 4: llr = 3 ln(0.4/0.2) + 1 ln(0.6/0.8) = 1.7917595; score = llr/(llr + 10)
    det = ShareCusum(warmup_posts=100)
    for i in range(40):
        det.update({"t": 60.0 * i, "value": 0.2, "n": 50})
    assert det.expectation().expected == pytest.approx(0.2)
    assert det.score_one({"t": 2400.0, "value": 0.75, "n": 4}) == pytest.approx(1.7917595 / 11.7917595)
    # the same share over 400 posts is 100 times the evidence, capped at 3h
    assert det.score_one({"t": 2400.0, "value": 0.75, "n": 400}) == pytest.approx(30 / 40)


def test_default_detector_is_the_seasonal_baseline():
    assert DEFAULT_VOLUME_DETECTOR == "seasonal-baseline"
    assert isinstance(make(DEFAULT_VOLUME_DETECTOR), SeasonalBaseline)


def test_seasonal_low_counts_sustained_rise():
    # after two weeks of Poisson(1.5) minutes: a rise to 10/min alarms within 3 minutes,
    # a rise to 4/min (within the range already seen) does not within half an hour
    det = SeasonalBaseline()
    n = 14 * 24 * 60
    us = list(_uniforms(n + 30))
    for i in range(n):
        det.update({"t": 60.0 * i, "value": float(_poisson(1.5, us[i]))})
    state = det.state_dict()

    def first_alarm(lam: float) -> int | None:
        d = restore(state)
        for k in range(30):
            if d.update({"t": 60.0 * (n + k), "value": float(_poisson(lam, us[n + k]))}) >= d.alarm:
                return k
        return None

    assert first_alarm(10.0) is not None and first_alarm(10.0) <= 3
    assert first_alarm(4.0) is None


def _quiet_then(det, n: int, tail: list[float], step: float = 300.0) -> list[float]:
    """Feed n rows of a repeating 10-row pattern, then `tail`; return the tail's scores."""
    day = [10.0, 12.0, 11.0, 9.0, 10.0, 11.0, 12.0, 10.0, 9.0, 11.0]
    for i in range(n):
        det.update({"t": step * i, "value": day[i % 10]})
    return [det.update({"t": step * (n + k), "value": v}) for k, v in enumerate(tail)]


def test_ensemble_ranks_a_rare_alarm_above_a_frequent_one():
    # same spike, once after 2000 quiet rows and once 60 rows after a previous alarm
    # (past the 1 h cooldown): the first outranks the second; both are alarms (≥ 0.5)
    det = SeasonalEnsemble(seasonal={"warmup": 20}, freeze=20, cooldown=3600.0)
    rare = _quiet_then(det, 2000, [80.0])[0]
    frequent = [det.update({"t": 300.0 * (2001 + k), "value": 10.0 + k % 3}) for k in range(59)]
    again = det.update({"t": 300.0 * 2060, "value": 200.0})
    assert max(frequent) < 0.5
    assert 0.5 <= again < rare < 1.0
    # rank = 0.5 + 0.5 (mix g + (1 − mix) u), g = 1 − exp(−gap/tau): the gap part by hand
    g_rare, g_again = 1 - math.exp(-2001 / 500), 1 - math.exp(-60 / 500)
    assert rare - again == pytest.approx(0.25 * (g_rare - g_again), abs=0.126)  # u differs by < 0.5


def test_ensemble_novel_shape_confirms_moderate_evidence():
    # a value inside the learnt range but in a new order of bins: the same level score
    # alarms only when the pattern is new
    base = {"seasonal": {"warmup": 20}, "freeze": 20, "gate": 0.0, "boost": 0.9}
    novel = _quiet_then(SeasonalEnsemble(**base), 500, [9.0, 9.0, 9.0])
    plain = _quiet_then(SeasonalEnsemble(**{**base, "gate": 1.1}), 500, [9.0, 9.0, 9.0])
    assert max(plain) < 0.5  # no alarm from the level view alone
    assert max(novel) >= 0.5  # 9, 9, 9 never occurred in the repeating pattern


def test_ensemble_state_is_bounded():
    det = SeasonalEnsemble()
    for i in range(20_000):
        det.update({"t": 300.0 * i, "value": float((i * 7919) % 1000)})
    seen = det.state_dict()["state"]["seen"]
    assert len(seen) <= (6 + 2) ** 3
    assert len(json.dumps(det.state_dict())) < 10_000


def test_ensemble_leaves_the_seasonal_defaults_alone():
    # the inner baseline gets the seasonal parameters minus its cooldown (the ensemble's own)
    # (and weekend hours borrow their weekday twins' offsets unless told otherwise)
    det = SeasonalEnsemble(seasonal={"alpha": 0.002, "cooldown": 99.0})
    assert det.params()["seasonal"] == {"borrow": True, "alpha": 0.002}
    assert SeasonalEnsemble(seasonal={"borrow": False}).params()["seasonal"] == {"borrow": False}
    assert det._inner.cooldown == 0.0 and SeasonalBaseline().cooldown == 43200.0


def test_ensemble_stuck_value_alarms_once_at_min_run():
    # the repeating pattern never repeats a value, so every finished run has length 1:
    # a run of 10.5 (inside the range, unremarkable as a level) alarms at its 10th row
    on = _quiet_then(SeasonalEnsemble(seasonal={"warmup": 20}, freeze=20, var_score=0.0), 500, [10.5] * 14)
    off = _quiet_then(SeasonalEnsemble(seasonal={"warmup": 20}, freeze=20, var_score=0.0, run_score=0.0),
                      500, [10.5] * 14)
    assert [k for k, s in enumerate(on) if s >= 0.5] == [9]  # run length 10 = min_run
    assert max(off) < 0.5


def test_ensemble_energy_record_alarms_on_a_burst_beyond_every_burst():
    # level view off (gate > 1 and an alarm above any seasonal score): only the energy view can alarm
    quiet = {"seasonal": {"warmup": 20, "spatial": 0.0}, "freeze": 20, "gate": 1.1, "run_score": 0.0,
             "alarm": 0.94}
    burst = _quiet_then(SeasonalEnsemble(**quiet), 500, [10.0, 40.0, 10.0])
    assert burst[1] >= 0.5 and burst[0] < 0.5
    none = _quiet_then(SeasonalEnsemble(**{**quiet, "var_score": 0.0}), 500, [10.0, 40.0, 10.0])
    assert max(none) < 0.5


# the ensemble's settling period, daily recurrence and silent count runs; the baseline's borrowing
ENSEMBLE_ALL = {"seasonal": {"warmup": 5}, "freeze": 5, "cooldown": 600.0, "settle": 8,
                "daily_tol": 20_000.0, "daily_days": 2, "daily_keep": 3}


@settings(max_examples=40, deadline=None)
@given(raw=series, cut=st.integers(min_value=0, max_value=60), zero_runs=st.booleans())
def test_ensemble_new_state_restores_and_scores_stay_in_unit_interval(raw, cut, zero_runs):
    # hours between rows (×12): alarms a day or two apart occur, so the kept alarm times matter
    obs = [{**x, "t": x["t"] * 12.0} for x in observations(raw)]
    cut = min(cut, len(obs))
    det = SeasonalEnsemble(**ENSEMBLE_ALL, zero_runs=zero_runs)
    head = [det.update(x) for x in obs[:cut]]
    saved = json.loads(json.dumps(det.state_dict(), allow_nan=False))
    assert len(saved["state"]["recent"]) <= 3
    twin = restore(saved)
    rest = obs[cut:]
    a, b = [twin.update(x) for x in rest], [det.update(x) for x in rest]
    assert a == b and twin.state_dict() == det.state_dict()
    assert all(0.0 <= s <= 1.0 for s in head + a)


def test_ensemble_alarms_while_settling_do_not_lower_a_later_rank():
    # an alarm at row 50 (inside `settle`), then another at row 450: with settle the later
    # alarm's gap counts from the start (451 rows), without it from the early alarm (400 rows)
    def later(settle):
        det = SeasonalEnsemble(seasonal={"warmup": 20}, freeze=20, settle=settle, cooldown=3600.0)
        day = [10.0, 12.0, 11.0, 9.0, 10.0, 11.0, 12.0, 10.0, 9.0, 11.0]
        spikes = {50: 80.0, 450: 200.0}  # each beyond every value before it
        scores = [det.update({"t": 300.0 * i, "value": spikes.get(i, day[i % 10])}) for i in range(451)]
        assert scores[50] >= 0.5  # the early alarm happens either way
        return scores[450]

    with_settle, without = later(300), later(0)
    assert 0.5 <= without < with_settle < 1.0
    gap_part = 0.25 * (math.exp(-400 / 500) - math.exp(-451 / 500))  # ½ mix (g(451) − g(400))
    assert with_settle - without == pytest.approx(gap_part, abs=1e-9)


def test_ensemble_daily_alarm_ranks_as_no_news():
    # the same spike 24 h after an alarm (a daily job) ranks below one 30 h after it
    def again(hours):
        det = SeasonalEnsemble(seasonal={"warmup": 20}, freeze=20, settle=0, cooldown=3600.0)
        day = [10.0, 12.0, 11.0, 9.0, 10.0, 11.0, 12.0, 10.0, 9.0, 11.0]
        for i in range(600):
            det.update({"t": 300.0 * i, "value": day[i % 10]})
        first = det.update({"t": 300.0 * 600, "value": 80.0})
        rows = int(hours * 12)
        for k in range(1, rows):
            det.update({"t": 300.0 * (600 + k), "value": day[k % 10]})
        return first, det.update({"t": 300.0 * (600 + rows), "value": 200.0})

    first, daily = again(24)
    _, other = again(30)
    assert first >= 0.5 and 0.5 <= daily < other
    off = SeasonalEnsemble(seasonal={"warmup": 20}, freeze=20, daily_tol=0.0)
    assert not off._daily(86400.0)  # tolerance 0: the check is off (and is never consulted)


def test_ensemble_a_run_of_zero_counts_is_silence_not_a_stuck_sensor():
    # counts 0..3 (never the same twice in a row), then 14 rows without posts:
    # no stuck-value alarm unless zero_runs=True
    def tail(**kw):
        det = SeasonalEnsemble(seasonal={"warmup": 20}, freeze=20, var_score=0.0, **kw)
        for i in range(500):
            det.update({"t": 300.0 * i, "value": float(i % 4)})
        return [det.update({"t": 300.0 * (500 + k), "value": 0.0}) for k in range(14)]

    assert max(tail()) < 0.5
    assert [k for k, s in enumerate(tail(zero_runs=True)) if s >= 0.5] == [9]


def test_seasonal_borrow_starts_weekend_hours_from_their_weekday_twins():
    # a busy 09–17 h every day; five weekdays seen, then the first Saturday: without borrowing
    # the weekend slots start at 0 and the first busy hour looks like a burst
    monday = 4 * 86400.0  # 1970-01-05 was a Monday

    def saturday(borrow):
        det = SeasonalBaseline(borrow=borrow, cooldown=0.0)
        out = []
        for i in range(6 * 288):
            t = monday + 300.0 * i
            hour = int(t // 3600) % 24
            s = det.update({"t": t, "value": 150.0 if 9 <= hour < 17 else 100.0})
            if i >= 5 * 288:
                out.append(s)
        return max(out)

    assert saturday(False) > 0.7 and saturday(True) < 0.1
    assert SeasonalBaseline().params()["borrow"] is False  # the product default is unchanged
