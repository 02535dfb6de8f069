#!/usr/bin/env bash
# WebSocket conformance: runs the Autobahn TestSuite's cases (groups 1-7, 9
# and 10; the compression groups 12 and 13 are not run) against the
# gateway's test-only echo endpoint (`serve --ws-echo`, GET /v1/_echo), which
# reads through the same framing code as /v1/ws. The suite runs as the client
# through kosoku (PyPI), which drives Autobahn's own case files on Python 3.
#
# Two runs:
#   default-limits  groups 1-7, 9, 10 with the default limits: the group 9
#                   cases whose message is over limits.max_frame_bytes
#                   (64 KiB) must be closed with 1009, every other case pass.
#   big-messages    group 9 again with limits.max_frame_bytes = 16 MiB, the
#                   largest message of the group: every case must pass.
# Exits non-zero on any other outcome. Writes the per-case summary to
# $AUTOBAHN_OUT/summary.md (default target/autobahn) and kosoku's reports
# beside it. Takes a few seconds; each run is bounded by AUTOBAHN_TIMEOUT
# seconds (default 300).
#
#   scripts/autobahn.sh              install kosoku if missing, build, run
#   scripts/autobahn.sh --install    only install kosoku (scripts/test.sh)
#
# Environment: SWITCHBOARD_BIN (a built binary: skips the build),
# AUTOBAHN_OUT, AUTOBAHN_TIMEOUT, AUTOBAHN_PARALLELISM (default 8).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

KOSOKU_VERSION=0.1.0
out="${AUTOBAHN_OUT:-target/autobahn}"
limit="${AUTOBAHN_TIMEOUT:-300}"
parallelism="${AUTOBAHN_PARALLELISM:-8}"
venv=target/autobahn-venv

has_kosoku() {
    "$1" - "$KOSOKU_VERSION" <<'EOF' >/dev/null 2>&1
import importlib.metadata, sys
sys.exit(importlib.metadata.version("kosoku") != sys.argv[1])
EOF
}

# A Python with kosoku $KOSOKU_VERSION: python3 itself if it has it, else a
# virtualenv of ours (Debian's python3 refuses a plain `pip install`).
python=python3
if ! has_kosoku python3; then
    python="$venv/bin/python"
    if ! has_kosoku "$python"; then
        echo "autobahn: installing kosoku $KOSOKU_VERSION into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "kosoku==$KOSOKU_VERSION"
    fi
fi
if [ "${1:-}" = "--install" ]; then
    exit 0
fi

bin="${SWITCHBOARD_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --quiet -p switchboard --bin switchboard
    bin=target/debug/switchboard
fi

rm -rf "$out"
mkdir -p "$out"
summary="$out/summary.md"
gateway_pid=""

stop_gateway() {
    if [ -n "$gateway_pid" ]; then
        kill "$gateway_pid" 2>/dev/null || true
        wait "$gateway_pid" 2>/dev/null || true
        gateway_pid=""
    fi
}
trap stop_gateway EXIT

# Starts the echo server on a free loopback port; sets $url.
start_gateway() {
    local name="$1"
    shift
    "$bin" serve --listen 127.0.0.1:0 --ws-echo --log warn "$@" \
        >"$out/$name.stdout" 2>"$out/$name.stderr" &
    gateway_pid=$!
    local line=""
    for _ in $(seq 200); do
        line="$(head -n 1 "$out/$name.stdout")"
        [ -n "$line" ] && break
        kill -0 "$gateway_pid" 2>/dev/null || break
        sleep 0.1
    done
    case "$line" in
    "switchboard listening on http://"*) url="ws://${line#switchboard listening on http://}/v1/_echo" ;;
    *)
        echo "autobahn: the gateway did not start; see $out/$name.stderr" >&2
        cat "$out/$name.stderr" >&2
        exit 1
        ;;
    esac
}

# Runs the cases named by the arguments against $url.
run_cases() {
    local name="$1"
    shift
    timeout "$limit" "$python" scripts/autobahn.py "$url" --label "$name" \
        --parallelism "$parallelism" --summary "$summary" --reports "$out/$name" "$@"
}

status=0

start_gateway default-limits
# Over 64 KiB: 9.1.2-6 and 9.2.2-6 (256 KiB to 16 MiB), 9.3 and 9.4 (4 MiB in
# fragments), 9.5 and 9.6 (1 MiB). 9.1.1, 9.2.1 (64 KiB), 9.7 and 9.8 fit.
run_cases default-limits \
    --include '1.*' --include '2.*' --include '3.*' --include '4.*' \
    --include '5.*' --include '6.*' --include '7.*' --include '9.*' --include '10.*' \
    --too-big '9.1.[2-6]' --too-big '9.2.[2-6]' --too-big '9.3.*' \
    --too-big '9.4.*' --too-big '9.5.*' --too-big '9.6.*' || status=1
stop_gateway

printf '[limits]\nmax_frame_bytes = 16777216\n' >"$out/big-messages.toml"
start_gateway big-messages --config "$out/big-messages.toml"
run_cases big-messages --include '9.*' || status=1
stop_gateway

if [ "$status" -ne 0 ]; then
    echo "autobahn: FAILED (summary: $summary)" >&2
else
    echo "autobahn: every case as expected (summary: $summary)"
fi
exit "$status"
