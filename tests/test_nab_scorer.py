"""Known answers for the NAB scorer, computed by hand from the rules in DESIGN.md.

σ(x) = 2/(1+e^{5x}) − 1, so (to 7 digits):
σ(−1) = 0.9866143, σ(−0.5) = 0.8482836, σ(2/3) = −0.9311096, σ(≥3) = −1.
"""

from __future__ import annotations

import json
import math

import pytest

from stormwatch.bench import nab
from stormwatch.bench.nab_data import data_root, load_corpus, parse_time

STD = nab.PROFILES["standard"]
LOW_FP = nab.PROFILES["reward_low_FP_rate"]
LOW_FN = nab.PROFILES["reward_low_FN_rate"]


def file_with(detections: dict[int, float], n: int = 20, windows=((10, 13),), probation: int = 3):
    scores = [0.0] * n
    for i, s in detections.items():
        scores[i] = s
    return nab.ScoredFile("f", scores, list(windows), probation=probation)


def test_scaled_sigmoid_by_hand():
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(0.9866143, abs=1e-7)
    assert nab.scaled_sigmoid(-0.5) == pytest.approx(0.8482836, abs=1e-7)
    assert nab.scaled_sigmoid(0.0) == 0.0
    assert nab.scaled_sigmoid(2 / 3) == pytest.approx(-0.9311096, abs=1e-7)
    assert nab.scaled_sigmoid(3.0) == -1.0
    assert nab.scaled_sigmoid(7.5) == -1.0


def test_probation_is_15_percent_at_most_750():
    assert nab.probation_length(100) == 15
    assert nab.probation_length(1127) == 169
    assert nab.probation_length(4999) == 749
    assert nab.probation_length(5000) == 750
    assert nab.probation_length(22695) == 750


def test_detection_at_window_start_is_worth_tp_weight():
    # window rows 10..13 (W = 4): row 10 has relative position −(13−10+1)/4 = −1
    assert file_with({10: 1.0}).score_at(0.5, STD).raw == pytest.approx(1.0)


def test_later_detection_is_worth_less():
    # row 12: −(13−12+1)/4 = −0.5 → σ(−0.5)/σ(−1) = 0.8482836/0.9866143 = 0.8597926
    r = file_with({12: 1.0}).score_at(0.5, STD)
    assert r.raw == pytest.approx(0.8597926, abs=1e-7)
    assert (r.detected, r.missed, r.fp) == (1, 0, 0)


def test_only_the_earliest_detection_of_a_window_counts():
    r = file_with({10: 1.0, 11: 1.0, 12: 1.0, 13: 1.0}).score_at(0.5, STD)
    assert r.raw == pytest.approx(1.0)
    assert r.fp == 0


def test_missed_window_costs_fn_weight():
    assert file_with({}).score_at(0.5, STD).raw == -1.0
    assert file_with({}).score_at(0.5, LOW_FN).raw == -2.0


def test_false_positive_before_any_window_costs_full_fp_weight():
    assert file_with({5: 1.0, 10: 1.0}).score_at(0.5, STD).raw == pytest.approx(1.0 - 0.11)
    assert file_with({5: 1.0, 10: 1.0}).score_at(0.5, LOW_FP).raw == pytest.approx(1.0 - 0.22)


def test_false_positive_after_a_window_is_weighted_by_distance():
    # row 15 after a window ending at 13, W = 4: |13−15|/(4−1) = 2/3 → 0.11 × σ(2/3) = −0.1024221
    r = file_with({10: 1.0, 15: 1.0}).score_at(0.5, STD)
    assert r.raw == pytest.approx(1.0 - 0.1024221, abs=1e-7)
    # three widths or more after the window: the full cost
    r = file_with({10: 1.0, 22: 1.0}, n=30).score_at(0.5, STD)
    assert r.raw == pytest.approx(1.0 - 0.11)


def test_probation_rows_are_not_scored():
    r = file_with({0: 1.0, 2: 1.0, 10: 1.0}).score_at(0.5, STD)
    assert r.raw == pytest.approx(1.0)
    assert r.fp == 0
    # a window entirely in probation is neither found nor missed
    f = file_with({}, windows=((0, 2), (10, 13)))
    assert f.score_at(0.5, STD).raw == -1.0
    assert f.score_at(0.5, STD).windows == 1


def test_a_zero_score_is_never_a_detection():
    # otherwise an all-zero detector could "detect everything" at T = 0
    f = file_with({}, n=12, windows=((4, 10),), probation=0)
    assert nab.sweep([f], STD).raw == -1.0
    assert f.score_at(0.0, STD).raw == -1.0


def test_threshold_is_inclusive():
    assert file_with({10: 0.5}).score_at(0.5, STD).raw == pytest.approx(1.0)
    assert file_with({10: 0.5}).score_at(0.5000001, STD).raw == -1.0


