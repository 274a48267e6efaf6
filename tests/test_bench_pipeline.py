"""``stormwatch bench pipeline --span``: the same posts, squeezed into a dense stream."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from stormwatch.bench.pipeline import retimed
from stormwatch.cli import main


def week_of_posts(n: int) -> list[str]:
    start = datetime(2015, 2, 17, tzinfo=UTC)
    return [json.dumps({"id": f"p{i}", "created_at": (start + timedelta(minutes=10 * i)).isoformat(),
                        "channel": "twitter", "brand": "Acme", "text": "the app is down again"})
            for i in range(n)]


def test_retimed_keeps_order_and_relative_spacing_within_the_span():
    lines = week_of_posts(1008)  # one post every 10 minutes for a week
    out = [datetime.fromisoformat(json.loads(x)["created_at"]) for x in retimed(lines, 3600.0)]
    assert out[0] == datetime(2015, 2, 17, tzinfo=UTC)
    assert (out[-1] - out[0]).total_seconds() == 3600.0
    steps = [(b - a).total_seconds() for a, b in pairwise(out)]
    # evenly spaced before, evenly spaced after (times are written to the millisecond)
    assert all(abs(s - 3600.0 / 1007) <= 0.001 for s in steps)


def test_bench_pipeline_local_with_span_reports_the_span(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    posts = tmp_path / "week.jsonl"
    posts.write_text("\n".join(week_of_posts(500)) + "\n")
    assert main(["bench", "pipeline", str(posts), "--mode", "local", "--span", "600"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["posts"] == 500 and out["span_s"] == 600.0 and out["mode"] == "local"
    dense = tmp_path / "var" / "bench" / "week.span600s.jsonl"
    times = [json.loads(x)["created_at"] for x in dense.read_text().splitlines()]
    assert times[0] == "2015-02-17T00:00:00.000Z" and times[-1] == "2015-02-17T00:10:00.000Z"


def test_bench_pipeline_refuses_worker_cpus_it_cannot_split(tmp_path, capsys):
    posts = tmp_path / "week.jsonl"
    posts.write_text("\n".join(week_of_posts(5)) + "\n")
    mine = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    assert main(["bench", "pipeline", str(posts), "--worker-cpus", mine]) == 2
    assert "leaves no CPU for the broker and the replay" in capsys.readouterr().err
    assert main(["bench", "pipeline", str(posts), "--worker-cpus", "0-4095"]) == 2
    assert "this process may only use" in capsys.readouterr().err
    assert main(["bench", "pipeline", str(posts), "--worker-cpus", "first"]) == 2
    assert "not a CPU list" in capsys.readouterr().err
