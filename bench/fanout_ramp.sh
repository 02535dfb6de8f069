#!/usr/bin/env bash
# Fanout at a rising rate: one topic, SUBS WebSocket subscribers (default
# 2,000), RATES msg/s in turn (default 100 200 400 800 1600 3200), DURATION s
# each (default 15), on one fresh server (SERVER=switchboard|pushpin|nchan);
# stops after the first step whose
# verdict is "lagging" (deliveries/s under 95% of offered, >0.1% lost, a stream
# closed by the server (slow_consumer), or
# p99 over 1 s). The max sustained deliveries/s is the last "ok" step.
source "$(dirname "$0")/lib.sh"

SUBS="${SUBS:-2000}"
RATES="${RATES:-100 200 400 800 1600 3200}"
DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-3}"
TRANSPORT="${TRANSPORT:-ws}"

build
start_target
run="${RUN_TAG:-$(stamp)}"
summary="${SUMMARY:-$RESULTS/fanout-ramp-$(server_tag)$TRANSPORT-$SUBS-$run.tsv}"
printf 'rate\tdeliv/s\toffered/s\tsrv_us/deliv\tgen_us/deliv\tsrv_cpu%%\tp50_us\tp99_us\tmax_us\tlost\tclosed\tloadavg\tverdict\n' | tee "$summary"
for rate in $RATES; do
    out="$RESULTS/fanout-ramp-$(server_tag)$TRANSPORT-${SUBS}x${rate}-$run.json"
    "${BENCH_TASKSET[@]}" "$BENCH_BIN" "${TARGET_ARGS[@]}" \
        --transport "$TRANSPORT" --subscribers "$SUBS" --rate "$rate" \
        --duration "$DURATION" --warmup "$WARMUP" --label "fanout-ramp" \
        --json-out "$out" "$@" >/dev/null
    f() { json_field "$out" "$1"; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rate" "$(f deliveries_per_sec)" \
        "$(f offered_deliveries_per_sec)" "$(f server_cpu_us_per_delivery)" \
        "$(f loadgen_cpu_us_per_delivery)" "$(f server_cpu_percent)" "$(f p50_us)" "$(f p99_us)" \
        "$(f max_us)" "$(f lost)" "$(f streams_closed)" "$(loadavg | tr ' ' ,)" "$(f verdict)" | tee -a "$summary"
    if ! target_alive; then
        echo "the server died" >&2
        exit 1
    fi
    [[ "$(f verdict)" == ok ]] || break
done
echo "summary: $summary" >&2
