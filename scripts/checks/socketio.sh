#!/usr/bin/env bash
# The seed's flow with the real npm socket.io-client (4.x and 2.x), against
# the seed reference server and against signalgate (websocket and polling).
# signalgate runs with ICE servers configured: seed clients must still see
# nothing new, and may ask for the list with `iceservers`.
set -euo pipefail
binary=$1
source "$(dirname "$0")/../lib/gateway.sh"
node_dir="$(cd "$(dirname "$0")/../../tests/node" && pwd)"
seed_dir="${SEED_SERVER_DIR:-$node_dir/../../../shared/reference/seed-server}"
[ -f "$seed_dir/server.js" ] || fail "seed reference server not found at $seed_dir"

(cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)

# ../shared is read-only: run a copy, inside tests/node so it finds socket.io.
rm -rf "$node_dir/.seed" && mkdir -p "$node_dir/.seed"
cp "$seed_dir/server.js" "$seed_dir/package.json" "$node_dir/.seed/"
seed_port=$(free_port)
(cd "$node_dir" && QUIET=1 PORT=$seed_port exec node -r ./allow-eio3.cjs .seed/server.js) &
seed_pid=$!

start_gateway "$binary" --ice-server 'turn:127.0.0.1:3478?transport=udp' --turn-secret socketio-check
trap 'kill "$GATEWAY_PID" "$seed_pid" 2>/dev/null; wait 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$seed_port") 2>/dev/null && break
  sleep 0.1
done

cd "$node_dir"
SEED_URL="http://127.0.0.1:$seed_port" SIGNALGATE_URL="http://127.0.0.1:$PORT" \
  node --test --test-reporter=spec seed-flow.test.mjs
