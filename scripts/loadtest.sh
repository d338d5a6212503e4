#!/usr/bin/env bash
# End-to-end load test: for each crypto backend, start the release server on the
# embedded stores, run `session-crypto bench` at each concurrency, and print one
# Markdown table (flows/s, p50/p99 per endpoint, server CPU per flow).
#
#   scripts/loadtest.sh [ITERATIONS=20000] [CONCURRENCIES="1 10 50"] [BACKENDS="aws-lc-rs ring rustcrypto"]
set -euo pipefail
cd "$(dirname "$0")/.."
ITERATIONS=${1:-20000}
CONCURRENCIES=${2:-"1 10 50"}
BACKENDS=${3:-"aws-lc-rs ring rustcrypto"}
PORT=${LOADTEST_PORT:-3917}

cargo build --release --all-features -q
BIN=target/release/session-crypto
out=$(mktemp -d)
trap 'kill "${SERVER:-}" 2>/dev/null || true; rm -rf "$out"' EXIT

printf '| backend | mode | concurrency | flows/s | init p50 / p99 (ms) | purchase p50 / p99 (ms) | server CPU µs/flow | errors |\n'
printf '|---|---|---:|---:|---:|---:|---:|---:|\n'
for backend in $BACKENDS; do
    for c in $CONCURRENCIES; do
        # A fresh server per run; the nonce store is sized for the run (2 nonces per flow).
        CRYPTO_BACKEND=$backend PORT=$PORT RUST_LOG=warn MEMORY_NONCE_MAX_SIZE=$((ITERATIONS * 2 + 100000)) \
            "$BIN" serve >"$out/server.log" 2>&1 &
        SERVER=$!
        for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
        n=$ITERATIONS
        [ "$c" -eq 1 ] && n=$((ITERATIONS / 4))   # sequential runs are slow; fewer flows suffice
        CRYPTO_BACKEND=$backend "$BIN" bench --url "http://127.0.0.1:$PORT" -n "$n" -c "$c" --warmup 200 \
            --server-pid "$SERVER" >"$out/bench.txt" 2>&1 || true
        kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
        awk -v b="$backend" -v c="$c" '
            /^\/session\/init:/ {sec="i"} /^\/transaction\/purchase:/ {sec="p"} /^Combined/ {sec="c"}
            /P50:/ { if (sec=="i") ip50=$2; if (sec=="p") pp50=$2 }
            /P99:/ { if (sec=="i") ip99=$2; if (sec=="p") pp99=$2 }
            /Flow rate:/ {rate=$3}
            /Errors:/ {err=$2}
            /Server CPU:/ {cpu=$3}
            END { printf "| %s | memory | %s | %.0f | %s / %s | %s / %s | %s | %s |\n", b, c, rate, ip50, ip99, pp50, pp99, cpu, err }
        ' "$out/bench.txt"
    done
done
