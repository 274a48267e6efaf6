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

demo() {
  install
  kafka_start
  local posts=$STORMWATCH_DATA/posts/airline_posts_unlabelled.jsonl
  [ -f "$posts" ] || { echo "no posts at $posts (set STORMWATCH_DATA)" >&2; exit 1; }
  export STORMWATCH_APP_ID=${STORMWATCH_APP_ID:-demo-$(date +%s)}
  export STORMWATCH_TOPIC_PREFIX=${STORMWATCH_TOPIC_PREFIX:-$STORMWATCH_APP_ID.}
  mkdir -p var
  say "worker (log: var/worker.log)"
  sw worker --loglevel warn > var/worker.log 2>&1 &
  local worker=$!
  trap 'kill $worker 2>/dev/null || true' EXIT
  say "replaying $posts"
  local t0=$SECONDS
  sw ingest replay "$posts"
  say "waiting for the worker to catch up"
  sw lag --wait --timeout 900 >/dev/null
  local elapsed=$((SECONDS - t0))
  say "alerts (JSON lines), first the incident openings"
  sw alerts --timeout 3 > var/alerts.jsonl
  "$PY" - var/alerts.jsonl <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for a in sorted(rows, key=lambda a: a["started_at"]):
    if a["event"] == "open" and a["channel"] == "*":
        print(f"{a['started_at']}  {a['brand']:<16} {a['severity']:<9} observed {a['observed']:g} "
              f"vs expected {a['expected']:.2f} (band {a['lower']:.2f}..{a['upper']:.2f}, "
              f"score {a['score']:.4f})")
print(f"\n{len(rows)} alert events in var/alerts.jsonl")
EOF
  echo "end to end: ${elapsed} s from the first post produced until the worker had caught up"
  kill "$worker" 2>/dev/null || true
  wait "$worker" 2>/dev/null || true
  trap - EXIT
  echo "Kafka keeps running on $STORMWATCH_KAFKA; stop it with: ./dev.sh kafka-stop"
}

test_all() {
  install
  kafka_start
  say "tests"
  set +e
  "$PY" -m pytest -q
  local rc=$?
  set -e
  kafka_stop
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
