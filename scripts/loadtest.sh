#!/usr/bin/env bash
# End-to-end load test: for each crypto backend and store mode, start a fresh release
# server, run `session-crypto bench` at each concurrency, and print one Markdown table:
# flows/s, p50/p99 per endpoint, and CPU per flow of the server (and, with stores, of
# PostgreSQL and Redis), of the load generator, and of the whole machine (all busy
# time in /proc/stat, including kernel network processing no process is charged for).
# The "stores" mode starts throwaway PostgreSQL and Redis servers (temp dir, free
# ports) from the installed binaries, and also counts per flow the Redis commands and
# the PostgreSQL commits and inserted rows (for the capacity model of docs/scaling.md).
#
#   scripts/loadtest.sh [ITERATIONS=20000] [CONCURRENCIES="1 10 50"] \
#                       [BACKENDS="aws-lc-rs ring rustcrypto"] [MODES="memory stores"] \
#                       [PROTOCOLS="2"]
#
# PROTOCOLS="1 2" runs every combination in both protocol versions (one table row each).
#
#   scripts/loadtest.sh compare [RUNS=5] [FLOWS=15000] [BACKEND=aws-lc-rs] [SECONDS=10]
#
#   scripts/loadtest.sh baseline BASELINE_BIN [ROUNDS=5] [FLOWS=20000] [BACKEND=aws-lc-rs]
#
# measures this build against another binary of the server (BASELINE_BIN: an earlier
# release), ROUNDS rounds of A B B A in each of memory v2, memory v1, stores v2
# and stores v1; prints the medians and the per-round ratios against the targets of
# docs/performance.md ("Against the previous release"), then the Redis round trips
# and commands per flow of each from a sequential run.
#
# The compare form measures the two store modes against each other, back to back in one run: RUNS
# alternating closed-loop runs at concurrency 50 (memory, stores, memory, stores, …;
# fresh server and empty stores each), their medians and the ratios stores ÷ memory,
# then an open-loop run on the stores at half the median stores rate for SECONDS, with
# its p99 ÷ p50 and the flows late to start, set against the open-loop targets of
# docs/performance.md ("Stores mode against memory mode").
set -euo pipefail
cd "$(dirname "$0")/.."
COMPARE=""
BASELINE_BIN=""
if [ "${1:-}" = compare ]; then
    COMPARE=1 RUNS=${2:-5} FLOWS=${3:-15000} CMP_BACKEND=${4:-aws-lc-rs} OPEN_SEC=${5:-10}
    set --
elif [ "${1:-}" = baseline ]; then
    BASELINE_BIN=$(realpath "${2:?usage: scripts/loadtest.sh baseline BASELINE_BIN [PAIRS] [FLOWS] [BACKEND]}")
    PAIRS=${3:-5} FLOWS=${4:-20000} CMP_BACKEND=${5:-aws-lc-rs}
    set --
fi
ITERATIONS=${1:-20000}
CONCURRENCIES=${2:-"1 10 50"}
BACKENDS=${3:-"aws-lc-rs ring rustcrypto"}
MODES=${4:-"memory stores"}
PROTOCOLS=${5:-"2"}
PORT=${LOADTEST_PORT:-3917}
WARMUP=200   # flows before the measured ones, on every run

cargo build --release --all-features -q
BIN=target/release/session-crypto
work=$(mktemp -d)
chmod 755 "$work"
SERVER="" PG_STARTED="" REDIS_PID=""
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
    [ -n "$PG_STARTED" ] && as_pg "$PG_BIN/pg_ctl" -D "$work/pg" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { # user+system clock ticks (1/100 s) of the given pids
    local t=0; for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$t"
}
busy() { # busy clock ticks of the whole machine (all CPUs): user, nice, system, irq, softirq
    # (not idle, iowait, or steal: time the hypervisor gave to other guests)
    awk '/^cpu / {print $2+$3+$4+$7+$8; exit}' /proc/stat
}
pg_pids() { [ -n "$PG_STARTED" ] && { head -1 "$work/pg/postmaster.pid"; pgrep -P "$(head -1 "$work/pg/postmaster.pid")"; } || true; }

start_stores() {
    PG_BIN=$(dirname "$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | sort | tail -1)")
    [ "$(id -u)" -eq 0 ] && chown postgres "$work"
    PG_PORT=$(free_port) REDIS_PORT=$(free_port)
    as_pg "$PG_BIN/initdb" -D "$work/pg" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
    as_pg "$PG_BIN/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
        -o "-p $PG_PORT -k $work -c listen_addresses=127.0.0.1" start >/dev/null
    PG_STARTED=1
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE session_crypto"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
    REDIS_PID=$!
    until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.1; done
}

redis_commands() { redis-cli -p "$REDIS_PORT" info stats | awk -F: '/^total_commands_processed/ {print $2+0}'; }
pg_counts() { # commits and inserted rows of the session_crypto database
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d session_crypto -Atc \
        "SELECT xact_commit, tup_inserted FROM pg_stat_database WHERE datname = 'session_crypto'" | tr '|' ' '
}

