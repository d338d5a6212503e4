#!/usr/bin/env bash
# The test command of the README: installs what the tests need when it is missing
# (Node.js and npm, Chromium, PostgreSQL, Redis, Python's venv — with apt-get, as root;
# playwright-core with npm; the Python client's test tools with pip, by its test), then
# runs every test of the workspace with every crypto backend compiled in.
#
#   scripts/test.sh [extra cargo-nextest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)   # the independent WebCrypto client (tests/interop)
command -v npm >/dev/null 2>&1 || need+=(npm)         # playwright-core for the browser test
# The browser demo is driven in a real headless Chromium (tests/browser).
[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || need+=(chromium)
# Real PostgreSQL and Redis: the tests start their own throwaway servers from these
# binaries (temp dir, free loopback ports); nothing needs to be running.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    need+=(postgresql)
fi
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
# The Python client's tests make a virtual environment (target/python-venv) and fill it
# from PyPI (cryptography, httpx, pytest, mypy).
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
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

# playwright-core (the version pinned in tests/browser/package-lock.json) drives Chromium.
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi
# The TypeScript client library's build tools (typescript, esbuild; pinned in its lock).
if [ ! -d clients/typescript/node_modules/typescript ] || [ ! -d clients/typescript/node_modules/esbuild ]; then
    npm ci --prefix clients/typescript --no-audit --no-fund --loglevel=error
fi

# The idle-connection test holds 2,000 sockets open in the test and in the server.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --all-features --no-fail-fast "$@"
else
    echo "cargo-nextest not found; using cargo test" >&2
    cargo test --workspace --all-features --no-fail-fast "$@"
fi
