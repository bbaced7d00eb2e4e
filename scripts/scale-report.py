"""Turns one scripts/scale run into a section of docs/scale/report.md."""
import json
import os
import re
import statistics
import sys

label, work, setup_s, want, have = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rss_before = [int(x) for x in sys.argv[6].split()]
rss = [int(x) for x in sys.argv[7].split()]
cpu_before = [float(x) for x in sys.argv[8].split()]
cpu_after = [float(x) for x in sys.argv[9].split()]
t0, t1 = float(sys.argv[10]), float(sys.argv[11])


def calls(name, only=None):
    total = 0
    for line in open(os.path.join(work, f"{label}-{name}.txt")):
        match = re.match(r"cmdstat_(\S+):calls=(\d+)", line)
        if match and (only is None or match.group(1) in only):
            total += int(match.group(2))
    return total


def used_memory(name):
    for line in open(os.path.join(work, f"{label}-{name}.txt")):
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    return 0


runs = [json.loads(line) for line in open(os.path.join(work, f"{label}.jsonl"))]
relays_per_s = sum(run["relays_per_second"] for run in runs)
window = t1 - t0
relays_in_window = relays_per_s * window
nodes = len(rss)
node_cpu = sum(after - before for after, before in zip(cpu_after[:nodes], cpu_before[:nodes]))
redis_cpu = cpu_after[nodes] - cpu_before[nodes]
per_node_connections = want / nodes
setup_commands = calls("commands-after") - calls("commands-before")
# The registration scripts (BIND) and lookups, without the relays the
# first pairs already send while the last ones register.
setup_scripts = calls("commands-after", {"evalsha", "eval"}) - calls("commands-before", {"evalsha", "eval"})
window_commands = calls("commands-window-end") - calls("commands-window-start")
redis_bytes = used_memory("memory-after") - used_memory("memory-before")
lost = sum(run["lost"] for run in runs)
sent = sum(run["sent"] for run in runs)

print(f"## {label}: {have:,} of {want:,} connections held ({want // 2:,} pairs)\n")
print("| measure | value |")
print("|---|---|")
print(f"| setup: all sessions registered and paired in | {setup_s} s ({want / max(setup_s, 1):,.0f} sessions/s, all nodes and loaders sharing 2 cores) |")
print(f"| gateway RSS per node after setup (KiB), {per_node_connections:,.0f} connections each | {', '.join(f'{r:,}' for r in rss)} |")
print(f"| gateway RSS growth per connection (KiB, median over nodes) | {statistics.median((r - b) / per_node_connections for r, b in zip(rss, rss_before)):.1f} |")
print(f"| Redis memory per session (bytes) | {redis_bytes / want:,.0f} |")
print(f"| Redis scripts per register (BIND) | {setup_scripts / want:.2f} |")
print(f"| Redis commands per register, all (incl. the first pairs' relays during setup) | {setup_commands / want:.2f} |")
print(f"| relays per second (offered rate, measured) | {relays_per_s:,.0f} |")
print(f"| Redis commands per relay | {window_commands / max(relays_in_window, 1):.2f} |")
print(f"| gateway CPU per relay, all nodes (µs) | {node_cpu * 1e6 / max(relays_in_window, 1):.1f} |")
print(f"| Redis CPU per relay (µs) | {redis_cpu * 1e6 / max(relays_in_window, 1):.1f} |")
print(f"| round trip p50 / p99 (ms; median p50 / worst p99 over loaders) | {statistics.median(r['rtt_p50_us'] for r in runs) / 1000:.2f} / {max(r['rtt_p99_us'] for r in runs) / 1000:.2f} |")
print(f"| messages sent / lost | {sent:,} / {lost:,} |")
print()
for run in runs:
    print(f"- `{run['label']}` {run['doors']}: {run['pairs']:,} pairs, setup {run['setup_sessions_per_second']:,.0f} sessions/s, "
          f"{run['relays_per_second']:,.0f} relays/s, p50 {run['rtt_p50_us'] / 1000:.2f} ms, p99 {run['rtt_p99_us'] / 1000:.2f} ms, lost {run['lost']}")
print()
