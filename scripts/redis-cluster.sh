#!/usr/bin/env bash
# A three-master Redis Cluster on loopback ports for tests and CI (Debian's redis-server, no replicas).
#   scripts/redis-cluster.sh start    # idempotent; prints the REDIS_CLUSTER_NODES value
#   scripts/redis-cluster.sh stop     # shuts the nodes down and removes their data
#   scripts/redis-cluster.sh status
# Ports: REDIS_CLUSTER_PORTS (default "7101 7102 7103"); data under REDIS_CLUSTER_DIR
# (default /tmp/inferenceflow-redis-cluster). Then: export REDIS_CLUSTER_NODES=127.0.0.1:7101,…
set -euo pipefail

PORTS=(${REDIS_CLUSTER_PORTS:-7101 7102 7103})
BASE=${REDIS_CLUSTER_DIR:-/tmp/inferenceflow-redis-cluster}
HOST=127.0.0.1

nodes_csv() {
  local out=() p
  for p in "${PORTS[@]}"; do out+=("$HOST:$p"); done
  (IFS=,; echo "${out[*]}")
}

ping_ok() { [ "$(redis-cli -h "$HOST" -p "$1" ping 2>/dev/null)" = PONG ]; }

cluster_ok() {
  local p
  for p in "${PORTS[@]}"; do
    ping_ok "$p" || return 1
    redis-cli -h "$HOST" -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    # Every node must know all the others (a stale single-node cluster is not ours).
    [ "$(redis-cli -h "$HOST" -p "$p" cluster info | tr -d '\r' | awk -F: '/^cluster_known_nodes/ {print $2}')" = "${#PORTS[@]}" ] || return 1
  done
}

stop() {
  local p
  for p in "${PORTS[@]}"; do
    if ping_ok "$p"; then redis-cli -h "$HOST" -p "$p" shutdown nosave >/dev/null 2>&1 || true; fi
  done
  for p in "${PORTS[@]}"; do
    for _ in $(seq 50); do ping_ok "$p" || break; sleep 0.1; done
    rm -rf "${BASE:?}/$p"
  done
}

start() {
  command -v redis-server >/dev/null || { echo "redis-server not found (apt-get install redis-server)" >&2; exit 1; }
  if cluster_ok; then
    echo "redis cluster already up: $(nodes_csv)"
    echo "export REDIS_CLUSTER_NODES=$(nodes_csv)"
    return
  fi
  # Anything half made (a node down, never joined) is wiped and built again.
  stop
  local p
  for p in "${PORTS[@]}"; do
    mkdir -p "$BASE/$p"
    redis-server --port "$p" --bind "$HOST" --protected-mode no \
      --cluster-enabled yes --cluster-config-file "$BASE/$p/nodes.conf" --cluster-node-timeout 5000 \
      --dir "$BASE/$p" --save '' --appendonly no \
      --daemonize yes --pidfile "$BASE/$p/redis.pid" --logfile "$BASE/$p/redis.log"
  done
  for p in "${PORTS[@]}"; do
    for _ in $(seq 100); do ping_ok "$p" && break; sleep 0.1; done
    ping_ok "$p" || { echo "redis node on $p did not start; see $BASE/$p/redis.log" >&2; exit 1; }
  done
  local args=()
  for p in "${PORTS[@]}"; do args+=("$HOST:$p"); done
  redis-cli --cluster create "${args[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  for _ in $(seq 100); do cluster_ok && break; sleep 0.1; done
  cluster_ok || { echo "redis cluster did not reach state ok" >&2; exit 1; }
  echo "redis cluster up: $(nodes_csv)"
  echo "export REDIS_CLUSTER_NODES=$(nodes_csv)"
}

case "${1:-}" in
  start) start ;;
  stop) stop; echo "redis cluster stopped" ;;
  status) if cluster_ok; then echo "up: $(nodes_csv)"; else echo "down"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