# A fresh release server of this mode and backend on $PORT (stores emptied first), its
# pid in $SERVER.
start_server() { # mode backend [env…]
    local mode=$1 backend=$2; shift 2
    local env=(RUST_LOG=warn "MEMORY_NONCE_MAX_SIZE=$((ITERATIONS * 2 + 100000))" "$@")
    if [ "$mode" = stores ]; then
        [ -z "$PG_STARTED" ] && start_stores
        [ -z "${KEK:-}" ] && KEK=$("$BIN" keygen --backend aws-lc-rs)
        env+=("DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/session_crypto" "REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
              "SESSION_KEK=$KEK")
        # Every run starts from empty stores, as a fresh server does in memory
        # mode (and stays under the per-client session cap, which is on).
        # (A fresh deployment: the nonce fence's tables too, or the emptied Redis
        # would read as a loss of data and fence the next server.)
        psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d session_crypto -qc \
            "TRUNCATE sessions, nonces, nonce_fence, nonce_instances" 2>/dev/null || true
        # No checkpoint left over from the previous run to land in this one.
        psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CHECKPOINT" >/dev/null
        redis-cli -p "$REDIS_PORT" flushall >/dev/null
    fi
    env "${env[@]}" CRYPTO_BACKEND="$backend" PORT="$PORT" "$BIN" serve >"$work/server.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
}
stop_server() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""; }

# CPU of PostgreSQL, Redis and the whole machine around one bench: cpu_before, the
# bench, then `cpu_after MODE FLOWS` sets pgcpu and rcpu (stores mode; "-" otherwise)
# and mcpu, in µs per flow.
cpu_before() { pg0=$(ticks $(pg_pids)); r0=$(ticks $REDIS_PID); m0=$(busy); }
cpu_after() {
    local pg1 r1 m1
    pg1=$(ticks $(pg_pids)); r1=$(ticks $REDIS_PID); m1=$(busy)
    pgcpu=- rcpu=-
    if [ "$1" = stores ]; then
        pgcpu=$(( (pg1 - pg0) * 10000 / $2 )); rcpu=$(( (r1 - r0) * 10000 / $2 ))
    fi
    mcpu=$(( (m1 - m0) * 10000 / $2 ))
}

# Fields of a closed-loop report: flows/s, init p50, init p99, purchase p50, purchase
# p99, server CPU µs/flow, load generator µs/flow, errors.
report_fields() {
    awk '
        /^\/session\/init:/ {sec="i"} /^\/transaction\/purchase:/ {sec="p"} /^Combined/ {sec="c"}
        /P50:/ { if (sec=="i") ip50=$2; if (sec=="p") pp50=$2 }
        /P99:/ { if (sec=="i") ip99=$2; if (sec=="p") pp99=$2 }
        /Flow rate:/ {rate=$3}
        /Errors:/ {err=$2}
        /Server CPU:/ {cpu=$3}
        /Client CPU:/ {lg=$3}
        END { printf "%.0f %s %s %s %s %s %s %s\n", rate, ip50, ip99, pp50, pp99, cpu, lg, err }
    ' "$1"
}

if [ -n "$BASELINE_BIN" ]; then
    # shellcheck source=scripts/loadtest-baseline.sh
    . scripts/loadtest-baseline.sh
    exit 0
fi
if [ -n "$COMPARE" ]; then
    # shellcheck source=scripts/loadtest-compare.sh
    . scripts/loadtest-compare.sh
    exit 0
fi

printf '| backend | mode, protocol | concurrency | flows/s | init p50 / p99 (ms) | purchase p50 / p99 (ms) | server CPU µs/flow | PostgreSQL µs/flow | Redis µs/flow | load generator µs/flow | machine µs/flow | Redis commands/flow | PostgreSQL commits / rows per flow | errors |\n'
printf '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for mode in $MODES; do
    for backend in $BACKENDS; do
        for c in $CONCURRENCIES; do
        for protocol in $PROTOCOLS; do
                start_server "$mode" "$backend"
                n=$ITERATIONS
                [ "$c" -eq 1 ] && n=$((ITERATIONS / 4))   # sequential runs are slow; fewer flows suffice
                cpu_before
                if [ "$mode" = stores ]; then rc0=$(redis_commands); read -r pc0 pr0 <<<"$(pg_counts)"; fi
                CRYPTO_BACKEND=$backend "$BIN" bench --url "http://127.0.0.1:$PORT" -n "$n" -c "$c" --warmup "$WARMUP" \
                    --protocol "$protocol" --server-pid "$SERVER" >"$work/bench.txt" 2>&1 || true
                # Sampled around the whole bench, warm-up flows included (machine time
                # also spans the load generator's start-up).
                cpu_after "$mode" $((n + WARMUP))
                stop_server
                rcmd=-; pgw=-
                if [ "$mode" = stores ]; then
                    sleep 1   # PostgreSQL publishes its counters within a second
                    rc1=$(redis_commands); read -r pc1 pr1 <<<"$(pg_counts)"
                    rcmd=$(awk -v a="$rc0" -v b="$rc1" -v n=$((n + WARMUP)) 'BEGIN {printf "%.2f", (b - a) / n}')
                    pgw=$(awk -v c0="$pc0" -v c1="$pc1" -v r0="$pr0" -v r1="$pr1" -v n=$((n + WARMUP)) \
                        'BEGIN {printf "%.3f / %.2f", (c1 - c0) / n, (r1 - r0) / n}')
                fi
                read -r rate ip50 ip99 pp50 pp99 cpu lg err <<<"$(report_fields "$work/bench.txt")"
                printf '| %s | %s | %s | %s | %s / %s | %s / %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
                    "$backend" "$mode v$protocol" "$c" "$rate" "$ip50" "$ip99" "$pp50" "$pp99" "$cpu" \
                    "$pgcpu" "$rcpu" "$lg" "$mcpu" "$rcmd" "$pgw" "$err"
                # A run with errors says why (on stderr, below the table rows).
                grep -m1 "First error" "$work/bench.txt" >&2 || true
        done
        done
    done
done
