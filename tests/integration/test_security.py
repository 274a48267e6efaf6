"""Personal data and secrets on the real broker: author handles enter Kafka only hashed,
dead letters never keep them, and the salt never appears in a record or a log."""

from __future__ import annotations

import json

import pytest

from stormwatch.model import hash_author
from tests.conftest import cli, wait_for
from tests.integration.test_kafka_pipeline import values

pytestmark = [pytest.mark.kafka]

SALT = "pepper-7f3a9c-never-log-me"
HANDLES = ["@alice_private", "@bob.private"]


def test_authors_are_hashed_before_kafka_and_the_salt_never_leaks(env, worker, tmp_path):
    salt_file = tmp_path / "salt"
    salt_file.write_text(SALT + "\n")
    env["STORMWATCH_AUTHOR_SALT_FILE"] = str(salt_file)
    posts = tmp_path / "posts.jsonl"
    good = [{"id": f"s{i}", "created_at": f"2015-02-23T01:0{i}:00Z", "channel": "twitter",
             "brand": "Acme", "text": "app down again", "author": HANDLES[i % 2]} for i in range(6)]
    bad = ['{"id": "b1", "created_at": "2015-02-30T00:00:00Z", "channel": "t", "brand": "Acme", '
           '"text": "x", "author": "@alice_private"}',
           '{"id": "b2", "author": "@bob.private", "text": "broken json']
    posts.write_text("\n".join([json.dumps(p) for p in good] + bad) + "\n")
    w = worker()
    out = json.loads(cli(env, "ingest", "replay", str(posts), "--quiet").stdout)
    assert out["posts"] == 6 and out["dead_lettered"] == 2
    scored = wait_for(lambda: (v := values(env, "posts.scored")) and len(v) >= 6 and v, 120,
                      what="six scored posts")
    records = values(env, "posts.raw") + scored + values(env, "posts.dlq")
    blob = b"\n".join(records).decode()
    for handle in HANDLES:
        assert handle not in blob
    assert SALT not in blob
    hashed = {json.loads(v)["author"] for v in values(env, "posts.raw")}
    assert hashed == {hash_author(h, SALT.encode()) for h in HANDLES}
    dlq = [json.loads(v) for v in values(env, "posts.dlq")]
    assert sorted(d["reason"] for d in dlq) == ["bad_timestamp", "malformed_json"]
    assert all('"author": "<redacted>"' in d["raw"] for d in dlq)
    w.stop()
    assert SALT not in w.log.read_text()
