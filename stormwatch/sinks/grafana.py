"""Grafana dashboards as code, and the push of dashboards and alert annotations to Grafana.

Three dashboards, built here as plain dicts (:func:`dashboards`), written as JSON to
``dashboards/`` (``stormwatch dashboards build``; the committed files must equal the
generated ones, a test checks it) and provisioned by ``dashboards/provisioning/``:

* ``stormwatch-overview`` — every brand: volume against its expected band, negative
  share, detector score, open alerts;
* ``stormwatch-brand`` — one brand per channel: volume and band, sentiment trend, reach,
  negative share, active alerts, top negative posts and alert evidence (JSON panels);
* ``stormwatch-pipeline`` — workers up, throughput, DLQ, lag, latency, late posts.

No datasource id is hard-coded: Prometheus panels use the ``${datasource}`` template
variable, the text panels the ``${evidence}`` variable (Grafana's Infinity datasource
reading the worker's JSON routes under ``${stormwatch_url}``, :mod:`stormwatch.sinks.web`).

``stormwatch dashboards push --url URL`` uploads them with ``grafana-client`` and writes
one annotation per incident from the alerts topic (tags ``stormwatch``, ``brand:…``,
``severity:…``, ``alert:<id>``; updated in place on a second push).

>>> boards = dashboards()
>>> sorted(b["uid"] for b in boards)
['stormwatch-brand', 'stormwatch-overview', 'stormwatch-pipeline']
>>> all(t["datasource"]["uid"] in ("${datasource}", "${evidence}") for t in targets(boards))
True
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from stormwatch.config import REPO_ROOT

PROM = {"type": "prometheus", "uid": "${datasource}"}
INFINITY = {"type": "yesoreyeram-infinity-datasource", "uid": "${evidence}"}
DASHBOARD_DIR = REPO_ROOT / "dashboards"
#: Stand-ins for Grafana's own variables when a panel's PromQL is run outside Grafana.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}

Json = dict[str, Any]


def _target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> Json:
    t: Json = {"datasource": PROM, "refId": ref, "expr": expr, "legendFormat": legend or "__auto"}
    if instant:
        t.update(instant=True, range=False, format="table")
    return t


def _json_target(url: str, ref: str = "A") -> Json:
    return {"datasource": INFINITY, "refId": ref, "type": "json", "source": "url", "format": "table",
            "url": url, "parser": "backend", "root_selector": ""}


def _panel(title: str, targets: list[Json], x: int, y: int, w: int = 12, h: int = 8, kind: str = "timeseries",
           unit: str = "short", description: str = "", **options: Any) -> Json:
    ds = targets[0]["datasource"]
    return {"type": kind, "title": title, "description": description, "datasource": ds, "targets": targets,
            "gridPos": {"x": x, "y": y, "w": w, "h": h},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}, "options": options}


def _band(sel: str, by: str) -> list[Json]:
    """Observed volume with its expected value and band, one line each per ``by`` group."""
    agg = f"max by ({by})"
    legend = "{{" + by + "}}"
    return [_target(f"{agg} (stormwatch_series_observed_posts{{{sel}}})", f"{legend} observed", "A"),
            _target(f"{agg} (stormwatch_series_expected_posts{{{sel}}})", f"{legend} expected", "B"),
            _target(f"{agg} (stormwatch_series_expected_lower_posts{{{sel}}})", f"{legend} band low", "C"),
            _target(f"{agg} (stormwatch_series_expected_upper_posts{{{sel}}})", f"{legend} band high", "D")]


def _variables(brand_multi: bool) -> list[Json]:
    values = "label_values(stormwatch_series_observed_posts, brand)"
    brand: Json = {"type": "query", "name": "brand", "label": "Brand", "datasource": PROM,
                   "query": {"query": values, "refId": "brand"}, "definition": values,
                   "refresh": 2, "sort": 1, "multi": brand_multi, "includeAll": brand_multi}
    if brand_multi:
        brand["allValue"] = ".*"
    return [
        {"type": "datasource", "name": "datasource", "label": "Prometheus", "query": "prometheus"},
        {"type": "datasource", "name": "evidence", "label": "stormwatch JSON (Infinity)",
         "query": "yesoreyeram-infinity-datasource"},
        {"type": "textbox", "name": "stormwatch_url", "label": "stormwatch worker URL",
         "query": "http://stormwatch-worker:9464"},
        brand,
    ]


def _annotations(brand_filter: str) -> Json:
    grafana = {"type": "grafana", "uid": "-- Grafana --"}
    tags = ["stormwatch", brand_filter] if brand_filter else ["stormwatch"]
    return {"list": [
        {"builtIn": 1, "datasource": grafana, "enable": True, "hide": True, "name": "Annotations & Alerts",
         "type": "dashboard"},
        {"datasource": grafana, "enable": True, "name": "stormwatch incidents", "iconColor": "red",
         "target": {"type": "tags", "tags": tags, "matchAny": False, "limit": 500}},
    ]}


def _dashboard(uid: str, title: str, panels: list[Json], variables: list[Json], annotations: Json) -> Json:
    for i, p in enumerate(panels, 1):
        p["id"] = i
    return {"uid": uid, "title": title, "tags": ["stormwatch"], "timezone": "utc", "schemaVersion": 39,
            "version": 1, "editable": True, "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
            "templating": {"list": variables}, "annotations": annotations, "panels": panels}


def overview() -> Json:
    sel = 'channel="all", brand=~"$brand"'
    panels = [
        _panel("Volume vs expected band (posts/min)", _band(sel, "brand"), 0, 0, w=24, h=9,
               description="Posts per one-minute bucket of each brand (all channels) against the detector's "
                           "expected value and band."),
        _panel("Negative share", [_target(f"max by (brand) (stormwatch_series_negative_ratio{{{sel}}})",
                                          "{{brand}}")], 0, 9, unit="percentunit"),
        _panel("Detector score", [_target(f"max by (brand) (stormwatch_series_detector_score{{{sel}}})",
                                          "{{brand}}")], 12, 9, unit="percentunit"),
        _panel("Open alerts by severity", [_target("sum by (severity) (stormwatch:alerts_open:sum)",
                                                   "{{severity}}")], 0, 17, w=8, kind="stat"),
        _panel("Open alerts by brand", [_target('sum by (brand) (stormwatch:alerts_open_by_brand:sum'
                                                '{brand=~"$brand"})', "{{brand}}")], 8, 17, w=8,
               kind="bargauge"),
        _panel("Posts/min by sentiment", [_target(
            'sum by (sentiment) (rate(stormwatch_posts_scored_total{brand=~"$brand"}[$__rate_interval]))'
            ' * 60',
            "{{sentiment}}")], 16, 17, w=8),
    ]
    return _dashboard("stormwatch-overview", "stormwatch — crisis overview", panels, _variables(True),
                      _annotations(""))


def brand() -> Json:
    sel = 'brand="$brand", channel=~"$channel"'
    channel = {"type": "query", "name": "channel", "label": "Channel", "datasource": PROM,
               "query": {"query": 'label_values(stormwatch_series_observed_posts{brand="$brand"}, channel)',
                         "refId": "channel"},
               "definition": 'label_values(stormwatch_series_observed_posts{brand="$brand"}, channel)',
               "refresh": 2, "sort": 1, "multi": True, "includeAll": True, "allValue": ".*"}
    panels = [
        _panel("Volume vs expected band per channel (posts/min)", _band(sel, "channel"), 0, 0, w=24, h=9),
        _panel("Sentiment trend (posts/min, all channels)", [_target(
            'sum by (sentiment) (rate(stormwatch_series_posts_total{brand="$brand", channel="all"}'
            '[$__rate_interval])) * 60', "{{sentiment}}")], 0, 9),
        _panel("Negative share per channel", [_target(
            f"max by (channel) (stormwatch_series_negative_ratio{{{sel}}})", "{{channel}}")], 12, 9,
            unit="percentunit"),
        _panel("Reach (retweets/min)", [_target(
            f"sum by (channel) (rate(stormwatch_series_retweets_total{{{sel}}}[$__rate_interval])) * 60",
            "{{channel}}")], 0, 17),
        _panel("Detector score per channel", [_target(
            f"max by (channel) (stormwatch_series_detector_score{{{sel}}})", "{{channel}}")], 12, 17,
            unit="percentunit"),
        _panel("Active alerts", [_target(
            'max by (channel, severity) (stormwatch_series_alert_open{brand="$brand"}) == 1', "",
            instant=True)],
            0, 25, w=8, kind="table"),
        _panel("Top negative posts",
               [_json_target("${stormwatch_url}/api/top-posts?brand=${brand}&limit=20")],
               8, 25, w=16, kind="table"),
        _panel("Alert evidence", [_json_target("${stormwatch_url}/api/alerts?brand=${brand}")], 0, 33, w=24,
               kind="table"),
    ]
    variables = [*_variables(False), channel]
    return _dashboard("stormwatch-brand", "stormwatch — brand drill-down", panels, variables,
                      _annotations("brand:$brand"))


def pipeline() -> Json:
    latency = "sum by (le, stage) (rate(stormwatch_processing_latency_seconds_bucket[$__rate_interval]))"
    panels = [
        _panel("Workers up", [_target('sum(up{job="stormwatch-worker"})', "up")], 0, 0, w=6, kind="stat"),
        _panel("Records in (per s)", [_target("sum(stormwatch:posts_ingested:rate5m)", "ingested"),
                                      _target("sum(rate(stormwatch_posts_scored_total[$__rate_interval]))",
                                              "scored", "B")], 6, 0, w=18),
        _panel("DLQ share", [_target("stormwatch:dlq_ratio:rate5m or vector(0)", "dlq share")], 0, 8,
               unit="percentunit"),
        _panel("DLQ by stage and reason (per s)", [_target(
            "sum by (stage, reason) (rate(stormwatch_posts_dlq_total[$__rate_interval]))",
            "{{stage}} {{reason}}")],
            12, 8),
        _panel("Consumer lag (records)", [_target("stormwatch:consumer_lag_records:max", "{{topic}}")],
               0, 16),
        _panel("Processing latency p95 / p50", [
            _target(f"histogram_quantile(0.95, {latency})", "{{stage}} p95"),
            _target(f"histogram_quantile(0.5, {latency})", "{{stage}} p50", "B")], 12, 16, unit="s"),
        _panel("Late posts (per min)", [_target(
            "sum(rate(stormwatch_series_late_posts_total[$__rate_interval])) * 60", "late")], 0, 24, w=8),
        _panel("Buckets closed (per min)", [_target(
            "sum(rate(stormwatch_series_buckets_total[$__rate_interval])) * 60", "buckets")], 8, 24, w=8),
        _panel("Alert events (last hour)", [_target(
            "sum by (event) (increase(stormwatch_alert_events_total[1h]))", "{{event}}")], 16, 24, w=8),
        _panel("Pipeline alerts firing", [_target(
            'count(ALERTS{alertstate="firing", team="platform"}) or vector(0)', "firing")], 0, 32, w=8,
            kind="stat"),
    ]
    variables = [v for v in _variables(False) if v["name"] == "datasource"]
    return _dashboard("stormwatch-pipeline", "stormwatch — pipeline health", panels, variables,
                      _annotations(""))


def dashboards() -> list[Json]:
    return [overview(), brand(), pipeline()]


def targets(boards: list[Json]) -> Iterator[Json]:
    for b in boards:
        for p in b["panels"]:
            yield from p["targets"]


def promql(boards: list[Json], values: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expression) of every Prometheus target, with the
    template variables replaced by ``values`` (and Grafana's own by stand-ins).

    >>> promql([brand()], {"brand": "Acme", "channel": ".*"})[0][2]
    'max by (channel) (stormwatch_series_observed_posts{brand="Acme", channel=~".*"})'
    """
    out = []
    for b in boards:
        for p in b["panels"]:
            for t in p["targets"]:
                if t["datasource"] != PROM:
                    continue
                expr = t["expr"]
                for k, v in GRAFANA_VARS.items():
                    expr = expr.replace(k, v)
                for k in sorted(values, key=len, reverse=True):
                    expr = expr.replace(f"${{{k}}}", values[k]).replace(f"${k}", values[k])
                out.append((b["uid"], p["title"], expr))
    return out


