#!/usr/bin/env bash
# The test command of the README: installs what the tests need when it is missing,
# then runs every test of the workspace with every crypto backend compiled in.
#
#   scripts/test.sh [extra cargo-nextest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)   # the independent WebCrypto client (tests/interop)
if ((${#need[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing: ${need[*]} — run as root, or install them: apt-get install -y ${need[*]}" >&2
        exit 1
    fi
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}"
fi

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --all-features --no-fail-fast "$@"
else
    echo "cargo-nextest not found; using cargo test" >&2
    cargo test --workspace --all-features --no-fail-fast "$@"
fi
