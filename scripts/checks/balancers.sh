#!/usr/bin/env bash
# The repository's own load-balancer configurations, run for real
# (docs/DEPLOY.md): deploy/haproxy.cfg and deploy/nginx.conf, with only their
# ports and backend hosts rewritten, in front of two signalgate nodes on a
# Redis. Through each: signalgate-check passes on every door pair five
# times (pairs registering at once across nodes, a resume through the
# balancer), every close the server starts arrives with its code (an
# oversized message, a binary frame: a lingering close), npm socket.io-client pairs
# over long-polling (stickiness) and WebSocket; then a node is stopped, it
# leaves the pool, and the check passes again on the other node.
set -euo pipefail
binary=$1
out=$2
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/scripts/lib/gateway.sh"
source "$root/scripts/lib/packages.sh"
ensure_commands haproxy:haproxy nginx:nginx curl:curl
# Debian starts the packaged services on install; ours run on free ports.
(cd "$root" && cargo build --quiet -p signalgate-bench --bin signalgate-check)
check="$root/target/debug/signalgate-check"
(cd "$root/tests/node" && npm ci --no-audit --no-fund --loglevel=error)
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
port_a=$(free_port)
port_b=$(free_port)

# start_node PORT: a node on the Redis; prints its pid.
start_node() {
  "$binary" --listen "127.0.0.1:$1" --advertise-ip 192.0.2.10 --redis-url "redis://127.0.0.1:$redis_port/" \
    --node-ttl 2s --shutdown-grace 4s >>"$work/node-$1.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && { echo "$pid"; return 0; }
    sleep 0.1
  done
  fail "node on $1 did not become ready"
}
node_a=$(start_node "$port_a"); pids+=("$node_a")
node_b=$(start_node "$port_b"); pids+=("$node_b")

# through NAME ADDRESS GRPC_ADDRESS URL: the checks through one balancer.
through() {
  local name=$1 address=$2 grpc=$3 url=$4
  echo "--- $name: every door pair, five times"
  for round in 1 2 3 4 5; do
    "$check" --address "$address" --grpc-address "$grpc" --timeout 3 | tee "$out/check-$name-$round.txt"
  done
  echo "--- $name: closes the server starts keep their code"
  "$check" --address "$address" --grpc-address "$grpc" --closes 10 | tee "$out/closes-$name.txt"
  echo "--- $name: socket.io-client, long-polling and websocket"
  (cd "$root/tests/node" && BALANCER_URL="$url" node --test --test-reporter=spec --test-timeout=30000 balancer.test.mjs)
  echo "--- $name: node A stops; it leaves the pool"
  kill -TERM "$node_a"
  wait "$node_a" 2>/dev/null || true
  sleep "${5:-1}"
  "$check" --address "$address" --grpc-address "$grpc" | tee "$out/check-$name-one-node.txt"
  node_a=$(start_node "$port_a"); pids+=("$node_a")
}

# HAProxy: deploy/haproxy.cfg with its port and backends rewritten.
lb=$(free_port)
sed -e "s/^    bind :8080$/    bind 127.0.0.1:$lb/" \
    -e "s/signalgate-1:3186/127.0.0.1:$port_a/" -e "s/signalgate-2:3186/127.0.0.1:$port_b/" \
    "$root/deploy/haproxy.cfg" >"$work/haproxy.cfg"
diff "$root/deploy/haproxy.cfg" "$work/haproxy.cfg" || true
haproxy -c -f "$work/haproxy.cfg"
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
haproxy_pid=$!
pids+=("$haproxy_pid")
sleep 3   # both nodes pass two health checks
kill -0 "$haproxy_pid" || { cat "$work/haproxy.log"; fail "haproxy did not start"; }
# HAProxy marks the stopped node down after two failed checks (1 s apart).
through haproxy "127.0.0.1:$lb" "127.0.0.1:$lb" "http://127.0.0.1:$lb" 3
kill "$haproxy_pid"

# nginx: deploy/nginx.conf with its ports and backends rewritten.
lb=$(free_port)
lb_grpc=$(free_port)
mkdir -p "$work/nginx"
sed -e "s/^        listen 8080;$/        listen 127.0.0.1:$lb;/" \
    -e "s/^        listen 8081 http2;$/        listen 127.0.0.1:$lb_grpc http2;/" \
    -e "s/signalgate-1:3186/127.0.0.1:$port_a/" -e "s/signalgate-2:3186/127.0.0.1:$port_b/" \
    "$root/deploy/nginx.conf" >"$work/nginx/nginx.conf"
diff "$root/deploy/nginx.conf" "$work/nginx/nginx.conf" || true
nginx_flags=(-p "$work/nginx" -c "$work/nginx/nginx.conf" -g "pid $work/nginx/nginx.pid; error_log stderr;")
nginx -t "${nginx_flags[@]}"
nginx "${nginx_flags[@]}" -g "daemon off;" >"$work/nginx.log" 2>&1 || true &
nginx_pid=$!
pids+=("$nginx_pid")
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$lb/healthz" >/dev/null && break; sleep 0.1; done
kill -0 "$nginx_pid" || { cat "$work/nginx.log"; fail "nginx did not start"; }
through nginx "127.0.0.1:$lb" "127.0.0.1:$lb_grpc" "http://127.0.0.1:$lb" 1
# Some resume crossed nodes through a balancer (round robin).
grep -q "handed over by another node" "$work"/node-*.log || fail "no resume went through a balancer to the other node"
echo "both balancers: every door pair passed, before and after a node left"
cp "$work"/node-*.log "$out/" 2>/dev/null || true
