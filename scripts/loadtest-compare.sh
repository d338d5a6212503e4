# Sourced by `scripts/loadtest.sh compare` (its helpers and settings are in scope):
# memory mode against stores mode, back to back, and the open-loop run. See the usage
# at the top of scripts/loadtest.sh.

ITERATIONS=$FLOWS
runs="$work/compare.txt"
: >"$runs"
echo "Closed loop, concurrency 50, $FLOWS flows per run (+$WARMUP warm-up), $CMP_BACKEND, v2:"
echo
printf '| run | mode | flows/s | init p50 / p99 (ms) | purchase p50 / p99 (ms) | server CPU µs/flow | PostgreSQL µs/flow | Redis µs/flow | load generator µs/flow | machine µs/flow | errors |\n'
printf '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for i in $(seq "$RUNS"); do
    for mode in memory stores; do
        start_server "$mode" "$CMP_BACKEND"
        cpu_before
        CRYPTO_BACKEND=$CMP_BACKEND "$BIN" bench --url "http://127.0.0.1:$PORT" -n "$FLOWS" -c 50 \
            --warmup "$WARMUP" --server-pid "$SERVER" >"$work/bench.txt" 2>&1 || true
        cpu_after "$mode" $((FLOWS + WARMUP))
        stop_server
        [ "$mode" = memory ] && pgcpu=0 rcpu=0
        read -r rate ip50 ip99 pp50 pp99 cpu lg err <<<"$(report_fields "$work/bench.txt")"
        echo "$mode $rate $cpu $pgcpu $rcpu $lg $mcpu $err" >>"$runs"
        printf '| %s | %s | %s | %s / %s | %s / %s | %s | %s | %s | %s | %s | %s |\n' "$i" "$mode" "$rate" \
            "$ip50" "$ip99" "$pp50" "$pp99" "$cpu" "$pgcpu" "$rcpu" "$lg" "$mcpu" "$err"
        grep -m1 "First error" "$work/bench.txt" >&2 || true
    done
done

# Medians per mode, and the ratios (of the medians, and the median of the per-run
# ratios: each stores run against the memory run just before it).
python3 - "$runs" "$work/open_rate" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
cols = ["flows/s", "server CPU µs/flow", "PostgreSQL µs/flow", "Redis µs/flow", "load generator µs/flow", "machine µs/flow"]
by = {m: [[float(x) for x in r[1:7]] for r in rows if r[0] == m] for m in ("memory", "stores")}
med = {m: [statistics.median(c) for c in zip(*v)] for m, v in by.items()}
pairs = list(zip(by["memory"], by["stores"]))
per_run = lambda k: statistics.median(s[k] / m[k] for m, s in pairs if m[k] > 0)
open(sys.argv[2], "w").write(str(int(med["stores"][0] * 0.5)))
print(f"\nMedians of {len(pairs)} runs per mode:\n")
print("| mode | " + " | ".join(cols) + " |")
print("|---|" + "---:|" * len(cols))
for m in ("memory", "stores"):
    print(f"| {m} | " + " | ".join(f"{v:.0f}" for v in med[m]) + " |")
rate, cpu = med["stores"][0] / med["memory"][0], med["stores"][1] / med["memory"][1]
# (The targets issue 17 set for these ratios were withdrawn by issue 30 as out of reach
# on a 2-core machine shared with PostgreSQL, Redis and the load generator.)
print(f"\n| stores ÷ memory | ratio of the medians | median of the per-run ratios |")
print("|---|---:|---:|")
print(f"| flows/s | {rate:.2f}× | {per_run(0):.2f}× |")
print(f"| server CPU per flow | {cpu:.2f}× | {per_run(1):.2f}× |")
print(f"| machine CPU per flow | {med['stores'][5] / med['memory'][5]:.2f}× | {per_run(5):.2f}× |")
EOF
OPEN_RATE=$(cat "$work/open_rate")

echo
echo "Open loop on the stores: $OPEN_RATE flows/s (half the median closed-loop stores rate) for $OPEN_SEC s, 50 connections:"
start_server stores "$CMP_BACKEND"
CRYPTO_BACKEND=$CMP_BACKEND "$BIN" bench --url "http://127.0.0.1:$PORT" --rate "$OPEN_RATE" --duration "$OPEN_SEC" \
    -c 50 --warmup "$WARMUP" --server-pid "$SERVER" --json "$work/open.json" >"$work/open.txt" 2>&1 || true
stop_server
python3 - "$work/open.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
i, p = r["init"], r["purchase"]
ri, rp = i["p99_ms"] / i["p50_ms"], p["p99_ms"] / p["p50_ms"]
print(f"\nachieved {r['achieved_rate']:.0f} of {r['target_rate']:.0f} flows/s, {r['ok']} flows, {r['errors']} errors, "
      f"server CPU {r['server_cpu_us_per_flow'] or 0:.1f} µs/flow, start delay p50 {r['start_delay']['p50_ms']:.3f} / "
      f"p99 {r['start_delay']['p99_ms']:.3f} / max {r['max_start_delay_ms']:.2f} ms\n")
print("| open loop | p50 (ms) | p99 (ms) | p99 ÷ p50 | target | met |")
print("|---|---:|---:|---:|---:|---|")
print(f"| init | {i['p50_ms']:.3f} | {i['p99_ms']:.3f} | {ri:.2f}× | ≤ 4× | {'yes' if ri <= 4 else 'no'} |")
print(f"| purchase | {p['p50_ms']:.3f} | {p['p99_ms']:.3f} | {rp:.2f}× | ≤ 3× | {'yes' if rp <= 3 else 'no'} |")
late = r["late_to_start"]
print(f"| flows late to start (> {r['late_threshold_ms']:.0f} ms) | | | {late} | 0 | {'yes' if late == 0 else 'no'} |")
EOF
