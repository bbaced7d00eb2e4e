#!/usr/bin/env bash
# Headless Chromium (Debian's package) drives the demo page served at /:
# a real WebRTC data channel carries a 1 MiB file intact, and a Chromium web
# page pairs with the Python gRPC client; and with a real TURN server (coturn,
# started by turn.test.mjs on loopback) two relay-only pages move a file
# through it, while a gateway with the wrong TURN secret gets no call.
# The admin dashboard at /admin/ shows live numbers under load and kicks a
# session. Calls the demo pages make are reported by the SDK from their peer
# connections and recorded (metrics, admin API, the dashboard's Calls panel,
# webhooks): connected on host, on the relay, failed with the wrong secret.
# Two pages renegotiate at the same instant 20 times with the SDK's perfect
# negotiation, the web side yielding.
# Screenshots go to the output dir.
set -euo pipefail
binary=$1
out=$2
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/scripts/lib/python-client.sh"
source "$root/scripts/lib/packages.sh"
ensure_commands chromium:chromium turnserver:coturn
# Debian starts coturn as a service on install when it can; the tests run
# their own on free ports and need no system one.
python_client_setup "$root"
cd "$root/tests/node"
npm ci --no-audit --no-fund --loglevel=error
SIGNALGATE_BIN="$binary" TEST_OUTPUT_DIR="$out" PYTHON_CLIENT_DIR="$root/clients/python" \
  node --test --test-reporter=spec --test-timeout=120000 browser.test.mjs turn.test.mjs admin.test.mjs calls.test.mjs glare.test.mjs