def write(out: Path = DASHBOARD_DIR) -> list[Path]:
    """Write each dashboard as ``<uid>.json`` (sorted keys, stable output)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for b in dashboards():
        path = out / f"{b['uid']}.json"
        path.write_text(json.dumps(b, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def incidents(alerts: list[Mapping[str, Any]]) -> list[Json]:
    """One annotation per incident from alert records (``Alert.to_dict()``), in id order.

    >>> rows = incidents([
    ...     {"id": "A/*@x", "event": "open", "brand": "A", "channel": "*", "severity": "warning",
    ...      "started_at": "2015-02-22T22:22:00Z", "at": "2015-02-22T22:22:00Z", "observed": 5,
    ...      "expected": 1},
    ...     {"id": "A/*@x", "event": "resolve", "brand": "A", "channel": "*", "severity": "warning",
    ...      "started_at": "2015-02-22T22:22:00Z", "at": "2015-02-22T22:52:00Z", "observed": 0,
    ...      "expected": 1}])
    >>> rows[0]["time"], rows[0]["timeEnd"] - rows[0]["time"], rows[0]["tags"]
    (1424643720000, 1800000, ['stormwatch', 'brand:A', 'severity:warning', 'alert:A/*@x'])
    """
    by_id: dict[str, Json] = {}
    for a in alerts:
        row = by_id.setdefault(str(a["id"]), {"first": a, "last": a, "peak": a})
        row["last"] = a
        if float(a["observed"]) > float(row["peak"]["observed"]):
            row["peak"] = a
    out = []
    for aid in sorted(by_id):
        first, last, peak = by_id[aid]["first"], by_id[aid]["last"], by_id[aid]["peak"]
        start = _ms(str(first["started_at"]))
        end = _ms(str(last["at"])) if last["event"] == "resolve" else start
        where = "all channels" if first["channel"] == "*" else first["channel"]
        state = "resolved" if last["event"] == "resolve" else "open"
        text = (f"{first['brand']} ({where}) {last['severity']} incident, {state}: peak "
                f"{float(peak['observed']):g} posts/min vs {float(peak['expected']):.1f} expected. {aid}")
        out.append({"time": start, "timeEnd": end, "text": text,
                    "tags": ["stormwatch", f"brand:{first['brand']}", f"severity:{last['severity']}",
                             f"alert:{aid}"]})
    return out


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def push(url: str, token: str | None, annotations: list[Json]) -> dict[str, int]:
    """Upload the dashboards (overwrite, folder ``stormwatch``) and upsert the annotations."""
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError

    api = GrafanaApi.from_url(url, credential=token or None, timeout=15.0)
    try:
        api.folder.get_folder("stormwatch")
    except GrafanaClientError:
        api.folder.create_folder("stormwatch", uid="stormwatch")
    for b in dashboards():
        api.dashboard.update_dashboard({"dashboard": b, "folderUid": "stormwatch", "overwrite": True,
                                        "message": "stormwatch dashboards push"})
    added = updated = 0
    for ann in annotations:
        found = api.annotations.find_annotations(tags=[ann["tags"][-1]], limit=1) or []
        if found and isinstance(found, list) and isinstance(found[0], dict) and "id" in found[0]:
            api.annotations.update_annotation(found[0]["id"], time_from=ann["time"], time_to=ann["timeEnd"],
                                              tags=ann["tags"], text=ann["text"])
            updated += 1
        else:
            api.annotations.add_annotation(time_from=ann["time"], time_to=ann["timeEnd"], tags=ann["tags"],
                                           text=ann["text"])
            added += 1
    return {"dashboards": len(dashboards()), "annotations_added": added, "annotations_updated": updated}


def build_main(args: argparse.Namespace) -> int:
    for path in write(Path(args.out) if args.out else DASHBOARD_DIR):
        print(path)
    return 0


def push_main(args: argparse.Namespace) -> int:
    import asyncio

    from stormwatch.config import Settings
    from stormwatch.sinks.console import read_topic

    annotations: list[Json] = []
    if not args.no_annotations:
        settings = Settings.from_env()

        async def collect() -> list[Json]:
            return [json.loads(v) async for v in read_topic(settings, "alerts", args.timeout)]

        try:
            annotations = incidents(asyncio.run(collect()))
        except Exception as exc:
            print(f"stormwatch dashboards push: cannot read alerts from {settings.kafka}: {exc!r}",
                  file=sys.stderr)
            return 1
    try:
        result = push(args.url, args.token or os.environ.get("GRAFANA_TOKEN"), annotations)
    except Exception as exc:
        print(f"stormwatch dashboards push: Grafana at {args.url}: {exc!r}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
