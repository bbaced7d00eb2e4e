#!/usr/bin/env bash
# The Python gRPC client (stubs generated from proto/ now, not committed):
# register, pair with a WebSocket peer, relay both ways, byebye, resume,
# and the ICE servers with TURN credentials it is handed.
set -euo pipefail
binary=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/scripts/lib/gateway.sh"
source "$root/scripts/lib/python-client.sh"
python_client_setup "$root"
turn_secret=python-check-secret
start_gateway "$binary" --ice-server 'turn:127.0.0.1:3478?transport=udp' \
  --ice-server stun:127.0.0.1:3478 --turn-secret "$turn_secret" --turn-ttl 10m
cd "$root/clients/python"
SIGNALGATE_TURN_SECRET="$turn_secret" SIGNALGATE_TARGET="127.0.0.1:$PORT" python3 -m pytest -q -p no:cacheprovider test_client.py
