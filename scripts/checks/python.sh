#!/usr/bin/env bash
# The Python gRPC client (stubs generated from proto/ now, not committed):
# register, pair with a WebSocket peer, relay both ways, byebye, resume.
set -euo pipefail
binary=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/scripts/lib/gateway.sh"
source "$root/scripts/lib/python-client.sh"
python_client_setup "$root"
start_gateway "$binary"
cd "$root/clients/python"
SIGNALGATE_TARGET="127.0.0.1:$PORT" python3 -m pytest -q -p no:cacheprovider test_client.py
