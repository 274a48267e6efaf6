#!/usr/bin/env bash
# A local single-node Apache Kafka (KRaft) on 127.0.0.1, from Maven Central jars, run
# with the machine's Java. Used by the README's commands, the tests and CI.
#
#   deploy/kafka/kafka.sh fetch            resolve the jars once (cached)
#   deploy/kafka/kafka.sh start [--reset]  format storage if needed, start, wait until it answers
#   deploy/kafka/kafka.sh stop             stop cleanly (SIGTERM, then SIGKILL after 30 s)
#   deploy/kafka/kafka.sh status | logs
#
# Settings (environment): KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1),
# KAFKA_CACHE (<repo>/.cache: jars and broker data), KAFKA_HEAP (512m), KAFKA_CPUS (a
# taskset CPU list such as 1: run the broker on those CPUs only; benchmarks use it).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
cache=${KAFKA_CACHE:-$repo/.cache}
port=${KAFKA_PORT:-9092}
cport=${KAFKA_CONTROLLER_PORT:-$((port + 1))}
libs=$cache/kafka-$version/libs
run=$cache/kafka-run-$port
data=$run/data
pidfile=$run/kafka.pid
logfile=$run/kafka.log

die() { echo "kafka.sh: $*" >&2; exit 1; }

fetch() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the Kafka jars"
  command -v java >/dev/null || die "Java 17+ is needed to run Kafka"
  echo "kafka.sh: fetching Apache Kafka $version jars into $libs" >&2
  rm -rf "$libs" && mkdir -p "$libs"
  mkdir -p "$cache"
  if ! mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DoutputDirectory="$libs" \
      > "$cache/maven-kafka.log" 2>&1; then
    cat "$cache/maven-kafka.log" >&2
    die "Maven could not resolve the Kafka jars"
  fi
  touch "$libs/.complete"
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

java_opts=(-Xms128m -Xmx"${KAFKA_HEAP:-512m}" -XX:+UseG1GC
  -Dlog4j2.configurationFile="$here/log4j2.properties" -Dkafka.logs.file="$logfile" -cp "$libs/*")

start() {
  fetch
  if running; then echo "kafka.sh: already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return 0; fi
  if port_open "$port"; then die "port $port is taken by another process"; fi
  if [ "${1:-}" = "--reset" ]; then rm -rf "$data"; fi
  mkdir -p "$run"
  sed -e "s#@PORT@#$port#g" -e "s#@CONTROLLER_PORT@#$cport#g" -e "s#@DATA@#$data#g" \
    "$here/server.properties" > "$run/server.properties"
  if [ ! -f "$data/meta.properties" ]; then
    mkdir -p "$data"
    cluster_id=$(java "${java_opts[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    java "${java_opts[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$run/server.properties" >/dev/null \
      || die "formatting the KRaft storage failed (see $logfile)"
  fi
  local pin=()
  if [ -n "${KAFKA_CPUS:-}" ]; then
    command -v taskset >/dev/null || die "KAFKA_CPUS needs taskset (util-linux)"
    pin=(taskset -c "$KAFKA_CPUS")
  fi
  nohup "${pin[@]}" java "${java_opts[@]}" kafka.Kafka "$run/server.properties" >"$run/stdout.log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 240); do
    if ! running; then tail -n 30 "$run/stdout.log" "$logfile" 2>/dev/null >&2; die "Kafka exited during start"; fi
    if port_open "$port" && grep -q "Kafka Server started" "$logfile" 2>/dev/null; then
      echo "kafka.sh: Kafka $version answering on 127.0.0.1:$port (pid $(cat "$pidfile"), log $logfile)"
      return 0
    fi
    sleep 0.5
  done
  die "Kafka did not answer within 120 s (see $logfile)"
}

stop() {
  if ! running; then echo "kafka.sh: not running"; rm -f "$pidfile"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then echo "kafka.sh: no clean stop in 30 s, killing" >&2; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$pidfile"
  echo "kafka.sh: stopped"
}

case "${1:-}" in
  fetch) fetch ;;
  start) shift; start "${1:-}" ;;
  stop) stop ;;
  status) if running; then echo "running on 127.0.0.1:$port (pid $(cat "$pidfile"))"; else echo "not running"; exit 1; fi ;;
  logs) tail -n "${2:-100}" "$logfile" ;;
  *) echo "usage: $0 fetch|start [--reset]|stop|status|logs [N]" >&2; exit 2 ;;
esac
