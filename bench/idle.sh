#!/usr/bin/env bash
# Idle connections: N WebSocket connections (default 10,000), then N SSE
# connections, each against a fresh target/release/switchboard (or SERVER=
# pushpin|nchan); reports the server's RSS per connection (VmRSS of all its
# processes after connecting minus before, / N).
#
#   bench/idle.sh            # 10,000 of each
#   SERVER=nchan bench/idle.sh 15000
#   bench/idle.sh 15000      # past 15,000 the load generator uses worker processes
#   HOLD=30 bench/idle.sh    # seconds to hold the connections (default 10)
source "$(dirname "$0")/lib.sh"

N="${N:-10000}"
if [[ $# -gt 0 && "$1" != -* ]]; then
    N="$1"
    shift
fi
HOLD="${HOLD:-10}"
TRANSPORTS="${TRANSPORTS:-ws sse}"

build
run="${RUN_TAG:-$(stamp)}"
for transport in $TRANSPORTS; do
    start_target
    out="$RESULTS/idle-$(server_tag)$transport-$N-$run.json"
    echo "== idle $SERVER $transport x$N (load average $(loadavg))" >&2
    "${BENCH_TASKSET[@]}" "$BENCH_BIN" "${TARGET_ARGS[@]}" \
        --transport "$transport" --subscribers "$N" --idle --duration "$HOLD" \
        --label "idle" --json-out "$out" "$@"
    echo "idle $(server_tag)$transport: $(json_field "$out" connected) connections, $(json_field "$out" rss_per_conn_kib) KiB server RSS each; report: $out"
    stop_target
done
