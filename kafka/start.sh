#!/usr/bin/env bash
# Starts lockq's test broker: a single-node Apache Kafka in KRaft mode on 127.0.0.1:9092
# (controller on 9093), from the broker's jars on Maven Central (kafka/pom.xml), and waits until
# it answers a real Kafka request (ApiVersions). `npm run kafka` runs this.
#
# Idempotent: when 9092 already answers ApiVersions it only checks and returns. It never stops a
# broker, and never touches one it did not start (kafka/stop.sh stops the one it started).
#
# Environment:
#   LOCKQ_KAFKA_VERSION  Kafka release to run (default: kafka.version in kafka/pom.xml)
#   LOCKQ_KAFKA_DIR      runtime directory (default /tmp/lockq-kafka): <version>/data holds the
#                        formatted storage, <version>/logs/server.log the broker's log
#   LOCKQ_KAFKA_WAIT_S   how long to wait for the broker to answer (default 120)
#   LOCKQ_KAFKA_HEAP_OPTS  JVM heap (default -Xms256m -Xmx512m: the machine is shared)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${LOCKQ_KAFKA_DIR:-/tmp/lockq-kafka}
WAIT_S=${LOCKQ_KAFKA_WAIT_S:-120}
HEAP_OPTS=${LOCKQ_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
PINNED=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")
VERSION=${LOCKQ_KAFKA_VERSION:-$PINNED}
HOST=127.0.0.1
PORT=9092
PID_FILE="$DIR/kafka.pid"
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java

log() { echo "kafka: $*"; }
fail() {
  echo "kafka: $*" >&2
  exit 1
}

# ApiVersions v0 (api key 18), correlation id 7, client id "lockq": a booted broker answers with
# the same correlation id and error code 0. A port that merely accepts is not enough. A subshell,
# so a failed /dev/tcp redirection cannot end the script.
kafka_answers() (
  exec 3<>"/dev/tcp/$HOST/$PORT" || exit 1
  printf '\x00\x00\x00\x0f\x00\x12\x00\x00\x00\x00\x00\x07\x00\x05lockq' >&3
  reply=$(timeout 2 head -c 10 <&3 | od -An -tx1 | tr -d ' \n') || true
  [ "${reply:8:12}" = "000000070000" ] # after the 4-byte size: correlation id 7, error 0
) 2>/dev/null

# True when something (anything) accepts connections on $1.
port_taken() (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null

# The pid of the broker this script started, when that process is still alive and still ours.
our_pid() {
  [ -f "$PID_FILE" ] || return 1
  local pid
  pid=$(cat "$PID_FILE")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "kafka.Kafka $DIR/" || return 1
  echo "$pid"
}

mkdir -p "$DIR"
# One start at a time (services.sh and a developer's `npm run kafka` may race).
exec 9>"$DIR/start.lock"
flock 9

if kafka_answers; then
  if ! pid=$(our_pid); then
    log "already answering on $HOST:$PORT (a broker this script did not start)"
  elif running=$(cat "$DIR/kafka.version") && [ "$running" != "$VERSION" ]; then
    log "Kafka $running (pid $pid) is already answering on $HOST:$PORT, not $VERSION; run kafka/stop.sh first to switch"
  else
    log "already answering on $HOST:$PORT (Kafka $running, pid $pid)"
  fi
  exit 0
fi

started_at=$SECONDS
if pid=$(our_pid); then
  log "Kafka (pid $pid) started earlier is not answering yet; waiting for it"
else
  for p in 9092 9093; do
    if port_taken "$p"; then fail "$HOST:$p is taken by something that is not a Kafka broker started here; not starting"; fi
  done
  command -v "$JAVA" >/dev/null 2>&1 || fail "java not found (install a JDK 17+, e.g. Debian's default-jdk-headless)"
  command -v mvn >/dev/null 2>&1 || fail "mvn not found (install Debian's maven)"

  run="$DIR/$VERSION"
  mkdir -p "$run/data" "$run/logs"

  # --- the broker's jars: from ~/.m2 when there, else Maven Central --------------------------
  # The resolved classpath is kept beside the data, keyed by the pom's content, so a warm start
  # does not even start Maven.
  cp_file="$run/classpath.txt"
  pom_sum=$(sha256sum "$HERE/pom.xml" | cut -c1-64)
  classpath_ok() {
    [ -s "$cp_file" ] && [ "$(cat "$run/classpath.pom-sha256" 2>/dev/null)" = "$pom_sum" ] || return 1
    local jar
    while IFS= read -r jar; do [ -f "$jar" ] || return 1; done < <(tr ':' '\n' <"$cp_file")
  }
  if ! classpath_ok; then
    profile=kafka3
    if [ "${VERSION%%.*}" -ge 4 ]; then profile=kafka4; fi
    log "resolving org.apache.kafka:kafka_2.13:$VERSION with Maven (profile $profile)"
    t0=$SECONDS
    mvn -B -Dstyle.color=never -f "$HERE/pom.xml" -P "$profile" "-Dkafka.version=$VERSION" \
      dependency:build-classpath "-Dmdep.outputFile=$cp_file" >"$run/logs/maven.log" 2>&1 ||
      { tail -n 30 "$run/logs/maven.log" >&2; fail "Maven could not fetch Kafka $VERSION (no Maven Central, or no such version)"; }
    echo "$pom_sum" >"$run/classpath.pom-sha256"
    log "classpath resolved in $((SECONDS - t0)) s"
  fi
  classpath=$(cat "$cp_file")

  # --- config: the repository's file with the data directory pointed into the runtime dir -----
  config="$run/server.properties"
  sed "s|^log.dirs=.*|log.dirs=$run/data|" "$HERE/server.properties" >"$config"

  # Both logging configurations are passed; the binding on the classpath (reload4j for 3.x,
  # Log4j 2 for 4.x) reads its own.
  jvm_opts=(
    $HEAP_OPTS
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    "-Dkafka.logs.dir=$run/logs"
    "-Dlog4j.configuration=file:$HERE/log4j.properties"
    "-Dlog4j2.configurationFile=$HERE/log4j2.properties"
  )

  # --- format the storage once (a random cluster id; the static quorum needs no --standalone) --
  if [ ! -f "$run/data/meta.properties" ]; then
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    log "formatting $run/data (cluster id $cluster_id)"
    "$JAVA" "${jvm_opts[@]}" -cp "$classpath" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$config" --ignore-formatted >"$run/logs/format.log" 2>&1 ||
      { cat "$run/logs/format.log" >&2; fail "formatting the storage failed"; }
  fi

  # --- start: detached in its own session, so it outlives this script and its caller ----------
  # (without fd 9: the broker must not hold the start lock for its whole life)
  log "starting Kafka $VERSION on $HOST:$PORT (logs: $run/logs/server.log)"
  setsid nohup "$JAVA" "${jvm_opts[@]}" -cp "$classpath" kafka.Kafka "$config" \
    >"$run/logs/stdout.log" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  echo "$VERSION" >"$DIR/kafka.version"
fi

# --- wait until it answers ApiVersions ------------------------------------------------------------
waited=0
until kafka_answers; do
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -n 40 "$DIR/$(cat "$DIR/kafka.version")/logs/server.log" "$DIR/$(cat "$DIR/kafka.version")/logs/stdout.log" >&2 || true
    rm -f "$PID_FILE"
    fail "the broker (pid $pid) exited before answering"
  fi
  if [ "$waited" -ge "$WAIT_S" ]; then
    kill "$pid" 2>/dev/null || true
    rm -f "$PID_FILE"
    fail "the broker (pid $pid) did not answer on $HOST:$PORT within $WAIT_S s; stopped it"
  fi
  sleep 1
  waited=$((waited + 1))
done
log "Kafka $(cat "$DIR/kafka.version") is answering on $HOST:$PORT (pid $pid, $((SECONDS - started_at)) s)"
