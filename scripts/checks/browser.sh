#!/usr/bin/env bash
# Headless Chromium (Debian's package) drives the demo page served at /:
# a real WebRTC data channel carries a 1 MiB file intact, and a Chromium web
# page pairs with the Python gRPC client. Screenshots go to the output dir.
set -euo pipefail
binary=$1
out=$2
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/scripts/lib/python-client.sh"
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
python_client_setup "$root"
cd "$root/tests/node"
npm ci --no-audit --no-fund --loglevel=error
SIGNALGATE_BIN="$binary" TEST_OUTPUT_DIR="$out" PYTHON_CLIENT_DIR="$root/clients/python" \
  node --test --test-reporter=spec --test-timeout=120000 browser.test.mjs
