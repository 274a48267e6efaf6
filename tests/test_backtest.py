"""stormwatch backtest: metrics against labels, the sweep, the report, the sentiment cache."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from stormwatch.backtest import core
from stormwatch.backtest.data import load_counts
from stormwatch.backtest.run import DEFAULT_SWEEP, parse_sweep
from stormwatch.cli import main
from stormwatch.model import Sentiment
from stormwatch.nlp import base as nlp_base
from stormwatch.nlp.lexicon import LexiconScorer

DAY = 86400


def counts_csv(tmp_path: Path) -> Path:
    """Two series of 1-minute counts over 3 days; Acme bursts twice, Beta never."""
    rows = ["series,timestamp,value"]
    t0 = 1_424_649_600  # 2015-02-23T00:00Z
    for i in range(3 * 24 * 60):
        base = 2 + (i * 7919 % 5) % 3  # deterministic 2..4
        acme = base + (40 if 2000 <= i < 2030 or 3500 <= i < 3520 else 0)
        rows.append(f"Acme,{t0 + 60 * i},{acme}")
        rows.append(f"Beta,{t0 + 60 * i},{base}")
    p = tmp_path / "counts.csv"
    p.write_text("\n".join(rows) + "\n")
    return p


def labels(tmp_path: Path, items: Sequence[tuple[str, int, int]]) -> Path:
    t0 = 1_424_649_600
    p = tmp_path / "labels.json"
    p.write_text(json.dumps([{"series": s, "start": t0 + 60 * a, "end": t0 + 60 * b} for s, a, b in items]))
    return p


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["backtest", *args]) == 0
    return capsys.readouterr().out


def test_counts_backtest_reports_delays_misses_and_false_alerts(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = counts_csv(tmp_path)
    # the first burst is labelled, the second one is not; a third labelled incident has no burst
    lab = labels(tmp_path, [("Acme", 1990, 2060), ("Acme", 4000, 4100)])
    out = run_cli(capsys, str(csv_path), "--labels", str(lab), "--params", '{"warmup": 120}')
    acme = next(line for line in out.splitlines() if line.startswith("Acme/*"))
    beta = next(line for line in out.splitlines() if line.startswith("Beta/*"))
    cols = acme.split()
    # alerts, alerts/week, false/week, incidents, missed, delays
    assert cols[1] == "2" and cols[4] == "2" and cols[5] == "1"
    assert cols[6] == "11,miss"  # alert at the first burst bucket (+1 bucket) 10 min after the label start
    assert float(cols[3]) == pytest.approx(1 / (3 / 7), abs=0.05)  # the unlabelled burst: 1 false in 3 days
    assert beta.split()[1] == "0"


def test_evaluate_counts_alert_in_window_once_and_scores_nab() -> None:
    series, _ = load_counts_from_rows([(60 * i, 1.0) for i in range(1000)])
    tr = core.Trace("A/*", 60, t=[60.0 * i for i in range(1000)])
    from datetime import UTC, datetime

    from stormwatch.model import Alert

    def alert(minute: int) -> Alert:
        at = datetime.fromtimestamp(60 * minute, UTC)
        return Alert(f"A/*@{minute}", "open", "A", "*", "warning", at, at, 1, 1, 0, 2, 0.9, "d", 0.85)

    tr.alerts = [alert(500), alert(505), alert(900)]
    r = core.evaluate(tr, [core.Incident("A", 60 * 490, 60 * 520), core.Incident("A", 60 * 600, 60 * 610)])
    assert r.delays == [660.0, None] and r.missed == 1 and r.false_alerts == 1 and r.alerts == 3
    # NAB: one window caught early-ish, one missed, one FP after a window
    assert -100 < r.nab_score < 60 and not math.isnan(r.nab_score)
    assert series  # the loader's grouping


def load_counts_from_rows(rows: list[tuple[int, float]]) -> tuple[dict[str, list], list]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.csv"
        p.write_text("timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in rows))
        return load_counts(p)


def test_sweep_marks_the_best_setting_and_report_writes_readable_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = counts_csv(tmp_path)
    lab = labels(tmp_path, [("Acme", 1990, 2060), ("Acme", 3490, 3560)])
    rep = tmp_path / "rep"
    out = run_cli(capsys, str(csv_path), "--labels", str(lab), "--params", '{"warmup": 120}',
                  "--sweep", "fewer,more,0.999", "--report", str(rep))
    table = out[out.index("sweep ("):].splitlines()
    rows = {line[:26].strip(): line for line in table[2:6]}
    assert set(rows) == {"configured", "fewer", "more", "threshold 0.999"}
    assert sum("<- best for standard" in line for line in rows.values()) == 1
    assert "100%" in rows["configured"]
    index = (rep / "index.html").read_text()
    assert "<h2>Sweep</h2>" in index and "Acme/*" in index and "class=best" in index
    for png in ("Acme.png", "Beta.png", "sweep.png"):
        data = (rep / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < 200_000


def test_parse_sweep_default_has_ten_settings() -> None:
    settings = parse_sweep(DEFAULT_SWEEP)
    assert len(settings) == 10 and {s.preset for s in settings} == {"fewer", "balanced", "more", None}
    with pytest.raises(ValueError, match="neither a preset"):
        parse_sweep("1.5")


class CountingScorer(LexiconScorer):
    calls = 0

    def score(self, texts: Sequence[str], langs: Sequence[str | None] | None = None) -> list[Sentiment]:
        CountingScorer.calls += len(texts)
        return super().score(texts, langs)


def test_airline_backtest_with_watch_config_and_cached_sentiment(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Path(__file__).resolve().parent.parent
    monkeypatch.setenv("STORMWATCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(nlp_base.REGISTRY, "counting", CountingScorer)
    args = [str(data / "posts" / "airline_posts.jsonl"), "--scorer", "counting", "--only", "/*",
            "--watch", str(repo / "deploy" / "watch.example.yaml"),
            "--labels", str(repo / "docs" / "examples" / "airline_incidents.json")]
    first = run_cli(capsys, *args)
    hits, scored = map(int, re.search(r"(\d+) hits, (\d+) scored", first).groups())
    assert hits + scored == 9843 and CountingScorer.calls == scored > 9700  # repeated texts: once
    second = run_cli(capsys, *args, "--sweep", "fewer,more")
    assert CountingScorer.calls == scored  # the sweep re-scored nothing
    assert "9843 hits, 0 scored" in second and "unmatched 0" in second
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^(\S[^/\n]*)/\*.*$", second, re.M)}
    assert set(rows) == {"American", "US Airways", "United", "Virgin America"}
    assert "labelled incidents 4" in second
    incidents = {k: int(v.split()[-4]) for k, v in rows.items()}  # the incidents column
    assert incidents == {"American": 1, "US Airways": 2, "United": 1, "Virgin America": 0}


def test_nab_realtweets_backtest_uses_the_corpus_labels(data: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = run_cli(capsys, str(data / "nab"), "--only", "realTweets")
    assert "labelled incidents 23" in out
    total = next(line for line in out.splitlines() if line.startswith("all series"))
    nab_score = float(total.split()[-1])
    assert 60 < nab_score <= 100
