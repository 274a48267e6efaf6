"""Dashboards as code: the committed JSON is the generated JSON, the boards are well formed,
their PromQL parses (promtool), and ``dashboards push`` makes the right Grafana HTTP calls.

A Grafana server cannot run here: the push is tested against a local HTTP receiver that
records the calls grafana-client makes and answers like Grafana's API would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from stormwatch.config import REPO_ROOT
from stormwatch.sinks import grafana
from tests.oncall_servers import Receiver

BOARDS = grafana.dashboards()


def test_committed_dashboards_are_the_generated_ones(tmp_path: Path) -> None:
    for path in grafana.write(tmp_path):
        committed = REPO_ROOT / "dashboards" / path.name
        assert committed.exists(), f"{committed} missing: run `stormwatch dashboards build`"
        assert committed.read_text() == path.read_text(), \
            f"{committed} is stale: run `stormwatch dashboards build`"


def test_uids_panel_ids_and_datasources() -> None:
    uids = [b["uid"] for b in BOARDS]
    assert len(set(uids)) == len(uids) == 3
    for b in BOARDS:
        ids = [p["id"] for p in b["panels"]]
        assert len(set(ids)) == len(ids) and all(p["title"] for p in b["panels"])
        names = {v["name"] for v in b["templating"]["list"]}
        assert "datasource" in names
        for p in b["panels"]:
            for t in [p, *p["targets"]]:
                uid = t["datasource"]["uid"]
                assert uid.startswith("${") and uid.strip("${}") in names, (b["uid"], p["title"], uid)
    text = json.dumps(BOARDS)
    assert "stormwatch-prometheus" not in text  # the provisioned uid is never hard-coded


def test_overview_and_drill_down_have_the_panels_the_teams_asked_for() -> None:
    titles = {b["uid"]: " | ".join(p["title"] for p in b["panels"]) for b in BOARDS}
    for words in ("Volume vs expected band", "Negative share", "Open alerts"):
        assert words in titles["stormwatch-overview"]
    for words in ("per channel", "Sentiment trend", "Reach", "Active alerts", "Top negative posts",
                  "Alert evidence"):
        assert words in titles["stormwatch-brand"]
    brand = next(b for b in BOARDS if b["uid"] == "stormwatch-brand")
    assert brand["annotations"]["list"][1]["target"]["tags"] == ["stormwatch", "brand:$brand"]


def test_every_panel_expression_parses_with_promtool(tmp_path: Path) -> None:
    exprs = grafana.promql(BOARDS, {"brand": "US Airways", "channel": ".*"})
    assert len(exprs) >= 25
    rules = {"groups": [{"name": "panels", "rules": [
        {"record": f"panel:{i}", "expr": e} for i, (_, _, e) in enumerate(exprs)]}]}
    (tmp_path / "panels.yml").write_text(yaml.safe_dump(rules))
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: apt-get install prometheus"
    proc = subprocess.run([promtool, "check", "rules", str(tmp_path / "panels.yml")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_provisioning_files_point_at_the_dashboards() -> None:
    prov = REPO_ROOT / "dashboards" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "stormwatch.yml").read_text())
    assert {d["type"] for d in ds["datasources"]} == {"prometheus", "yesoreyeram-infinity-datasource"}
    dash = yaml.safe_load((prov / "dashboards" / "stormwatch.yml").read_text())
    assert dash["providers"][0]["type"] == "file" and dash["providers"][0]["folderUid"] == "stormwatch"


class FakeGrafana(Receiver):
    """Answers the few Grafana API calls the push makes (a stand-in: no Grafana server here)."""

    def __init__(self) -> None:
        super().__init__()
        self.annotations: list[dict[str, Any]] = []

    def answer(self, method: str, path: str, body: Any) -> Any:
        if method == "GET" and path.startswith("/api/folders/"):
            self.status.insert(0, 404)
            return {"message": "folder not found"}
        if method == "GET" and path.startswith("/api/annotations"):
            tag = path.split("tags=")[1].split("&")[0]
            from urllib.parse import unquote_plus
            return [a for a in self.annotations if unquote_plus(tag) in a["tags"]][:1]
        if method == "POST" and path == "/api/annotations":
            self.annotations.append({**body, "id": len(self.annotations) + 1})
            return {"id": len(self.annotations), "message": "Annotation added"}
        return {"status": "success", "uid": (body or {}).get("dashboard", {}).get("uid"), "message": "ok"}


def test_push_uploads_dashboards_and_upserts_one_annotation_per_incident() -> None:
    alerts = [
        {"id": "US Airways/*@2015-02-22T22:22Z", "event": "open", "brand": "US Airways", "channel": "*",
         "severity": "warning", "started_at": "2015-02-22T22:22:00Z", "at": "2015-02-22T22:22:00Z",
         "observed": 5.0, "expected": 0.64},
        {"id": "US Airways/*@2015-02-22T22:22Z", "event": "resolve", "brand": "US Airways", "channel": "*",
         "severity": "warning", "started_at": "2015-02-22T22:22:00Z", "at": "2015-02-22T22:52:00Z",
         "observed": 0.0, "expected": 0.74},
    ]
    g = FakeGrafana()
    try:
        first = grafana.push(g.url, "secret-token", grafana.incidents(alerts))
        second = grafana.push(g.url, "secret-token", grafana.incidents(alerts))
    finally:
        g.close()
    assert first == {"dashboards": 3, "annotations_added": 1, "annotations_updated": 0}
    assert second == {"dashboards": 3, "annotations_added": 0, "annotations_updated": 1}
    calls = [(m, p.split("?")[0]) for m, p, _ in g.calls]
    assert {h.get("Authorization") for h in g.headers} == {"Bearer secret-token"}
    assert calls.count(("POST", "/api/dashboards/db")) == 6
    assert ("POST", "/api/folders") in calls and ("PUT", "/api/annotations/1") in calls
    uploads = [b for m, p, b in g.calls if p == "/api/dashboards/db"]
    assert {u["dashboard"]["uid"] for u in uploads} == {b["uid"] for b in BOARDS}
    assert all(u["overwrite"] and u["folderUid"] == "stormwatch" for u in uploads)
    ann = g.annotations[0]
    assert ann["time"] == 1424643720000 and ann["timeEnd"] == 1424645520000
    assert "alert:US Airways/*@2015-02-22T22:22Z" in ann["tags"] and "resolved" in ann["text"]
