#!/usr/bin/env bash
# Stops the Kafka broker that kafka/start.sh started (its pid is in $LOCKQ_KAFKA_DIR/kafka.pid,
# default /tmp/lockq-kafka), and only that one: a broker started any other way is left alone.
# A clean shutdown (SIGTERM) first; SIGKILL only if it has not exited after 60 s.
#
#   kafka/stop.sh          stop it, keep its data (the next start.sh reuses the formatted storage)
#   kafka/stop.sh --wipe   stop it and delete its runtime directory (data, logs, classpath)
set -euo pipefail

DIR=${LOCKQ_KAFKA_DIR:-/tmp/lockq-kafka}
PID_FILE="$DIR/kafka.pid"
wipe=0
case "${1:-}" in
  --wipe) wipe=1 ;;
  '') ;;
  *) echo "usage: kafka/stop.sh [--wipe]" >&2; exit 2 ;;
esac

log() { echo "kafka: $*"; }

version=$(cat "$DIR/kafka.version" 2>/dev/null || true)
pid=$(cat "$PID_FILE" 2>/dev/null || true)
if [ -z "$pid" ] || ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $DIR/"; then
  log "no broker started by kafka/start.sh is running (nothing stopped)"
  rm -f "$PID_FILE"
else
  log "stopping Kafka ${version:-?} (pid $pid)"
  kill -TERM "$pid"
  waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge 600 ]; then
      log "still running after 60 s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  rm -f "$PID_FILE"
  log "stopped after $((waited / 10)).$((waited % 10)) s"
fi

if [ "$wipe" -eq 1 ] && [ -n "$version" ] && [ -d "$DIR/$version" ]; then
  rm -rf "${DIR:?}/$version"
  rm -f "$DIR/kafka.version"
  log "deleted $DIR/$version"
fi
