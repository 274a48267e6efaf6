"""The API service on the real broker: it follows ``alerts`` and ``stats``, and what its
escalation machine decides (re-send, ack) comes back on ``alerts`` with the same id."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from fastapi.testclient import TestClient

from stormwatch.api import server
from stormwatch.api.app import bearer
from stormwatch.app.topics import ensure_topics
from stormwatch.crisis.escalation import Escalation
from stormwatch.model import Alert, SeriesStats, dumps
from stormwatch.sinks.console import read_topic
from tests.conftest import settings_of, wait_for

pytestmark = [pytest.mark.kafka]

T0 = datetime(2015, 2, 22, 22, 22, tzinfo=UTC)
AID = "US Airways/twitter@2015-02-22T22:22Z"


def test_api_follows_the_topics_and_publishes_resend_and_ack(env, monkeypatch):
    settings = settings_of(env)
    opened = Alert(AID, "open", "US Airways", "twitter", "critical", T0, T0, 40, 8, 2, 15, 0.999,
                   "seasonal-baseline", 0.85, playbook="outage", crisis_type="outage", crisis_share=0.4)
    stats = [SeriesStats("US Airways", "twitter", T0 + timedelta(minutes=i), 60, 10 + i, negative=4)
             for i in range(3)]

    async def setup() -> None:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka)
        await producer.start()
        try:
            for st in stats:  # stats first, as the worker writes them: the timeline still gets them
                await producer.send_and_wait(settings.topic("stats"), key=st.series.encode(), value=dumps(st))
            await producer.send_and_wait(settings.topic("alerts"), key=AID.encode(), value=dumps(opened))
        finally:
            await producer.stop()

    asyncio.run(setup())
    monkeypatch.setattr(server, "TICK_SECONDS", 0.2)
    esc = Escalation(overrides={"*/twitter": 0.02})  # re-send after 1.2 s without an ack
    h = bearer("kafka-token")
    with TestClient(server.build(settings, "kafka-token", esc)) as client:
        wait_for(lambda: client.get("/alerts", headers=h).json() != [], timeout=120, what="the alert")
        wait_for(lambda: esc.get(AID).level >= 1, timeout=120, what="a re-send")
        r = client.post(f"/alerts/{AID}/ack", json={"by": "maria"}, headers=h)
        assert r.status_code == 200, r.text
        tl = client.get(f"/alerts/{AID}/timeline", headers=h).json()
        assert [p["volume"] for p in tl["points"]] == [10, 11, 12]

    async def events() -> list[Alert]:
        return [Alert.from_dict(json.loads(v)) async for v in read_topic(settings, "alerts", 3.0)]

    got = asyncio.run(events())
    assert [a.id for a in got] == [AID] * len(got)
    kinds = [(a.event, a.by) for a in got]
    assert kinds[0] == ("open", "") and ("resend", "stormwatch") in kinds and kinds[-1] == ("ack", "maria")
    assert got[-1].crisis_type == "outage" and got[-1].playbook == "outage"
