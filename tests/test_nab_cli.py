"""The ``bench nab`` command end to end on a tiny corpus written on the fly."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta

from stormwatch.cli import main


def _corpus(root):
    start = datetime(2015, 3, 1, tzinfo=UTC)
    stamp = lambda i: (start + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    (root / "data" / "realTweets").mkdir(parents=True)
    (root / "labels").mkdir()
    with (root / "data" / "realTweets" / "a.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value"])
        for i in range(1000):
            w.writerow([stamp(i), 400 if 700 <= i < 705 else 20 + (i * 7) % 5])
    windows = {"realTweets/a.csv": [[stamp(680) + ".000000", stamp(720) + ".000000"]]}
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (root / "labels" / "combined_labels.json").write_text(json.dumps({"realTweets/a.csv": [stamp(700)]}))


def test_bench_nab_scores_writes_and_rescores(tmp_path, capsys):
    _corpus(tmp_path)
    out = tmp_path / "out"
    assert main(["bench", "nab", "--data", str(tmp_path), "--results", str(out)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    std = report["profiles"]["standard"]
    # the burst at row 700 is found 20 rows into a 41-row window, no false alarm:
    # σ(−21/41) = 2/(1 + e^{−2.5610}) − 1 = 0.8566; / σ(−1) = 0.8682; 100 × (0.8682 + 1)/2
    assert std["score"] == 93.41
    assert std["windows"] == 1
    assert report["delay_realTweets"] == {"windows": 1, "detected": 1, "median_minutes": 100.0,
                                          "median_minutes_after_label": 0.0}
    rows = list(csv.DictReader((out / "realTweets" / "a.csv").open()))
    assert len(rows) == 1000 and set(rows[0]) == {"timestamp", "value", "anomaly_score"}
    assert main(["bench", "nab", "--data", str(tmp_path), "--rescore", str(out)]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["profiles"] == report["profiles"]
