# Shared helpers for the bench scripts (sourced, not run).
# Starts target/release/switchboard on a free loopback port and stops it.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# SERVER_BIN / BENCH_BIN override the binaries (e.g. a gateway built elsewhere).
SERVER_BIN="${SERVER_BIN:-$ROOT/target/release/switchboard}"
BENCH_BIN="${BENCH_BIN:-$ROOT/target/release/switchboard-bench}"
RESULTS="$ROOT/bench/results"
mkdir -p "$RESULTS"

# As many open files as allowed: each connection is one on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Optional pinning (PIN=1): server on CPU 0, load generator on CPU 1.
SERVER_TASKSET=()
BENCH_TASKSET=()
if [[ "${PIN:-0}" == 1 ]] && command -v taskset >/dev/null; then
    SERVER_TASKSET=(taskset -c "${SERVER_CPUS:-0}")
    BENCH_TASKSET=(taskset -c "${BENCH_CPUS:-1}")
fi

build() {
    if [[ "${BUILD:-auto}" == 1 || ! -x "$SERVER_BIN" || ! -x "$BENCH_BIN" ]]; then
        (cd "$ROOT" && cargo build --release -p switchboard -p switchboard-bench)
    fi
}

SERVER_PID=""
SERVER_URL=""
SERVER_LOG=""

# start_server [extra serve flags...]: sets SERVER_PID and SERVER_URL.
start_server() {
    SERVER_LOG="$(mktemp /tmp/switchboard-bench-server.XXXXXX)"
    SWITCHBOARD_LOG="${SWITCHBOARD_LOG:-warn}" "${SERVER_TASKSET[@]}" "$SERVER_BIN" serve --listen 127.0.0.1:0 "$@" >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 1 100); do
        SERVER_URL="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$SERVER_LOG" | head -n1 || true)"
        [[ -n "$SERVER_URL" ]] && break
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "switchboard exited at start:" >&2
            cat "$SERVER_LOG" >&2
            return 1
        fi
        sleep 0.1
    done
    if [[ -z "$SERVER_URL" ]]; then
        echo "switchboard did not report its address within 10 s" >&2
        stop_server
        return 1
    fi
    echo "switchboard pid $SERVER_PID at $SERVER_URL" >&2
}

stop_server() {
    if [[ -n "$SERVER_PID" ]] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
        local rc=0
        wait "$SERVER_PID" 2>/dev/null || rc=$?
        echo "switchboard (pid $SERVER_PID) had exited on its own (status $rc); its log ends:" >&2
        tail -n 20 "$SERVER_LOG" >&2 || true
    elif [[ -n "$SERVER_PID" ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        local i
        for i in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
    [[ -n "$SERVER_LOG" ]] && rm -f "$SERVER_LOG"
    SERVER_LOG=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# json_field FILE KEY: a number or string from the report's flat "summary".
json_field() {
    grep -o "\"$2\": *[^,}]*" "$1" | head -n1 | sed -e 's/^[^:]*: *//' -e 's/"//g'
}

stamp() { date -u +%Y%m%dT%H%M%SZ; }

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
