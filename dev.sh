#!/usr/bin/env bash
# The two set-up commands of the README, on a fresh machine:
#
#   ./dev.sh demo   install, start the local Kafka, run the worker, replay the airline
#                   posts as fast as possible, print the alerts, stop the worker
#   ./dev.sh test   install, start the local Kafka, run the whole test suite
#
# Also: ./dev.sh install | kafka-start | kafka-stop
# Settings: STORMWATCH_KAFKA (127.0.0.1:9092), STORMWATCH_DATA (../shared/data), PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
export STORMWATCH_KAFKA=${STORMWATCH_KAFKA:-127.0.0.1:9092}
export STORMWATCH_DATA=${STORMWATCH_DATA:-$(cd .. && pwd)/shared/data}
kafka_port=${STORMWATCH_KAFKA##*:}

say() { printf '\n== %s\n' "$*" >&2; }
sw() { "$PY" -m stormwatch.cli "$@"; }

install() {
  say "system packages (Java 17, Maven, Prometheus, Alertmanager, docker-compose)"
  local pkgs=()
  command -v java >/dev/null || pkgs+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || pkgs+=(maven)
  command -v promtool >/dev/null || pkgs+=(prometheus)
  command -v amtool >/dev/null || pkgs+=(prometheus-alertmanager)
  # `docker-compose config` checks deploy/compose.yaml (no engine needed)
  command -v docker-compose >/dev/null || pkgs+=(docker-compose)
  if [ ${#pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends "${pkgs[@]}"
  fi
  say "Python packages"
  "$PY" -m pip install -q --disable-pip-version-check -e ".[dev,nlp,river,fuzz,api,report]"
  say "Kafka jars"
  deploy/kafka/kafka.sh fetch
}

kafka_start() { KAFKA_PORT=$kafka_port deploy/kafka/kafka.sh start; }
kafka_stop() { KAFKA_PORT=$kafka_port deploy/kafka/kafka.sh stop; }

# Whether a Kafka broker already answers on STORMWATCH_KAFKA (another checkout's, a real one).
kafka_answers() {
  "$PY" - <<'EOF' 2>/dev/null
import asyncio, os
from aiokafka.admin import AIOKafkaAdminClient

async def main() -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=os.environ["STORMWATCH_KAFKA"], request_timeout_ms=5000)
    await asyncio.wait_for(admin.start(), 10)
    try:
        await asyncio.wait_for(admin.list_topics(), 10)
    finally:
        await admin.close()

asyncio.run(main())
EOF
}

# Use the broker that answers on STORMWATCH_KAFKA, or start the local one; sets STARTED_KAFKA.
STARTED_KAFKA=0
kafka_up() {
  if kafka_answers; then
    say "using the Kafka broker that already answers on $STORMWATCH_KAFKA"
  else
    kafka_start
    STARTED_KAFKA=1
  fi
}

WORKER_PID=""
stop_worker() {
  if [ -n "$WORKER_PID" ]; then
    kill "$WORKER_PID" 2>/dev/null || true
    wait "$WORKER_PID" 2>/dev/null || true
    WORKER_PID=""
  fi
}

demo() {
  install
  kafka_up
  local posts=$STORMWATCH_DATA/posts/airline_posts_unlabelled.jsonl
  [ -f "$posts" ] || { echo "no posts at $posts (set STORMWATCH_DATA)" >&2; exit 1; }
  export STORMWATCH_APP_ID=${STORMWATCH_APP_ID:-demo-$(date +%s)}
  export STORMWATCH_TOPIC_PREFIX=${STORMWATCH_TOPIC_PREFIX:-$STORMWATCH_APP_ID.}
  mkdir -p var
  say "worker (log: var/worker.log)"
  # Started directly, not through a shell function, so $! is the worker itself.
  "$PY" -m stormwatch.cli worker --loglevel warn > var/worker.log 2>&1 &
  WORKER_PID=$!
  trap stop_worker EXIT
  say "replaying $posts"
  local t0=$SECONDS
  sw ingest replay "$posts"
  say "waiting for the worker to catch up"
  sw lag --wait --timeout 900 >/dev/null
  local elapsed=$((SECONDS - t0))
  say "alerts: the incidents opened for whole brands (all events in var/alerts.jsonl)"
  sw alerts --timeout 3 > var/alerts.jsonl
  "$PY" - var/alerts.jsonl <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for a in sorted(rows, key=lambda a: a["started_at"]):
    if a["event"] != "open" or a["channel"] != "*":
        continue
    head = f"{a['started_at']}  {a['brand']:<16} {a['severity']:<8}"
    if a.get("kind") == "emerging":
        terms = ", ".join(t["term"] for t in a["evidence"].get("emerging_terms", []))
        print(f"{head} emerging topic '{terms}': {a['observed']:g} posts with it "
              f"vs {a['expected']:.2f} expected")
    else:
        print(f"{head} volume: {a['observed']:g} posts in the minute vs {a['expected']:.2f} expected "
              f"(detector score {a['score']:.4f}, type {a.get('crisis_type') or '-'})")
print(f"\n{len(rows)} alert events in var/alerts.jsonl")
EOF
  echo "end to end: ${elapsed} s from the first post produced until the worker had caught up"
  stop_worker
  trap - EXIT
  echo "The demo's topics stay on the broker under the prefix $STORMWATCH_TOPIC_PREFIX"
  if [ "$STARTED_KAFKA" = 1 ]; then
    echo "Kafka keeps running on $STORMWATCH_KAFKA; stop it with: STORMWATCH_KAFKA=$STORMWATCH_KAFKA ./dev.sh kafka-stop"
  fi
}

test_all() {
  install
  kafka_up
  say "tests"
  set +e
  "$PY" -m pytest -q
  local rc=$?
  set -e
  if [ "$STARTED_KAFKA" = 1 ]; then kafka_stop; fi
  if [ "$rc" = 5 ]; then echo "pytest collected no tests: that is a failure here" >&2; exit 1; fi
  exit "$rc"
}

case "${1:-}" in
  demo) demo ;;
  test) test_all ;;
  install) install ;;
  kafka-start) kafka_start ;;
  kafka-stop) kafka_stop ;;
  *) echo "usage: $0 demo|test|install|kafka-start|kafka-stop" >&2; exit 2 ;;
esac
