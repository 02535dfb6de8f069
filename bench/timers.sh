#!/usr/bin/env bash
# Timers: STREAMS streams (default 100,000) each with a timer every
# TIMER_MS ms (default 1000), multiplexed PER_CONN streams (default 200) per
# WebSocket connection, on a fresh target/release/switchboard whose app
# `bench` is target/release/mini_lambda (open -> accept + subscribe
# idle/<i> + timer; timer -> no action). Once every stream is opened and
# SETTLE s (default 5) have passed, measures over DURATION s (default 60):
# timers fired/s (the gateway's switchboard_app_timers_fired and the
# lambda's own count), the gateway's CPU per timer fired, its RSS per
# stream, and the lambda's CPU. One connection per stream would need more
# descriptors than one process may hold here (~20,000).
#
#   bench/timers.sh                               # 100,000 streams, 60 s window
#   STREAMS=10000 DURATION=20 bench/timers.sh     # a small run
#   PIN=1 bench/timers.sh                         # gateway on CPU 0, the rest on CPU 1
#
# Extra arguments go to timer_load. Writes the JSON report to bench/results/.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_lambda.sh"

STREAMS="${STREAMS:-100000}"
PER_CONN="${PER_CONN:-200}"
TIMER_MS="${TIMER_MS:-1000}"
DURATION="${DURATION:-60}"
SETTLE="${SETTLE:-5}"
OPEN_TIMEOUT="${OPEN_TIMEOUT:-180}"

conns=$(((STREAMS + PER_CONN - 1) / PER_CONN))
per=$(((STREAMS + conns - 1) / conns))
if ((conns * per != STREAMS)); then
    echo "note: $STREAMS streams as $conns connections x $per streams = $((conns * per))" >&2
fi

build
build_lambda
start_lambda
cfg="$(mktemp /tmp/switchboard-bench-timers-cfg.XXXXXX)"
trap 'stop_lambda; stop_server; rm -f "$cfg"' EXIT
cat >"$cfg" <<EOF
[limits]
max_streams_per_connection = $per
# Every stream of a connection opens at once.
max_opens_per_second = $per
min_timer_ms = $((TIMER_MS < 100 ? TIMER_MS : 100))

[apps.bench]
lambda = "$LAMBDA_URL"
EOF
start_server --config "$cfg"
out="$RESULTS/timers-$((conns * per))x${TIMER_MS}ms-$(stamp).json"
echo "load average before: $(loadavg)" >&2
"${BENCH_TASKSET[@]}" "$TIMER_BIN" --url "$SERVER_URL" --server-pid "$SERVER_PID" \
    --lambda-pid "$LAMBDA_PID" --lambda-url "$LAMBDA_URL" \
    --connections "$conns" --streams "$per" --timer-ms "$TIMER_MS" \
    --duration "$DURATION" --settle "$SETTLE" --open-timeout "$OPEN_TIMEOUT" \
    --label "timers" --json-out "$out" "$@"
echo "report: $out" >&2
