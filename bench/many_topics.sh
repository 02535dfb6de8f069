#!/usr/bin/env bash
# Many topics: TOPICS topics (default 10,000) with SUBS_PER_TOPIC WebSocket
# subscribers each (default 2, so 20,000 subscribers), RATE msg/s over all
# topics (default 2,000, message n to topic n mod TOPICS: 0.2 msg/s per
# topic, 4,000 deliveries/s), DURATION s (default 30), against a fresh
# target/release/switchboard (direct app `pubsub`), or SERVER=pushpin|nchan
# (bench/README.md). Past 15,000 subscribers the load generator runs worker
# processes.
#
# The gateway needs one descriptor per subscriber plus a few; with a lower
# `ulimit -n` than SUBS + 100 the subscriber count is cut to fit (the last
# topics then have one subscriber; offered deliveries follow). FD_RESERVE
# (default 100) sets that margin.
#
#   bench/many_topics.sh                               # 10,000 topics x 2
#   TOPICS=1000 RATE=200 DURATION=10 bench/many_topics.sh   # a small run
#   PIN=1 bench/many_topics.sh                         # server on CPU 0, load generator on CPU 1
#   SERVER=nchan bench/many_topics.sh                  # the same against Nchan
#
# Extra arguments go to switchboard-bench. Writes the JSON report to bench/results/.
source "$(dirname "$0")/lib.sh"

TOPICS="${TOPICS:-10000}"
SUBS_PER_TOPIC="${SUBS_PER_TOPIC:-2}"
SUBS="${SUBS:-$((TOPICS * SUBS_PER_TOPIC))}"
RATE="${RATE:-2000}"
DURATION="${DURATION:-30}"
WARMUP="${WARMUP:-5}"
PAYLOAD="${PAYLOAD:-0}"
FD_RESERVE="${FD_RESERVE:-100}"

limit="$(ulimit -n)"
if [[ "$limit" != unlimited ]] && ((SUBS + FD_RESERVE > limit)); then
    fit=$((limit - FD_RESERVE))
    echo "note: the gateway may hold $limit descriptors here; $SUBS subscribers cut to $fit" >&2
    SUBS=$fit
fi

build
start_target
out="${REPORT:-$RESULTS/many-topics-$(server_tag)${TOPICS}t-${SUBS}s-${RATE}-${RUN_TAG:-$(stamp)}.json}"
echo "load average before: $(loadavg)" >&2
"${BENCH_TASKSET[@]}" "$BENCH_BIN" "${TARGET_ARGS[@]}" \
    --transport ws --subscribers "$SUBS" --topics "$TOPICS" --rate "$RATE" \
    --duration "$DURATION" --warmup "$WARMUP" --payload "$PAYLOAD" \
    --label "many-topics" --json-out "$out" "$@"
echo "report: $out" >&2
