"""The HTTP API: token auth, alerts with evidence, ack/resolve, impact timeline, playbooks,
body limits; and schemathesis against the app's own OpenAPI spec (no server errors)."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import ignored_auth, negative_data_rejection

from stormwatch.api.app import MAX_BODY_BYTES, bearer, create_app
from stormwatch.crisis.escalation import Escalation
from stormwatch.model import Alert, SeriesStats

TOKEN = "t0ken-for-tests"
T0 = datetime(2015, 2, 22, 22, 22, tzinfo=UTC)


def alert(brand="US Airways", channel="*", event="open", severity="critical"):
    return Alert(f"{brand}/{channel}@2015-02-22T22:22Z", event, brand, channel, severity, T0, T0,
                 40.0, 8.0, 2.0, 15.0, 0.999, "seasonal-baseline", 0.85, negative_share=0.7,
                 samples=(("p1", "computers crashed"),), crisis_type="outage", crisis_share=0.4,
                 playbook="outage", evidence={"posts": 25, "burst_terms": {"en": [{"term": "computer"}]}})


def make_client(clock=lambda: 1000.0, rate=(1e6, 10**6)):
    esc = Escalation()
    esc.on_alert(alert(), now=0)
    esc.on_alert(alert("United", "twitter", severity="warning"), now=0)
    for i in range(5):
        esc.on_stats(SeriesStats("US Airways", "*", T0 + timedelta(minutes=i), 60, 10 + i, negative=5,
                                 retweets=2))
    sent = []

    async def publish(ev):
        sent.append(ev)

    return TestClient(create_app(esc, TOKEN, publish=publish, clock=clock, rate=rate)), esc, sent


def test_token_is_required_everywhere_but_healthz():
    client, _, _ = make_client()
    assert client.get("/healthz").json() == {"status": "ok"}
    for path in ("/alerts", "/playbooks", "/playbooks/outage", "/alerts/US Airways/*@2015-02-22T22:22Z"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=bearer("wrong")).status_code == 401
        assert client.get(path, headers=bearer(TOKEN)).status_code == 200
    assert client.get("/alerts", headers={"Authorization": "Basic abc"}).status_code == 401
    with pytest.raises(ValueError, match="needs a token"):
        create_app(Escalation(), "")


def test_alerts_list_detail_ack_resolve_and_timeline():
    client, _esc, sent = make_client()
    h = bearer(TOKEN)
    rows = client.get("/alerts", headers=h).json()
    assert [r["id"] for r in rows] == ["United/twitter@2015-02-22T22:22Z", "US Airways/*@2015-02-22T22:22Z"]
    assert client.get("/alerts", params={"brand": "United"}, headers=h).json()[0]["severity"] == "warning"
    aid = "US Airways/*@2015-02-22T22:22Z"
    one = client.get(f"/alerts/{aid}", headers=h).json()
    assert (one["crisis_type"], one["crisis_share"], one["playbook"]) == ("outage", 0.4, "outage")
    assert one["evidence"]["burst_terms"]["en"][0]["term"] == "computer"
    assert one["playbook_detail"]["owner"] == "it-incident-management"
    assert one["samples"] == [["p1", "computers crashed"]]
    r = client.post(f"/alerts/{aid}/ack", json={"by": "maria", "note": "on it"}, headers=h)
    assert r.status_code == 200 and r.json()["state"] == "acknowledged" and r.json()["acked_by"] == "maria"
    assert [(e.event, e.by, e.id) for e in sent] == [("ack", "maria", aid)]
    assert client.post(f"/alerts/{aid}/ack", json={"by": "tom"}, headers=h).status_code == 409
    assert client.get("/alerts", params={"state": "acknowledged"}, headers=h).json()[0]["id"] == aid
    r = client.post(f"/alerts/{aid}/resolve", json={"by": "maria"}, headers=h)
    assert r.json()["state"] == "resolved" and sent[-1].event == "resolve"
    tl = client.get(f"/alerts/{aid}/timeline", headers=h).json()
    assert [p["volume"] for p in tl["points"]] == [10, 11, 12, 13, 14]
    assert tl["total_reach"] == 10 and tl["state"] == "resolved"
    assert [e["event"] for e in tl["events"]] == ["open", "ack", "resolve"]
    assert tl["events"][1]["note"] == "on it"


def test_errors_404_422_413():
    client, _, _ = make_client()
    h = bearer(TOKEN)
    assert client.get("/alerts/nope", headers=h).status_code == 404
    assert client.get("/alerts/nope/timeline", headers=h).status_code == 404
    assert client.post("/alerts/nope/ack", json={"by": "x"}, headers=h).status_code == 404
    assert client.get("/playbooks/nope", headers=h).status_code == 404
    aid = "US Airways/*@2015-02-22T22:22Z"
    assert client.post(f"/alerts/{aid}/ack", json={"by": ""}, headers=h).status_code == 422
    assert client.post(f"/alerts/{aid}/ack", json={"by": "x", "extra": 1}, headers=h).status_code == 422
    big = {"by": "x", "note": "a" * (MAX_BODY_BYTES + 10)}
    assert client.post(f"/alerts/{aid}/ack", json=big, headers=h).status_code == 413
    chunks = (b"x" * 4096 for _ in range(8))  # no content-length: streamed
    r = client.post(f"/alerts/{aid}/ack", content=chunks, headers={**h, "content-type": "application/json"})
    assert r.status_code == 413
    assert client.get("/alerts", params={"limit": 0}, headers=h).status_code == 422


def test_playbooks_are_served():
    client, _, _ = make_client()
    books = client.get("/playbooks", headers=bearer(TOKEN)).json()
    assert [b["id"] for b in books][-1] == "general" and len(books) == 7
    assert set(books[0]["core_messages"]) >= {"en", "de"}


def test_openapi_declares_bearer_auth():
    client, _, _ = make_client()
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "/alerts/{alert_id}/ack" in spec["paths"]


# schemathesis generates requests from the app's own spec. They are sent with the app's
# httpx test client rather than schemathesis' requests-based ASGI transport, which breaks
# when urllib3-future (pulled in by niquests) replaces urllib3 in the environment.
CLIENT, _, _ = make_client()
schema = schemathesis.openapi.from_dict(CLIENT.get("/openapi.json").json())


def send(client, kwargs):
    kw = {k: v for k, v in kwargs.items() if k in ("method", "url", "headers", "params", "json")}
    data = kwargs.get("data")
    if isinstance(data, bytes | str):
        kw["content"] = data
    elif data is not None:
        kw["data"] = data
    if kwargs.get("files"):
        kw["files"] = kwargs["files"]
    return client.request(**kw)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_finds_no_server_error(case):
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=bearer(TOKEN))
    response = send(CLIENT, kwargs)
    assert response.status_code < 500, (response.status_code, response.text[:500])
    # ignored_auth re-sends through the broken transport; test_token_is_required_everywhere_but_healthz
    # checks the same thing (no token, a wrong one, another scheme) on every route. Negative cases
    # may drop the Authorization header we add back, or add unknown query parameters (ignored,
    # as in most APIs): they must not crash the server, but need not be refused.
    case.validate_response(response, headers=bearer(TOKEN), transport_kwargs=kwargs,
                           excluded_checks=[ignored_auth, negative_data_rejection])


def test_publish_is_awaited_in_order():
    client, _, sent = make_client()
    h = bearer(TOKEN)
    client.post("/alerts/United/twitter@2015-02-22T22:22Z/ack", json={"by": "a"}, headers=h)
    client.post("/alerts/United/twitter@2015-02-22T22:22Z/resolve", json={"by": "a"}, headers=h)
    assert [e.event for e in sent] == ["ack", "resolve"]
    assert asyncio.iscoroutinefunction(client.app.router.routes[-1].endpoint)


def test_a_client_over_its_rate_gets_429_with_retry_after_and_others_do_not():
    client, _, _ = make_client(rate=(0.5, 3))
    codes = [client.get("/alerts", headers=bearer(TOKEN)).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    refused = client.get("/playbooks", headers=bearer(TOKEN))
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "2"
    assert refused.json() == {"detail": "too many requests; retry in 2 s"}
    other = TestClient(client.app, client=("10.0.0.7", 5000))
    assert other.get("/alerts", headers=bearer(TOKEN)).status_code == 200
