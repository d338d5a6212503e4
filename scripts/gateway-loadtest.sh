#!/usr/bin/env bash
# The gateway's cost: start the echo upstream (clients/cli/examples/echo_upstream.rs) and a fresh
# release server with GATEWAY_UPSTREAM, then run `session-crypto bench --gateway` —
# rounds of (direct upstream, purchase route, gateway), each phase paced to the same
# request rate so their CPU per request compares at the same load — in two set-ups:
#
#   default  server, load generator and upstream share both cores; WORKER_THREADS default
#   pinned   server alone on CPU 0 with WORKER_THREADS=1; load generator and upstream on CPU 1
#
# for a TCP upstream and a Unix-socket one. Prints each bench report.
#
#   scripts/gateway-loadtest.sh [REQUESTS=20000] [RATE=10000] [ROUNDS=5] [CONCURRENCY=50] \
#                               [SETUPS="default pinned"] [UPSTREAMS="tcp unix"]
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-20000}
RATE=${2:-10000}
ROUNDS=${3:-5}
CONCURRENCY=${4:-50}
SETUPS=${5:-"default pinned"}
UPSTREAMS=${6:-"tcp unix"}
PORT=${LOADTEST_PORT:-3917}
export CRYPTO_BACKEND=${CRYPTO_BACKEND:-aws-lc-rs}

cargo build --release --all-features -q
cargo build --release --all-features -q -p session-crypto-cli --example echo_upstream
BIN=target/release/session-crypto
work=$(mktemp -d)
SERVER="" UPSTREAM=""
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
    [ -n "$UPSTREAM" ] && kill "$UPSTREAM" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for setup in $SETUPS; do
    for kind in $UPSTREAMS; do
        if [ "$setup" = pinned ]; then
            on_server=(taskset -c 0) on_clients=(taskset -c 1) threads=(WORKER_THREADS=1)
        else
            on_server=() on_clients=() threads=()
        fi
        if [ "$kind" = unix ]; then
            at="unix:$work/upstream.sock" upstream="$at" direct=()
        else
            up_port=$(free_port)
            at="$up_port" upstream="http://127.0.0.1:$up_port" direct=(--direct "$upstream/echo")
        fi
        "${on_clients[@]}" target/release/examples/echo_upstream "$at" 1 >"$work/upstream.log" 2>&1 &
        UPSTREAM=$!
        sleep 0.3
        env "${threads[@]}" RUST_LOG=warn PORT="$PORT" GATEWAY_UPSTREAM="$upstream" \
            MEMORY_NONCE_MAX_SIZE=$((REQUESTS * ROUNDS * 4 + 100000)) \
            "${on_server[@]}" "$BIN" serve >"$work/server.log" 2>&1 &
        SERVER=$!
        until grep -q "listening on" "$work/server.log" 2>/dev/null; do sleep 0.1; done
        echo "## $setup, $kind upstream ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs)"
        "${on_clients[@]}" "$BIN" bench --url "http://127.0.0.1:$PORT" --gateway /api/echo "${direct[@]}" \
            -n "$REQUESTS" -c "$CONCURRENCY" --rounds "$ROUNDS" --rate "$RATE" --worker-threads 1 \
            --server-pid "$SERVER" --upstream-pid "$UPSTREAM"
        echo
        kill "$SERVER" "$UPSTREAM"; wait "$SERVER" "$UPSTREAM" 2>/dev/null || true
        SERVER="" UPSTREAM=""
        rm -f "$work/upstream.sock"
    done
done
