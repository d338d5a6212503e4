#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each for a bounded time on the stable
# toolchain (libFuzzer, coverage-guided, without ASan: the code under test is safe
# Rust). New inputs go to a scratch corpus; the committed seeds in fuzz/corpus/ are
# read-only here. A crash fails the script and leaves its reproducer in fuzz/artifacts/.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET=30] [TARGETS...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decrypt_envelope idempotency_key init_request http_request gateway_forwarding)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
    echo "== fuzz $t for ${seconds}s"
    mkdir -p "$scratch/$t"
    status=0
    cargo fuzz run --sanitizer none "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$scratch/$t.log" 2>&1 || status=$?
    # libFuzzer's progress lines are noise here; keep the summary and any failure.
    grep -E "^#[0-9]+.*DONE|^Done|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|cov:.*ft:.*corp:" "$scratch/$t.log" | tail -5 || true
    if [ "$status" -ne 0 ]; then
        tail -40 "$scratch/$t.log" >&2
        echo "fuzz target $t failed (exit $status); reproducer in fuzz/artifacts/$t/" >&2
        exit 1
    fi
done
