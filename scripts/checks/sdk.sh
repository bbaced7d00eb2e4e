#!/usr/bin/env bash
# The browser SDK in Node (its experimental WebSocket is the browser's API):
# errors as rejections, reconnect and re-register across a gateway restart,
# resume across a network drop with nothing lost and nothing twice, ICE
# servers held and renewed before they expire, and a draining node's
# `reconnect` followed to another node (two nodes on a Redis it starts,
# behind a stand-in load balancer), and a resume or register answered
# UNAVAILABLE (Redis paused) asked again until it succeeds.
set -euo pipefail
binary=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root/tests/node"
npm ci --no-audit --no-fund --loglevel=error
SIGNALGATE_BIN="$binary" node --experimental-websocket --test --test-reporter=spec --test-timeout=60000 sdk.test.mjs
