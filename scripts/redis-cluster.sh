#!/usr/bin/env bash
# A throwaway Redis Cluster on loopback: three primaries, one replica each, for the Redis
# failover tests (crates/cloakroom-redis/tests/failover/). It never touches the shared
# Redis on 6379: its nodes live in DIR and listen on FIRST_PORT..FIRST_PORT+5 (and their
# cluster bus ports, +10000).
#
#   scripts/redis-cluster.sh start DIR [FIRST_PORT]   start six nodes (default 7100), create
#                                                     the cluster, print the node URLs
#   scripts/redis-cluster.sh restart DIR PORT         start the node PORT of DIR again (after a
#                                                     kill), with its cluster state
#   scripts/redis-cluster.sh stop DIR                 stop the nodes started in DIR
#
# CLUSTER_NODE_TIMEOUT (ms, default 1000) is how long a silent primary takes to be judged
# failed; failover takes about that plus an election.
set -euo pipefail

usage() { echo "usage: $0 start DIR [FIRST_PORT] | restart DIR PORT | stop DIR" >&2; exit 2; }
log() { echo "redis-cluster: $*" >&2; }

stop() {
  local dir=$1 pidfile pid
  for pidfile in "$dir"/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

# One node; its nodes.conf in DIR/PORT keeps its cluster identity across a restart.
node() {
  local dir=$1 port=$2
  mkdir -p "$dir/$port"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/$port" \
    --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout "${CLUSTER_NODE_TIMEOUT:-1000}" \
    --save "" --appendonly no --daemonize yes \
    --pidfile "$dir/$port.pid" --logfile "$dir/$port.log"
}

restart() {
  local dir=$1 port=$2
  [ -d "$dir/$port" ] || { log "no node $port in $dir"; exit 1; }
  if [ -e "$dir/$port.pid" ] && kill -0 "$(cat "$dir/$port.pid")" 2>/dev/null; then
    log "node $port is running"; exit 1
  fi
  rm -f "$dir/$port.pid"
  node "$dir" "$port"
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  log "node $port did not start (see $dir/$port.log)"; exit 1
}

start() {
  local dir=$1 first=$2 port addresses=() i
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    { log "redis-server and redis-cli are needed (apt-get install redis-server)"; exit 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  for i in 0 1 2 3 4 5; do
    port=$((first + i))
    node "$dir" "$port"
    addresses+=("127.0.0.1:$port")
  done
  for i in 0 1 2 3 4 5; do
    port=$((first + i))
    for _ in $(seq 1 100); do
      redis-cli -p "$port" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
    redis-cli -p "$port" ping >/dev/null 2>&1 || { log "node $port did not start (see $dir/$port.log)"; stop "$dir"; exit 1; }
  done
  if ! redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1; then
    log "cluster create failed (see $dir/create.log)"; stop "$dir"; exit 1
  fi
  # Ready when every node agrees the cluster is ok and every replica has synced.
  for _ in $(seq 1 200); do
    local ready=1
    for i in 0 1 2 3 4 5; do
      port=$((first + i))
      redis-cli -p "$port" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || ready=0
      if redis-cli -p "$port" info replication 2>/dev/null | grep -q 'role:slave'; then
        redis-cli -p "$port" info replication | grep -q 'master_link_status:up' || ready=0
      fi
    done
    if [ "$ready" = 1 ] && [ "$(redis-cli -p "$first" cluster nodes | grep -c slave)" = 3 ]; then
      for i in 0 1 2 3 4 5; do echo "redis://127.0.0.1:$((first + i))"; done
      return 0
    fi
    sleep 0.1
  done
  log "the cluster did not become ready (see $dir/*.log)"; stop "$dir"; exit 1
}

case "${1:-}" in
  start) [ $# -ge 2 ] || usage; start "$2" "${3:-7100}" ;;
  restart) [ $# -ge 3 ] || usage; restart "$(cd "$2" && pwd)" "$3" ;;
  stop) [ $# -ge 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
