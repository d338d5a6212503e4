# Sourced by `scripts/loadtest.sh baseline` (its helpers and settings are in scope):
# this build against another binary of the server (an earlier release: BASELINE_BIN),
# in one run on this machine. See the usage at the top of scripts/loadtest.sh.

ITERATIONS=$FLOWS
CURRENT_BIN=$BIN
runs="$work/baseline.txt"
: >"$runs"
[ -x "$BASELINE_BIN" ] || { echo "no executable at $BASELINE_BIN" >&2; exit 2; }
echo "This build ($CURRENT_BIN) against $BASELINE_BIN, $CMP_BACKEND, closed loop at concurrency 50"
echo "(the load generator is this build's in every run),"
echo "$FLOWS flows per run (+$WARMUP warm-up); $PAIRS rounds per configuration, each running the two"
echo "binaries twice, mirrored (A B B A, then B A A B); fresh server and empty stores every run;"
echo "memory mode first, before PostgreSQL and Redis start. Redis round trips and"
echo "commands: a sequential run (concurrency 1, $((FLOWS / 10)) flows) per binary, counting Redis's read"
echo "events (one per request a client writes) and commands, less what the idle server sends."
echo
printf '| round | binary | mode | flows/s | server CPU µs/flow | PostgreSQL µs/flow | Redis µs/flow | Redis commands/flow |\n'
printf '|---:|---|---|---:|---:|---:|---:|---:|\n'
redis_reads() { redis-cli -p "$REDIS_PORT" info stats | awk -F: '/^total_reads_processed/ {print $2+0}'; }
# One bench; its line (label, mode, flows/s, CPU per flow of the server, PostgreSQL and
# Redis, Redis commands and read events per flow, [suffix]) is appended to $runs and
# left in $LINE. (Not in a subshell: the stores it starts must outlive it.)
one_run() { # label binary mode protocol flows concurrency [suffix]
    local label=$1 mode=$3 protocol=$4 n=$5 c=$6 rc0 rr0 rcmd=- rrt=-
    BIN=$2
    start_server "$mode" "$CMP_BACKEND"
    cpu_before
    if [ "$mode" = stores ]; then
        # What the server asks of Redis with no load (its watches and polls), per
        # second, to leave out of the per-flow counts.
        rr0=$(redis_reads); rc0=$(redis_commands); sleep 2
        idle_reads=$(( $(redis_reads) - rr0 )) idle_cmds=$(( $(redis_commands) - rc0 ))
        rc0=$(redis_commands); rr0=$(redis_reads); t0=$(date +%s.%N)
    fi
    # The load generator is this build's, whichever server runs.
    CRYPTO_BACKEND=$CMP_BACKEND "$CURRENT_BIN" bench --url "http://127.0.0.1:$PORT" -n "$n" -c "$c" \
        --warmup "$WARMUP" --protocol "$protocol" --server-pid "$SERVER" >"$work/bench.txt" 2>&1 || true
    cpu_after "$mode" $((n + WARMUP))
    if [ "$mode" = stores ]; then
        local secs; secs=$(awk -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN {print t1 - t0}')
        rcmd=$(awk -v a="$rc0" -v b="$(redis_commands)" -v i="$idle_cmds" -v s="$secs" -v n=$((n + WARMUP)) \
            'BEGIN {printf "%.2f", (b - a - i * s / 2) / n}')
        rrt=$(awk -v a="$rr0" -v b="$(redis_reads)" -v i="$idle_reads" -v s="$secs" -v n=$((n + WARMUP)) \
            'BEGIN {printf "%.2f", (b - a - i * s / 2) / n}')
    fi
    stop_server
    BIN=$CURRENT_BIN
    read -r rate _ _ _ _ cpu _ err <<<"$(report_fields "$work/bench.txt")"
    [ "$mode" = memory ] && pgcpu=0 rcpu=0
    grep -m1 "First error" "$work/bench.txt" >&2 || true
    [ "${err:-0}" = 0 ] || echo "($label $mode v$protocol: $err errors)" >&2
    LINE="$label $mode-v$protocol $rate $cpu $pgcpu $rcpu $rcmd $rrt${7:+ $7}"
    echo "$LINE" >>"$runs"
}
# Memory mode first, before PostgreSQL and Redis even start; then the stores.
for config in "memory 2" "memory 1" "stores 2" "stores 1"; do
    read -r mode protocol <<<"$config"
    for i in $(seq "$PAIRS"); do
        # Each round runs the two twice, mirrored (A B B A), so that neither gains from
        # its place or from which binary ran just before it (runs right after one of
        # the same binary were measured 10-20 % faster on this VM).
        if [ $((i % 2)) = 1 ]; then order="baseline current current baseline"; else order="current baseline baseline current"; fi
        for label in $order; do
            bin=$CURRENT_BIN; [ "$label" = baseline ] && bin=$BASELINE_BIN
            one_run "$label" "$bin" "$mode" "$protocol" "$FLOWS" 50
            read -r _ cfg rate cpu pg r rcmd _ <<<"$LINE"
            printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$i" "$label" "$cfg" "$rate" "$cpu" "$pg" "$r" "$rcmd"
            echo "$i" >>"$work/rounds.txt"
        done
    done
done
for label in baseline current; do
    bin=$CURRENT_BIN; [ "$label" = baseline ] && bin=$BASELINE_BIN
    one_run "$label" "$bin" stores 2 $((FLOWS / 10)) 1 sequential
done

python3 - "$runs" "$work/rounds.txt" <<'PYEOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
rounds = [l.strip() for l in open(sys.argv[2]) if l.strip()]
closed = [r for r in rows if len(r) == 8]
for r, i in zip(closed, rounds):
    r.append(i)
seq = {r[0]: r for r in rows if len(r) == 9}
def values(label, cfg, k):
    return [float(r[k]) for r in closed if r[0] == label and r[1] == cfg]
def med(label, cfg, k):
    return statistics.median(values(label, cfg, k))
def round_ratio(cfg, k):
    """Median over rounds of (mean of this build's two runs) / (mean of the baseline's)."""
    out = []
    for i in sorted({r[8] for r in closed if r[1] == cfg}):
        b = [float(r[k]) for r in closed if r[0] == "baseline" and r[1] == cfg and r[8] == i]
        c = [float(r[k]) for r in closed if r[0] == "current" and r[1] == cfg and r[8] == i]
        if b and c and sum(b) > 0:
            out.append((sum(c) / len(c)) / (sum(b) / len(b)))
    return statistics.median(out), len(out)
print("\nMedians of every run, and this build ÷ the baseline: the median over the rounds of the ratio of")
print("each round's means (two runs each):\n")
print("| mode | measure | baseline | this build | ratio (rounds) | target | met |")
print("|---|---|---:|---:|---:|---:|---|")
def line(cfg, name, k, target=None, better="lower"):
    b, c = med("baseline", cfg, k), med("current", cfg, k)
    r, n = round_ratio(cfg, k)
    met = ""
    if target is not None:
        met = "yes" if (r <= target if better == "lower" else r >= target) else "no"
    t = "" if target is None else ("≤ " if better == "lower" else "≥ ") + f"{target:.2f}×"
    print(f"| {cfg} | {name} | {b:.0f} | {c:.0f} | {r:.2f}× ({n}) | {t} | {met} |")
for cfg in ("stores-v2", "stores-v1"):
    line(cfg, "server CPU µs/flow", 3, 0.80)
    line(cfg, "PostgreSQL CPU µs/flow", 4, 0.70)
    line(cfg, "Redis CPU µs/flow", 5)
    line(cfg, "flows/s", 2)
for cfg in ("memory-v2", "memory-v1"):
    line(cfg, "flows/s", 2, 0.98, "higher")
    line(cfg, "server CPU µs/flow", 3, 1.02)
print("\n| stores v2, sequential | baseline | this build | target | met |")
print("|---|---:|---:|---:|---|")
for name, k, target in (("Redis round trips per flow", 8, 2), ("Redis commands per flow", 7, 6)):
    b, c = float(seq["baseline"][k - 1]), float(seq["current"][k - 1])
    print(f"| {name} | {b:.2f} | {c:.2f} | ≤ {target} | {'yes' if c <= target + 0.005 else 'no'} |")
PYEOF
