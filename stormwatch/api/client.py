"""``stormwatch alerts ack ID`` / ``resolve ID``: call the HTTP API (standard library only).

>>> alert_url("http://127.0.0.1:8080/", "US Airways/*@2015-02-22T22:22Z", "ack")
'http://127.0.0.1:8080/alerts/US%20Airways%2F%2A%402015-02-22T22%3A22Z/ack'
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import urllib.error
import urllib.request
from urllib.parse import quote

from stormwatch.api.server import api_token

DEFAULT_URL = "http://127.0.0.1:8080"


def alert_url(base: str, alert_id: str, action: str) -> str:
    return f"{base.rstrip('/')}/alerts/{quote(alert_id, safe='')}/{action}"


def post(url: str, token: str, body: dict[str, str], timeout: float = 10.0) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {"detail": exc.reason}


def main(args: argparse.Namespace) -> int:
    try:
        token = api_token()
    except ValueError as exc:
        print(f"stormwatch alerts: {exc}", file=sys.stderr)
        return 2
    base = os.environ.get("STORMWATCH_API_URL", DEFAULT_URL)
    by = args.by or getpass.getuser()
    try:
        status, body = post(alert_url(base, args.id, args.action), token, {"by": by, "note": args.note or ""})
    except (urllib.error.URLError, OSError) as exc:
        print(f"stormwatch alerts: cannot reach the API at {base}: {exc}", file=sys.stderr)
        return 2
    if status != 200:
        print(f"stormwatch alerts {args.action}: {status} {body.get('detail')}", file=sys.stderr)
        return 1
    print(json.dumps(body, ensure_ascii=False))
    return 0
