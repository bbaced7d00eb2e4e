#!/usr/bin/env python3
"""One line of docs/bench/syscalls.jsonl from `perf stat -x,` counts of the
`syscalls:sys_enter_*` tracepoints and the load generator's report: system
calls per relay, by call.

    bench-syscalls.py TARGET PERF_STAT_CSV LOAD_JSON
"""

import datetime
import json
import sys

PREFIX = "syscalls:sys_enter_"

target, counts_path, load_path = sys.argv[1:4]
load = [json.loads(line) for line in open(load_path) if line.strip()][-1]
relays = 2 * load["received"]
calls = {}
for line in open(counts_path):
    # "count,unit,event,run time,percentage,..."; comments and events perf
    # could not count ("<not counted>") are skipped.
    fields = line.strip().split(",")
    if len(fields) < 3 or not fields[0].isdigit() or not fields[2].startswith(PREFIX):
        continue
    count = int(fields[0])
    if count:
        calls[fields[2][len(PREFIX):]] = count
total = sum(calls.values())
print(json.dumps({
    "label": f"syscalls/{target}",
    "at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
    "relays": relays,
    "calls": total,
    "calls_per_relay": total / relays if relays else None,
    "by_call": {name: count / relays for name, count in sorted(calls.items(), key=lambda item: -item[1])} if relays else {},
}))
