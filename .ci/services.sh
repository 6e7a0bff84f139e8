#!/usr/bin/env bash
# Makes sure RabbitMQ (127.0.0.1:5672) and Redis (127.0.0.1:6379) are installed, running and
# answering, for the broker suites, and that a Kafka broker answers on 127.0.0.1:9092 (started
# with kafka/start.sh, from Maven Central, when nothing answers there). Idempotent: when all three
# already answer it only checks them (well under 2 s). It never stops or restarts a running
# service.
#
# Kafka needs a JDK, Maven and Maven Central. Where it cannot start, this script warns and goes
# on (the Kafka suites then skip loudly), except under CI=true, where it fails.
set -euo pipefail

WAIT_S=120
log() { echo "services: $*"; }

SUDO=''
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO='sudo'; fi

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    log "apt-get update"
    $SUDO apt-get update -q
    apt_updated=1
  fi
  log "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$@"
}

redis_answers() {
  [ "$(redis-cli -h 127.0.0.1 ping 2>/dev/null)" = "PONG" ]
}

# The AMQP 0-9-1 handshake: a booted broker answers the protocol header with a method frame
# (type 1). Much quicker than the CLI tools, which start an Erlang VM each time. A subshell, so
# a failed /dev/tcp redirection cannot end the script.
amqp_answers() (
  exec 3<>/dev/tcp/127.0.0.1/5672 || exit 1
  printf 'AMQP\x00\x00\x09\x01' >&3
  reply=$(timeout 2 head -c 1 <&3 | od -An -tx1 | tr -d ' \n') || true
  [ "$reply" = "01" ]
) 2>/dev/null

# A Kafka ApiVersions request (v0, correlation id 7); a booted broker answers with correlation id
# 7 and error code 0 after the 4-byte size. A subshell, as above.
kafka_answers() (
  exec 3<>/dev/tcp/127.0.0.1/9092 || exit 1
  printf '\x00\x00\x00\x0f\x00\x12\x00\x00\x00\x00\x00\x07\x00\x05lockq' >&3
  reply=$(timeout 2 head -c 10 <&3 | od -An -tx1 | tr -d ' \n') || true
  [ "${reply:8:12}" = "000000070000" ]
) 2>/dev/null

rabbit_node_up() {
  $SUDO rabbitmq-diagnostics -q ping
}

# Polls "$@" once a second until it succeeds, for up to WAIT_S seconds.
wait_until() {
  local what=$1
  shift
  local waited=0
  until "$@" >/dev/null 2>&1; do
    if [ "$waited" -ge "$WAIT_S" ]; then
      log "$what did not answer within ${WAIT_S} s"
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  log "$what is answering (waited ${waited} s)"
}

# --- install what is missing ------------------------------------------------------------------
if ! command -v rabbitmq-server >/dev/null 2>&1 || ! command -v rabbitmqctl >/dev/null 2>&1; then
  apt_install rabbitmq-server
fi
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  apt_install redis-server
fi

# --- Redis ------------------------------------------------------------------------------------
if redis_answers; then
  log "redis is already answering"
else
  log "starting redis-server"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_until redis redis_answers
fi

# --- RabbitMQ ---------------------------------------------------------------------------------
if amqp_answers; then
  log "rabbitmq is already answering"
else
  # A node that is still booting answers ping; starting a second one would only fail.
  if rabbit_node_up >/dev/null 2>&1; then
    log "rabbitmq node is up but not yet accepting AMQP connections; waiting"
  else
    log "starting rabbitmq-server"
    $SUDO rabbitmq-server -detached || log "rabbitmq-server -detached failed (already starting?); waiting anyway"
  fi
  wait_until "rabbitmq node" rabbit_node_up
  $SUDO rabbitmqctl -q await_startup
  wait_until "rabbitmq (AMQP on 5672)" amqp_answers
fi

log "rabbitmq and redis are up"

# --- Kafka ------------------------------------------------------------------------------------
# Installs a JDK and Maven when missing, then kafka/start.sh (jars from Maven Central into ~/.m2,
# storage formatted once, broker started and waited for). Every step returns instead of exiting,
# so that outside CI a machine without Maven Central still gets RabbitMQ and Redis.
start_kafka() {
  if ! command -v java >/dev/null 2>&1; then apt_install default-jdk-headless || return 1; fi
  if ! command -v mvn >/dev/null 2>&1; then apt_install maven || return 1; fi
  bash "$(dirname "$0")/../kafka/start.sh"
}

if kafka_answers; then
  log "kafka is already answering"
else
  kafka_t0=$SECONDS
  if start_kafka; then
    log "kafka is up (started in $((SECONDS - kafka_t0)) s)"
  elif [ "${CI:-}" = "true" ]; then
    log "KAFKA COULD NOT BE STARTED on 127.0.0.1:9092 and CI=true: failing (see the kafka: lines above)"
    exit 1
  else
    log "*** KAFKA COULD NOT BE STARTED on 127.0.0.1:9092: its suites will be SKIPPED (see above) ***"
  fi
fi
