#!/usr/bin/env python3
"""Prints the README's "Backend comparison" table from criterion's saved estimates.

Run `cargo bench` first (any filter); this reads target/criterion/**/new/ and prints one
row per operation with the mean time per operation of each backend side by side.

    scripts/bench-summary.py [target/criterion]
"""
import json
import os
import platform
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "target", "criterion")
BACKENDS = ["aws-lc-rs", "ring", "rustcrypto"]
rows = {}
for dirpath, _dirs, files in os.walk(root):
    if os.path.basename(dirpath) != "new" or "estimates.json" not in files or "benchmark.json" not in files:
        continue
    with open(os.path.join(dirpath, "benchmark.json")) as f:
        meta = json.load(f)
    with open(os.path.join(dirpath, "estimates.json")) as f:
        est = json.load(f)
    group, function = meta["group_id"], meta["function_id"]
    # The server steps run once per protocol version: `server-init/<backend>/v2` is the
    # row `server-init v2`.
    if "/v" in function:
        function, version = function.rsplit("/", 1)
        group = f"{group} {version}"
    rows.setdefault(group, {})[function] = est["mean"]["point_estimate"]

def fmt(ns):
    if ns is None:
        return "—"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"

cpu = "unknown CPU"
try:
    with open("/proc/cpuinfo") as f:
        cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
except (OSError, StopIteration):
    pass
print(f"Mean time per operation (criterion), {platform.machine()} {cpu}, {os.cpu_count()} CPUs.\n")
print("| operation | aws-lc-rs | ring | rustcrypto |")
print("|---|---:|---:|---:|")
others = []
for group in sorted(rows):
    fns = rows[group]
    if any(b in fns for b in BACKENDS):
        print(f"| {group} | " + " | ".join(fmt(fns.get(b)) for b in BACKENDS) + " |")
    else:
        others.extend((f"{group}/{name}", ns) for name, ns in sorted(fns.items()))
if others:
    print("\n| backend-independent | time |")
    print("|---|---:|")
    for name, ns in others:
        print(f"| {name} | {fmt(ns)} |")

# The speed targets of the server steps, for each backend with all inputs measured.
print("\n| backend | init ÷ (keygen + ECDH + HKDF) | purchase − (seal + open at 64 B) |")
print("|---|---:|---:|")
for b in BACKENDS:
    try:
        init = rows["server-init v1"][b] / (rows["p256-keygen"][b] + rows["ecdh"][b] + rows["hkdf-sha256-32"][b])
        over = rows["server-purchase v1"][b] - rows["aes-256-gcm-seal/64B"][b] - rows["aes-256-gcm-open/64B"][b]
    except KeyError:
        continue
    print(f"| {b} | {init:.2f}× | {fmt(over)} |")

# Protocol v2 against v1, same run, same backend.
print("\n| backend | init v2 ÷ v1 | purchase v2 ÷ v1 |")
print("|---|---:|---:|")
for b in BACKENDS:
    try:
        init = rows["server-init v2"][b] / rows["server-init v1"][b]
        purchase = rows["server-purchase v2"][b] / rows["server-purchase v1"][b]
    except KeyError:
        continue
    print(f"| {b} | {init:.2f}× | {purchase:.2f}× |")
