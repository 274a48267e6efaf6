"""The worker's small HTTP server: ``/metrics`` for Prometheus, JSON for Grafana text panels.

Grafana's Infinity (or JSON) datasource reads the panels that need text from here:

* ``/api/top-posts?brand=B&limit=N`` — the most negative recent posts of a brand (the
  sample posts of its latest buckets, newest first);
* ``/api/alerts?brand=B`` — the latest state of each recent incident (evidence included);
* ``/api/alerts/<id>`` — one incident: the evidence link of a page points here;
* ``/healthz``.

:class:`Evidence` is the pure part (what to keep, what to answer); :func:`serve` runs a
threaded WSGI server on 127.0.0.1 (or the configured address) in a daemon thread. Each
worker knows the brands of the partitions it owns.

>>> from datetime import UTC, datetime
>>> from stormwatch.model import SeriesStats
>>> ev = Evidence(posts=2)
>>> for minute, text in enumerate(["late again", "lost my bag", "no refund"]):
...     ev.add_bucket(SeriesStats("Acme", "*", datetime(2015, 2, 22, 0, minute, tzinfo=UTC), 60, 1,
...                               samples=((str(minute), text),)))
>>> [p["text"] for p in ev.top_posts("Acme")]
['no refund', 'lost my bag']
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs, unquote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from stormwatch.model import ALL_CHANNELS, Alert, SeriesStats

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


class Evidence:
    """Recent sample posts per brand and the latest event of recent incidents (bounded)."""

    def __init__(self, posts: int = 50, alerts: int = 200) -> None:
        self.posts_per_brand = posts
        self.max_alerts = alerts
        self._posts: dict[str, deque[dict[str, Any]]] = {}
        self._alerts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def add_bucket(self, st: SeriesStats) -> None:
        """Keep an all-channel bucket's sample posts (its most negative ones)."""
        if st.channel != ALL_CHANNELS or not st.samples:
            return
        with self._lock:
            q = self._posts.setdefault(st.brand, deque(maxlen=self.posts_per_brand))
            for pid, text in st.samples:
                q.append({"brand": st.brand, "bucket": st.to_dict()["bucket_start"], "id": pid, "text": text})

    def add_alert(self, alert: Alert) -> None:
        with self._lock:
            self._alerts.pop(alert.id, None)
            self._alerts[alert.id] = alert.to_dict()
            while len(self._alerts) > self.max_alerts:
                self._alerts.popitem(last=False)

    def top_posts(self, brand: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            brands = [brand] if brand else sorted(self._posts)
            rows = [p for b in brands for p in self._posts.get(b, ())]
        rows.sort(key=lambda p: p["bucket"], reverse=True)
        return rows[:limit]

    def alerts(self, brand: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            rows = [a for a in self._alerts.values() if not brand or a["brand"] == brand]
        return rows[::-1]

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._alerts.get(alert_id)


def _json(start: StartResponse, body: Any, status: str = "200 OK") -> Iterable[bytes]:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    start(status, [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


def make_app(registry: CollectorRegistry, evidence: Evidence) -> Callable[[Environ, StartResponse],
                                                                          Iterable[bytes]]:
    """The WSGI application: metrics, JSON and health routes.

    >>> app = make_app(CollectorRegistry(), Evidence())
    >>> out = []
    >>> body = app({"PATH_INFO": "/api/alerts/nope", "QUERY_STRING": ""}, lambda s, h: out.append(s))
    >>> out, json.loads(b"".join(body))
    (['404 Not Found'], {'error': 'no such alert: nope'})
    """
    metrics_app = make_wsgi_app(registry)

    def app(environ: Environ, start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        brand = query.get("brand") or None
        if brand in ("All", "$__all", "*"):
            brand = None
        if path == "/metrics":
            return metrics_app(environ, start)
        if path == "/healthz":
            return _json(start, {"ok": True})
        if path == "/api/top-posts":
            try:
                limit = max(1, min(500, int(query.get("limit", "20"))))
            except ValueError:
                return _json(start, {"error": "limit must be an integer"}, "400 Bad Request")
            return _json(start, evidence.top_posts(brand, limit))
        if path == "/api/alerts":
            return _json(start, evidence.alerts(brand))
        if path.startswith("/api/alerts/"):
            aid = unquote(path[len("/api/alerts/"):])
            found = evidence.alert(aid)
            if found is None:
                return _json(start, {"error": f"no such alert: {aid}"}, "404 Not Found")
            return _json(start, found)
        return _json(start, {"error": f"no route {path}"}, "404 Not Found")

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no line per scrape
        pass


def serve(registry: CollectorRegistry, evidence: Evidence, host: str, port: int) -> WSGIServer:
    """Start the server in a daemon thread; ``server.shutdown()`` stops it."""
    server = make_server(host, port, make_app(registry, evidence), server_class=_Server,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="stormwatch-web", daemon=True).start()
    return server
