"""``stormwatch bench profile``: a brand's posts per hour and the peak test."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stormwatch.bench.profile import hourly, peak_test, poisson_sf
from stormwatch.cli import main

T0 = datetime(2015, 2, 22, 20, tzinfo=UTC)


def test_hourly_counts_busiest_minute_and_five_minutes_and_fills_empty_hours() -> None:
    posts = [(T0 + timedelta(minutes=m), None) for m in (0, 0, 0, 4, 5, 9, 59)]
    later = T0 + timedelta(hours=2)
    posts += [(later + timedelta(minutes=1), "negative"), (later + timedelta(minutes=2), "neutral")]
    rows = hourly(posts)
    assert [(r.hour - T0, r.posts, r.max_1m, r.max_5m) for r in rows] == [
        (timedelta(0), 7, 3, 4), (timedelta(hours=1), 0, 0, 0), (timedelta(hours=2), 2, 1, 2)]
    assert rows[0].negative_share is None and rows[2].negative_share == 0.5


def test_poisson_tail_matches_closed_forms() -> None:
    assert poisson_sf(0, 3.0) == 1.0
    assert poisson_sf(1, 3.0) == pytest.approx(1 - 2.718281828459045 ** -3)
    assert poisson_sf(3, 0.0) == 0.0
    # P(X >= 2 | 1) = 1 - e^-1 (1 + 1)
    assert poisson_sf(2, 1.0) == pytest.approx(1 - 2 * 2.718281828459045 ** -1)


def test_peak_test_compares_the_busiest_hour_with_the_others() -> None:
    posts = [(T0 + timedelta(hours=h, seconds=i), None) for h, n in enumerate([10, 10, 30]) for i in range(n)]
    out = peak_test(hourly(posts))
    assert out["peak_posts"] == 30 and out["other_hours_mean"] == 10.0
    assert out["p_peak"] == pytest.approx(poisson_sf(30, 10.0)) and out["p_peak"] < 1e-5
    assert out["p_any_hour"] == pytest.approx(1 - (1 - out["p_peak"]) ** 3)
    with pytest.raises(ValueError, match="two hours"):
        peak_test(hourly(posts[:5]))


def test_profile_of_american_shows_its_01h_peak_is_within_its_level(data: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The evidence behind docs/detectors.md: American's busiest hour of its first
    evening (01h, 123 posts) against the six others after its posts start (20h-03h)."""
    args = ["bench", "profile", str(data / "posts" / "airline_posts.jsonl"), "--brand", "American",
            "--start", "2015-02-22T20:00:00Z", "--end", "2015-02-23T03:00:00Z"]
    assert main(args) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["posts"] == 736 and summary["peak_hour"] == "2015-02-23T01:00:00Z"
    assert summary["peak_posts"] == 123 and summary["other_hours_mean"] == 102.2
    assert 0.1 < summary["p_any_hour"] < 0.2  # not an anomaly among seven hours
    assert "2015-02-22 21h      109         7        20" in out  # busier minutes before the peak


def test_profile_of_an_unknown_brand_says_so(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "profile", str(data / "posts" / "airline_posts.jsonl"), "--brand", "Nobody"]) == 1
    assert "no valid posts of brand 'Nobody'" in capsys.readouterr().out
