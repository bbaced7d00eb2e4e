"""Turns one scripts/scale run into a section of docs/scale/<engine>-report.md
and a line of docs/scale/<engine>-runs.jsonl; with --combine DIR, joins the
engines run so far into docs/scale/report.md and docs/scale/report.json."""
import json
import os
import re
import statistics
import sys


def combine(out):
    engines = [e for e in ("redis", "redis-cluster") if os.path.exists(f"{out}/{e}-runs.jsonl")]
    runs = []
    for engine in engines:
        runs += [json.loads(line) for line in open(f"{out}/{engine}-runs.jsonl")]
    with open(f"{out}/report.json", "w") as f:
        json.dump({"runs": runs}, f, indent=2)
    with open(f"{out}/report.md", "w") as f:
        f.write("# scripts/scale report\n\n")
        f.write("The raw figures of every run are in report.json; each engine's section below.\n\n")
        for engine in engines:
            f.write(open(f"{out}/{engine}-report.md").read())


if sys.argv[1] == "--combine":
    combine(sys.argv[2])
    sys.exit(0)

label, work, setup_s, want, have = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rss_before = [int(x) for x in sys.argv[6].split()]
rss = [int(x) for x in sys.argv[7].split()]
cpu_before = [float(x) for x in sys.argv[8].split()]
cpu_after = [float(x) for x in sys.argv[9].split()]
t0, t1 = float(sys.argv[10]), float(sys.argv[11])
engine, runs_file = sys.argv[12], sys.argv[13]


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

paired = sum(run["pairs"] for run in runs)
# Which doors each node holds: loader i's web sessions are on node i, its
# app sessions on node i+1 (cross-node) or on node i too (same-node).
split = 1 if label.startswith("cross") else 0
node_doors = [set() for _ in range(nodes)]
for run in runs:
    index = int(run["label"].rsplit("-", 1)[1])
    web_door, app_door = run["doors"].split("/")
    node_doors[index % nodes].add(web_door)
    node_doors[(index + split) % nodes].add(app_door)
rss_by_node = [{"node": n, "doors": sorted(node_doors[n]), "kib_per_connection": (r - b) / per_node_connections}
               for n, (r, b) in enumerate(zip(rss, rss_before))]
with open(runs_file, "a") as f:
    f.write(json.dumps({
        "label": label, "engine": engine, "nodes": nodes,
        "sessions": 2 * paired, "pairs": paired, "sessions_wanted": want, "sessions_open": have,
        "sent": sent, "lost": lost, "setup_s": setup_s,
        "rss_kib_per_node": rss,
        "rss_kib_per_connection_by_node": rss_by_node,
        "rss_kib_per_connection_median": statistics.median((r - b) / per_node_connections for r, b in zip(rss, rss_before)),
        "redis_bytes_per_session": redis_bytes / want,
        "redis_scripts_per_register": setup_scripts / want,
        "redis_commands_per_register": setup_commands / want,
        "relays_per_second": relays_per_s,
        "redis_commands_per_relay": window_commands / max(relays_in_window, 1),
        "gateway_cpu_us_per_relay": node_cpu * 1e6 / max(relays_in_window, 1),
        "redis_cpu_us_per_relay": redis_cpu * 1e6 / max(relays_in_window, 1),
        "rtt_p50_ms": statistics.median(r["rtt_p50_us"] for r in runs) / 1000,
        "rtt_p99_ms": max(r["rtt_p99_us"] for r in runs) / 1000,
        "loaders": [{"label": r["label"], "doors": r["doors"], "pairs": r["pairs"], "lost": r["lost"]} for r in runs],
    }) + "\n")

print(f"### {label}: {2 * paired:,} sessions registered and paired of {want:,} wanted ({paired:,} pairs; {have:,} open)\n")
print("| measure | value |")
print("|---|---|")
print(f"| setup: all sessions registered and paired in | {setup_s} s ({want / max(setup_s, 1):,.0f} sessions/s, all nodes and loaders sharing 2 cores) |")
print(f"| gateway RSS per node after setup (KiB), {per_node_connections:,.0f} connections each | {', '.join(f'{r:,}' for r in rss)} |")
print(f"| gateway RSS growth per connection (KiB, median over nodes) | {statistics.median((r - b) / per_node_connections for r, b in zip(rss, rss_before)):.1f} |")
by_node = "; ".join("%.1f (%s)" % (n["kib_per_connection"], "+".join(n["doors"])) for n in rss_by_node)
print(f"| gateway RSS growth per connection by node (KiB; the doors it holds) | {by_node} |")
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
