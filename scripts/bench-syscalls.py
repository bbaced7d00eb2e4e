#!/usr/bin/env python3
"""One line of docs/bench/syscalls.jsonl from an `strace -f -c` summary and
the load generator's report: system calls per relay, by call.

    bench-syscalls.py TARGET STRACE_SUMMARY LOAD_JSON
"""

import json
import sys

target, summary_path, load_path = sys.argv[1:4]
load = [json.loads(line) for line in open(load_path) if line.strip()][-1]
relays = 2 * load["received"]
calls = {}
for line in open(summary_path):
    fields = line.split()
    # "% time seconds usecs/call calls [errors] syscall"; skip the header,
    # the rules and the total.
    if len(fields) < 5 or not fields[0].replace(".", "", 1).isdigit() or fields[-1] == "total":
        continue
    calls[fields[-1]] = int(fields[3])
total = sum(calls.values())
print(json.dumps({
    "label": f"syscalls/{target}",
    "relays": relays,
    "calls": total,
    "calls_per_relay": total / relays if relays else None,
    "by_call": {name: count / relays for name, count in sorted(calls.items(), key=lambda item: -item[1])} if relays else {},
}))
