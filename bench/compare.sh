#!/usr/bin/env bash
# One scenario against Switchboard, Pushpin and Nchan in turn, each on a
# fresh server, then a side-by-side table (bench/compare_table.py): the
# ratios BENCHMARKS.md shows. See bench/README.md for what is comparable.
#
#   bench/compare.sh idle [N]        # bench/idle.sh N (default 15,000) per server
#   bench/compare.sh fanout          # bench/fanout.sh (SUBS, RATE, DURATION, ...)
#   bench/compare.sh ramp            # bench/fanout_ramp.sh (SUBS, RATES, ...)
#   SERVERS="switchboard nchan" bench/compare.sh fanout
#   TRANSPORT=sse bench/compare.sh fanout
#
# Extra arguments after the scenario (and N for idle) go to switchboard-bench.
# Each run is bounded (the load generator's watchdog, bounded server starts);
# reports land in bench/results/ with one tag per comparison, and the table
# is saved next to them (compare-<scenario>-<tag>.txt).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
SCENARIO="${1:-fanout}"
shift || true
case "$SCENARIO" in
    idle | fanout | ramp) ;;
    *)
        echo "usage: bench/compare.sh idle [N] | fanout | ramp [switchboard-bench args...]" >&2
        exit 2
        ;;
esac
N=""
if [[ "$SCENARIO" == idle ]]; then
    N="${N:-15000}"
    if [[ $# -gt 0 && "$1" != -* ]]; then
        N="$1"
        shift
    fi
fi
SERVERS="${SERVERS:-switchboard pushpin nchan}"
export RUN_TAG="${RUN_TAG:-compare-$(date -u +%Y%m%dT%H%M%SZ)}"
RESULTS="$HERE/results"
mkdir -p "$RESULTS"

# Build once, up front, not inside the first server's run.
if [[ "${BUILD:-auto}" == 1 || ! -x "$HERE/../target/release/switchboard" || ! -x "$HERE/../target/release/switchboard-bench" ]]; then
    (cd "$HERE/.." && cargo build --release -p switchboard -p switchboard-bench)
fi

failed=()
for server in $SERVERS; do
    echo "=== $SCENARIO: $server (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    rc=0
    case "$SCENARIO" in
        idle) SERVER="$server" BUILD=0 bash "$HERE/idle.sh" "$N" "$@" || rc=$? ;;
        fanout) SERVER="$server" BUILD=0 bash "$HERE/fanout.sh" "$@" || rc=$? ;;
        ramp) SERVER="$server" BUILD=0 bash "$HERE/fanout_ramp.sh" "$@" || rc=$? ;;
    esac
    if [[ $rc -ne 0 ]]; then
        echo "=== $server: the $SCENARIO run failed (status $rc)" >&2
        failed+=("$server")
    fi
done

table="$RESULTS/compare-$SCENARIO-$RUN_TAG.txt"
python3 "$HERE/compare_table.py" "$SCENARIO" "$RESULTS" "$RUN_TAG" | tee "$table"
echo "table: $table" >&2
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
