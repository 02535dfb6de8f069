#!/usr/bin/env bash
# Fanout: one topic, SUBS WebSocket subscribers (default 2,000), RATE msg/s
# (default 50), DURATION s (default 30), against a fresh
# target/release/switchboard (direct app `pubsub`) on a free loopback port,
# or SERVER=pushpin|nchan (bench/README.md).
# Prints the table; writes the JSON report to bench/results/ (REPORT=FILE
# names it).
#
#   bench/fanout.sh                       # 2,000 x 50 msg/s, 30 s
#   SUBS=10000 RATE=20 bench/fanout.sh    # env overrides; extra args go to the bench
#   PIN=1 bench/fanout.sh                 # server on CPU 0, load generator on CPU 1
#   SERVER=pushpin bench/fanout.sh        # the same against Pushpin
source "$(dirname "$0")/lib.sh"

SUBS="${SUBS:-2000}"
RATE="${RATE:-50}"
DURATION="${DURATION:-30}"
WARMUP="${WARMUP:-5}"
TOPICS="${TOPICS:-1}"
TRANSPORT="${TRANSPORT:-ws}"
PAYLOAD="${PAYLOAD:-0}"

build
start_target
out="${REPORT:-$RESULTS/fanout-$(server_tag)$TRANSPORT-${SUBS}x${RATE}-${RUN_TAG:-$(stamp)}.json}"
echo "load average before: $(loadavg)" >&2
"${BENCH_TASKSET[@]}" "$BENCH_BIN" "${TARGET_ARGS[@]}" \
    --transport "$TRANSPORT" --subscribers "$SUBS" --topics "$TOPICS" --rate "$RATE" \
    --duration "$DURATION" --warmup "$WARMUP" --payload "$PAYLOAD" \
    --label "fanout" --json-out "$out" "$@"
echo "report: $out" >&2
