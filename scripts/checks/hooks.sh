#!/usr/bin/env bash
# docs/HOOKS.md's receivers, run for real: the Python receiver
# (clients/hooks/receiver.py + verify.py) and a Node one (verify.mjs) take a
# gateway's signed webhooks for a socket.io-client pair's life and refuse a
# forged event.
set -euo pipefail
binary=$1
node_dir="$(cd "$(dirname "$0")/../../tests/node" && pwd)"
cd "$node_dir"
npm ci --no-audit --no-fund --loglevel=error
SIGNALGATE_BIN="$binary" node --test --test-reporter=spec --test-timeout=60000 hooks.test.mjs
