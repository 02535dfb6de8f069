#!/usr/bin/env bash
# The lambda path: SUBS WebSocket subscribers (default 2,000) on one topic,
# each stream opened through target/release/mini_lambda (accept + subscribe
# deliver=lambda), RATES msg/s in turn (default 5 10 25), so every message
# becomes SUBS `message` events to the lambda and SUBS pushes back. Three
# modes, each on a fresh gateway (MODES, default all three):
#
#   direct   app `pubsub` (no lambda): the baseline at the same load
#   batch    app `bench`, batching on (max_batch MAX_BATCH, default 100;
#            batch_window_us BATCH_WINDOW_US, default 500: the defaults)
#   nobatch  app `bench`, max_batch = 1: one event per lambda request
#
# Two shapes of load (SHAPE, default fanout):
#
#   fanout   one topic: each message is SUBS events to the lambda at once
#            (a burst; the p50 event waits behind half the burst)
#   spread   one topic per subscriber, RATES msg/s on each (the same events/s
#            in all): events reach the lambda as a steady flow, so the added
#            latency is the lambda round trip and the batching around it
#
# Per step: deliveries/s, events/s and requests/s through the lambda (the
# gateway's switchboard_app_lambda_events / lambda_calls over the measured
# window), events per request, mean lambda request time, latency
# percentiles (publish -> lambda -> client), and the added p50 (this mode's
# p50 minus direct's at the same rate). Target (issue): >= 50,000 events/s
# through a minimal lambda with batching, under 1 ms added p50.
#
#   bench/lambda.sh                                  # 2,000 subs x 5, 10, 25 msg/s
#   SUBS=200 RATES=5 DURATION=10 bench/lambda.sh     # a small run
#   MODES="direct batch" PIN=1 bench/lambda.sh       # gateway on CPU 0, the rest on CPU 1
#
# The app is defined in a generated config file, not with `--app`: an
# `--app NAME=URL` flag replaces the file's table for NAME with defaults.
# Writes each step's JSON report and a TSV summary to bench/results/.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_lambda.sh"

SUBS="${SUBS:-2000}"
RATES="${RATES:-5 10 25}"
DURATION="${DURATION:-20}"
WARMUP="${WARMUP:-5}"
MODES="${MODES:-direct batch nobatch}"
SHAPE="${SHAPE:-fanout}"
case "$SHAPE" in
    fanout) TOPICS=1 ;;
    spread) TOPICS="$SUBS" ;;
    *) echo "unknown SHAPE $SHAPE (fanout, spread)" >&2; exit 2 ;;
esac
MAX_BATCH="${MAX_BATCH:-100}"
BATCH_WINDOW_US="${BATCH_WINDOW_US:-500}"
SETTLE=2
TICK_PCT="$(awk -v t="$(getconf CLK_TCK)" 'BEGIN { print 100 / t }')"

build
build_lambda
start_lambda
run="$(stamp)"
cfg="$(mktemp /tmp/switchboard-bench-lambda-cfg.XXXXXX)"
samples="$(mktemp /tmp/switchboard-bench-lambda-samples.XXXXXX)"
trap 'stop_sampler; stop_lambda; stop_server; rm -f "$cfg" "$samples"' EXIT

summary="$RESULTS/lambda-$SHAPE-$SUBS-$run.tsv"
printf 'mode\trate\tdeliv/s\toffered/s\tlambda_ev/s\tlambda_req/s\tev/req\treq_us\tp50_us\tp90_us\tp99_us\tadded_p50_us\tsrv_cpu%%\tlambda_cpu%%\tlost\tverdict\n' | tee "$summary"
declare -A direct_p50=()
for mode in $MODES; do
    case "$mode" in
        direct) app=pubsub batch=$MAX_BATCH ;;
        batch) app=bench batch=$MAX_BATCH ;;
        nobatch) app=bench batch=1 ;;
        *) echo "unknown mode $mode (direct, batch, nobatch)" >&2; exit 2 ;;
    esac
    cat >"$cfg" <<EOF
[apps.pubsub]
lambda = "direct"
# Beside a lambda app a direct app names what it may read: here, all.
topics = ["*"]

[apps.bench]
lambda = "$LAMBDA_URL"
max_batch = $batch
batch_window_us = $BATCH_WINDOW_US
EOF
    start_server --config "$cfg"
    for rate in $RATES; do
        out="$RESULTS/lambda-$SHAPE-$mode-${SUBS}x${rate}-$run.json"
        : >"$samples"
        start_sampler "$samples" "$SERVER_URL" bench "$SERVER_PID" "$LAMBDA_PID"
        "${BENCH_TASKSET[@]}" "$BENCH_BIN" --url "$SERVER_URL" --server-pid "$SERVER_PID" \
            --app "$app" --subscribers "$SUBS" --topics "$TOPICS" --rate "$((rate * TOPICS))" \
            --duration "$DURATION" --warmup "$WARMUP" --settle "$SETTLE" \
            --label "lambda-$SHAPE-$mode" --json-out "$out" "$@" >&2 || true
        stop_sampler
        if [[ ! -s "$out" ]]; then
            echo "no report for $mode at $rate msg/s" >&2
            continue
        fi
        f() { json_field "$out" "$1"; }
        # The measured window, from the report: start of run + connect + settle
        # + 0.1 s + warmup; a quarter second in from each end.
        from="$(awk -v s="$(f started_unix_ms)" -v c="$(f seconds)" -v st="$SETTLE" -v w="$WARMUP" \
            'BEGIN { printf "%d", s + (c + st + 0.1 + w) * 1000 + 250 }')"
        to=$((from + ${DURATION%.*} * 1000 - 500))
        ev="$(window_rate "$samples" "$from" "$to" lambda_events)"
        calls="$(window_rate "$samples" "$from" "$to" lambda_calls)"
        dcalls="$(window_delta "$samples" "$from" "$to" lambda_calls)"
        dmicros="$(window_delta "$samples" "$from" "$to" lambda_micros)"
        lcpu="$(window_rate "$samples" "$from" "$to" "cpu_$LAMBDA_PID" "$TICK_PCT")"
        p50="$(f p50_us)"
        added="-"
        if [[ "$mode" == direct ]]; then
            direct_p50[$rate]="$p50"
        elif [[ -n "${direct_p50[$rate]:-}" && -n "$p50" && "$p50" != null ]]; then
            added=$((p50 - direct_p50[$rate]))
        fi
        [[ "$mode" == direct ]] && ev="-" calls="-" lcpu="${lcpu:-0}"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$rate" \
            "$(f deliveries_per_sec)" "$(f offered_deliveries_per_sec)" "${ev:--}" "${calls:--}" \
            "$(ratio "$ev" "$calls")" "$(ratio "$dmicros" "$dcalls" 0)" "$p50" \
            "$(grep -o '"p90": *[0-9]*' "$out" | head -n1 | sed 's/.*: *//')" "$(f p99_us)" \
            "$added" "$(f server_cpu_percent)" "${lcpu:--}" "$(f lost)" "$(f verdict)" | tee -a "$summary"
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "the gateway died" >&2
            exit 1
        fi
    done
    stop_server
done
echo "target: >= 50000 lambda events/s with batching at < 1000 us added p50" >&2
echo "summary: $summary" >&2
