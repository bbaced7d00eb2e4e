#!/usr/bin/env bash
# The Python gRPC client (stubs generated from proto/ now, not committed):
# register, pair with a WebSocket peer, relay both ways, byebye, resume,
# the ICE servers with TURN credentials it is handed, and (two nodes on a
# Redis the check starts) a drain it follows to the other node by itself.
set -euo pipefail
binary=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/scripts/lib/gateway.sh"
source "$root/scripts/lib/python-client.sh"
python_client_setup "$root"
turn_secret=python-check-secret
start_gateway "$binary" --ice-server 'turn:127.0.0.1:3478?transport=udp' \
  --ice-server stun:127.0.0.1:3478 --turn-secret "$turn_secret" --turn-ttl 10m
single=$PORT
single_pid=$GATEWAY_PID
# Two nodes on a Redis of their own, for the drain.
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
redis_pid=$!
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
start_gateway "$binary" --redis-url "redis://127.0.0.1:$redis_port/" --admin-token python-admin-token-for-checks
node_a=$PORT
node_a_pid=$GATEWAY_PID
start_gateway "$binary" --redis-url "redis://127.0.0.1:$redis_port/"
node_b=$PORT
node_b_pid=$GATEWAY_PID
trap 'kill "$single_pid" "$node_a_pid" "$node_b_pid" "$redis_pid" 2>/dev/null; wait 2>/dev/null || true' EXIT
cd "$root/clients/python"
SIGNALGATE_TURN_SECRET="$turn_secret" SIGNALGATE_TARGET="127.0.0.1:$single" \
  python3 -m pytest -q -p no:cacheprovider test_client.py -k 'not draining'
SIGNALGATE_TARGET="127.0.0.1:$node_a" SIGNALGATE_TARGET_B="127.0.0.1:$node_b" \
  SIGNALGATE_DRAIN_A="http://127.0.0.1:$node_a/admin/v1/drain" SIGNALGATE_ADMIN_TOKEN=python-admin-token-for-checks \
  python3 -m pytest -q -p no:cacheprovider test_client.py -k draining
