#!/usr/bin/env bash
# The short chaos schedule (docs/scale/chaos.md): three gateway nodes on a
# Redis Cluster behind the committed HAProxy config, 200 pairs on every door
# pair relaying numbered messages, and a fixed seed's faults one after
# another (a Redis primary killed and one paused, a rolling restart, a node
# killed, HAProxy restarted, 10% of connections cut). Passes only when
# scripts/chaos's targets hold: nothing acknowledged lost or delivered twice,
# no unexpected byebye, no call dropped by the rolling restart, recovery in
# time, every session recovered.
#
# Release builds, not the debug binary the other checks get: the recovery
# targets are times, and three debug nodes with the load generator and six
# Redis nodes on two cores measure the optimisation level more than the
# gateway (the documented runs use release builds, scripts/chaos's default).
set -euo pipefail
out=$2
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/scripts/lib/packages.sh"
ensure_commands haproxy:haproxy redis-server:redis-server redis-cli:redis-tools
(cd "$root" && cargo build --release --quiet --bin signalgate \
  && cargo build --release --quiet -p signalgate-bench --bin signalgate-chaos-load)
"$root/scripts/chaos" --seed 3 --nodes 3 --pairs 200 --minutes 3 --gap 25 \
  --binary "$root/target/release/signalgate" --load "$root/target/release/signalgate-chaos-load" \
  --report "$out/chaos.json" --markdown "$out/chaos.md" --logs "$out/chaos-logs"
