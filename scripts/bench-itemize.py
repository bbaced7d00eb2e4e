#!/usr/bin/env python3
"""One line of docs/bench/itemized.jsonl (itemized-window4.jsonl with four
messages in flight per pair): where one relay's server cost goes, for one
target, one write per message.

    bench-itemize.py TARGET COUNTERS_JSON PERF_DATA CALLGRIND_OUT

COUNTERS_JSON holds what scripts/bench read around the perf window (relays,
CPU ticks, context switches, TCP segments); PERF_DATA is `perf record -g -e
cpu-clock` of the same window (kernel and user space, sampled);
CALLGRIND_OUT is a callgrind profile of a second run of the same shape, from
which task polls (tokio's `raw::poll`, one per wake-up that ran a task) are
counted by the future they polled, and instructions by crate.
"""

import collections
import json
import re
import subprocess
import sys

target, counters_path, perf_path, callgrind_path = sys.argv[1:5]
counters = json.load(open(counters_path))
relays = counters["relays"]
per = lambda value: value / relays if relays else None


def perf_split():
    """Samples by where they landed: the kernel (by its top symbols) or user
    space (by crate), as shares of all samples."""
    report = subprocess.run(
        ["perf", "report", "-i", perf_path, "--no-children", "--sort", "dso,sym",
         "--stdio", "-g", "none", "--percent-limit", "0"],
        capture_output=True, text=True, check=False).stdout
    kernel, user, symbols = 0.0, 0.0, []
    by_crate = collections.Counter()
    for line in report.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
        if not match:
            continue
        share, dso, level, symbol = float(match[1]), match[2], match[3], match[4].strip()
        if level == "k":
            kernel += share
        else:
            user += share
            by_crate[crate_of(symbol)] += share
        symbols.append((share, "kernel" if level == "k" else "user", symbol[:90]))
    symbols.sort(reverse=True)
    return {
        "kernel_share": round(kernel / 100, 3),
        "user_share": round(user / 100, 3),
        "user_by_crate": {name: round(share / 100, 3) for name, share in by_crate.most_common(12)},
        "top_symbols": [{"share": round(s / 100, 4), "where": w, "symbol": n} for s, w, n in symbols[:25]],
    }


def crate_of(symbol):
    """The crate a demangled Rust symbol belongs to (its first path segment,
    through `<impl X for Y>` wrappers), or the library it came from."""
    symbol = symbol.lstrip("<&* ")
    symbol = re.sub(r"^(dyn |mut )", "", symbol)
    head = re.split(r"::|<| ", symbol, maxsplit=1)[0]
    return head or "?"


# A cost line: a position (absolute, `+N`/`-N` relative, or `*` the same)
# then the instruction count.
COST_LINE = re.compile(r"^(?:[+-]?\d+|\*)\s+(\d+)")


def callgrind_polls():
    """Task polls (the `calls=` lines into tokio's `raw::poll`) and
    instructions by crate, from a callgrind profile."""
    names, polls = {}, collections.Counter()
    instructions = collections.Counter()
    current_fn, pending_call = None, None
    for line in open(callgrind_path, errors="replace"):
        line = line.rstrip("\n")
        if line.startswith(("fn=", "cfn=")):
            key, rest = line.split("=", 1)
            match = re.match(r"\((\d+)\)(?: (.*))?", rest)
            if match:
                if match[2]:
                    names[match[1]] = match[2]
                name = names.get(match[1], rest)
            else:
                name = rest
            if key == "fn":
                current_fn = name
            else:
                pending_call = name
            continue
        if line.startswith("calls="):
            count = int(line.split("=", 1)[1].split()[0])
            if pending_call and "task::raw::poll" in pending_call:
                polls[pending_call] += count
            continue
        cost = COST_LINE.match(line)
        if pending_call is not None and cost:
            # The cost line after `calls=` is inclusive: not self cost.
            pending_call = None
            continue
        if current_fn and cost:
            instructions[crate_of(current_fn)] += int(cost[1])
    return polls, instructions


callgrind_relays = counters.get("callgrind_relays", 0)
polls, instructions = callgrind_polls() if callgrind_relays else ({}, {})
total_instructions = sum(instructions.values())
print(json.dumps({
    "label": f"itemized/{target}",
    "relays": relays,
    "cpu_us_per_relay": per(counters["cpu_us"]),
    "kernel_us_per_relay": per(counters["sys_us"]),
    "context_switches_per_relay": per(counters["context_switches"]),
    "tcp_segments_per_relay": per(counters["tcp_segments"]),
    "perf": perf_split(),
    "callgrind_relays": callgrind_relays,
    "task_polls_per_relay": round(sum(polls.values()) / callgrind_relays, 3) if callgrind_relays else None,
    "instructions_per_relay": round(total_instructions / callgrind_relays) if callgrind_relays else None,
    "instructions_by_crate": {k: round(v / callgrind_relays) for k, v in instructions.most_common(12)} if callgrind_relays else {},
}))
