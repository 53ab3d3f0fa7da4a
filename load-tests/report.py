#!/usr/bin/env python3
"""Turns the JSON lines written by `opsgate-load ... --json FILE` into Markdown tables:
medians over rounds, each target beside its reference and opsgate, with ratios.

    python3 load-tests/report.py load-tests/out/compare-*/compare.jsonl
"""
import json
import statistics
import sys
from collections import OrderedDict

PTY_GROUP = ["bare-pty", "opsgate-pty", "ttyd", "wetty"]
SSH_GROUP = ["ssh-tt", "opsgate-ssh", "webssh"]
REFERENCE = {"pty": "bare-pty", "ssh": "ssh-tt"}
OPSGATE = {"pty": "opsgate-pty", "ssh": "opsgate-ssh"}


def group_of(target):
    return "ssh" if target in SSH_GROUP else "pty"


def med(rows, key):
    vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return statistics.median(vals) if vals else None


def fmt(v, d=2):
    if v is None:
        return "-"
    return f"{v:.{d}f}"


def ratio(a, b, d=2):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.{d}f}"


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def by_target(rows, family):
    out = OrderedDict()
    for r in rows:
        if r.get("scenario", "").split(" (")[0] == family and "error" not in r:
            out.setdefault(r["target"], []).append(r)
    return out


def order(targets):
    known = PTY_GROUP + SSH_GROUP
    return sorted(targets, key=lambda t: known.index(t) if t in known else len(known))


def echo_table(rows):
    t = by_target(rows, "echo")
    if not t:
        return
    print("### Keystroke echo, one terminal (median of runs)\n")
    print("| target | runs | keystrokes/run | p50 ms | p99 ms | p99.9 ms | max ms | server CPU % | p99 vs opsgate |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in order(t):
        rs = t[name]
        og = t.get(OPSGATE[group_of(name)], [])
        print(
            f"| {name} | {len(rs)} | {fmt(med(rs, 'keystrokes'), 0)} | {fmt(med(rs, 'p50_ms'), 3)} "
            f"| {fmt(med(rs, 'p99_ms'), 3)} | {fmt(med(rs, 'p999_ms'), 3)} | {fmt(med(rs, 'max_ms'), 3)} "
            f"| {fmt(med(rs, 'server_cpu_pct'), 1)} | {ratio(med(rs, 'p99_ms'), med(og, 'p99_ms'))} |"
        )
    print("\n`p99 vs opsgate` = the target's p99 / opsgate's p99 (pty or ssh group); above 1 means opsgate is faster.\n")


def bulk_table(rows):
    t = by_target(rows, "throughput")
    if not t:
        return
    print("### 64 MiB through one terminal (median of runs)\n")
    print("| target | runs | MB/s | % of reference | server CPU s / 64 MiB | load generator CPU s | bytes missing | opsgate MB/s ratio | opsgate CPU ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in order(t):
        rs = t[name]
        g = group_of(name)
        ref = t.get(REFERENCE[g], [])
        og = t.get(OPSGATE[g], [])
        mbs = med(rs, "mb_s_per_channel")
        cpu = med(rs, "server_cpu_s_per_64mib")
        pct = ratio(mbs, med(ref, "mb_s_per_channel"), 4)
        pct = f"{float(pct) * 100:.0f} %" if pct != "-" else "-"
        print(
            f"| {name} | {len(rs)} | {fmt(mbs, 1)} | {pct} | {fmt(cpu, 3)} | {fmt(med(rs, 'loadgen_cpu_s'), 2)} "
            f"| {fmt(med(rs, 'bytes_missing'), 0)} "
            f"| {ratio(med(og, 'mb_s_per_channel'), mbs)} | {ratio(med(og, 'server_cpu_s_per_64mib'), cpu)} |"
        )
    print(
        "\nReference: bare-pty for the local-PTY group, ssh-tt for the SSH group. `opsgate MB/s ratio` = opsgate / target "
        "(above 1: opsgate faster); `opsgate CPU ratio` = opsgate's CPU per 64 MiB / the target's (below 1: opsgate cheaper). "
        "For ssh-tt the CPU is the ssh client's; bare-pty has no server.\n"
    )


def idle_table(rows):
    t = by_target(rows, "idle terminals")
    if not t:
        return
    print("### Memory per idle connection with one terminal (gateway process RSS only)\n")
    print("| target | connections | KiB per connection |")
    print("| --- | --- | --- |")
    for name in order(t):
        rs = t[name]
        print(f"| {name} | {fmt(med(rs, 'connections'), 0)} | {fmt(med(rs, 'kib_per_connection'), 1)} |")
    print()


def main():
    rows = []
    for p in sys.argv[1:]:
        rows.extend(load(p))
    echo_table(rows)
    bulk_table(rows)
    idle_table(rows)
    errors = [r for r in rows if "error" in r]
    for r in errors:
        print(f"- error in {r.get('scenario')}: {r['error']}")


if __name__ == "__main__":
    main()