def test_sweep_picks_the_threshold_with_the_best_summed_score():
    # window hit at 0.6 (worth 0.8597926), a false positive at 0.8 (−0.11):
    # T = 0.8 → −1 − 0.11; T = 0.6 → 0.8597926 − 0.11; nothing → −1
    f = file_with({5: 0.8, 12: 0.6})
    r = nab.sweep([f], STD)
    assert r.threshold == 0.6
    assert r.raw == pytest.approx(0.7497926, abs=1e-7)
    assert r.score == pytest.approx(100 * (0.7497926 + 1) / 2, abs=1e-5)
    assert nab.sweep([f], LOW_FP).raw == pytest.approx(0.6397926, abs=1e-7)


def test_sweep_prefers_silence_when_false_positives_cost_more():
    # 20 false positives (−2.2) outweigh the hit (+0.86 instead of −1): detect nothing
    f = file_with({**{i: 0.5 for i in range(3, 10)}, **{i: 0.5 for i in range(14, 27)}, 12: 0.5}, n=40)
    r = nab.sweep([f], STD)
    assert math.isinf(r.threshold)
    assert r.raw == -1.0
    assert r.score == 0.0


def test_sweep_is_one_threshold_over_the_corpus():
    a = file_with({10: 0.9})           # found at 0.9
    b = file_with({5: 0.9, 11: 0.3})   # an FP at 0.9; its window only at 0.3
    r = nab.sweep([a, b], STD)
    # T=0.9: 1 + (−1 − 0.11) = −0.11; T=0.3: 1 + (σ(−0.75)/σ(−1) − 0.11)
    hit_11 = nab.scaled_sigmoid(-0.75) / nab.scaled_sigmoid(-1.0)
    assert r.threshold == 0.3
    assert r.raw == pytest.approx(1 + hit_11 - 0.11)
    assert r.windows == 2


def test_normalisation_null_and_perfect():
    assert nab.normalised(-5.0, 5, STD) == 0.0
    assert nab.normalised(5.0, 5, STD) == 100.0
    assert nab.normalised(-10.0, 5, LOW_FN) == 0.0
    # two windows: one found at its start, one missed, one FP before it: (−0.11 + 2)/4
    assert nab.normalised(1.0 - 1.0 - 0.11, 2, STD) == pytest.approx(47.25)
    assert math.isnan(nab.normalised(0.0, 0, STD))


def test_trivial_detectors_on_small_corpus():
    files = [file_with({}), file_with({}, windows=((5, 8), (14, 16)))]
    zero = nab.sweep(files, STD)
    assert zero.score == 0.0 and zero.windows == 3
    oracle = [file_with({10: 1.0}), file_with({5: 1.0, 14: 1.0}, windows=((5, 8), (14, 16)))]
    assert nab.sweep(oracle, STD).score == pytest.approx(100.0)


def test_window_rows_from_label_timestamps():
    times = [parse_time(f"2015-03-01 00:{m:02d}:00") for m in range(0, 60, 5)]
    win = [(parse_time("2015-03-01 00:10:00.000000"), parse_time("2015-03-01 00:25:00.000000"))]
    assert nab.window_rows(times, win) == [(2, 5)]


def test_detection_delay():
    times = [60.0 * i for i in range(20)]
    scores = [0.0] * 20
    scores[12] = 0.9
    assert nab.detection_delays(times, scores, [(10, 13), (15, 18)], 0.5, probation=3) == [120.0, None]


def test_windows_must_be_sorted_and_inside():
    with pytest.raises(ValueError):
        nab.ScoredFile("f", [0.0] * 10, [(5, 7), (6, 8)])
    with pytest.raises(ValueError):
        nab.ScoredFile("f", [0.0] * 10, [(5, 10)])


NAB = data_root() / "nab"  # $STORMWATCH_DATA, else ../shared/data
needs_nab = pytest.mark.skipif(
    not (NAB / "labels" / "combined_windows.json").is_file(),
    reason=f"NAB data not found at {NAB} (set STORMWATCH_DATA to the shared data directory)",
)


@needs_nab
def test_corpus_null_is_zero_and_oracle_is_hundred():
    files = load_corpus(NAB)
    assert len(files) == len(json.loads((NAB / "labels" / "combined_windows.json").read_text()))
    zero, oracle = [], []
    for f in files:
        rows = nab.window_rows(f.times, f.windows)
        zero.append(nab.ScoredFile(f.key, [0.0] * len(f.values), rows))
        hit = [0.0] * len(f.values)
        for lo, _ in rows:
            hit[lo] = 1.0
        oracle.append(nab.ScoredFile(f.key, hit, rows))
    for profile in nab.PROFILES.values():
        assert nab.sweep(zero, profile).score == 0.0
        # every window starts after probation in this corpus, so the oracle is perfect
        assert nab.sweep(oracle, profile).score == pytest.approx(100.0)
