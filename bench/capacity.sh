#!/usr/bin/env bash
# Capacity micro-benchmark: the CPU cost of each stream capability per
# operation on this machine (GCRA check, dedup check, batch push, timer arm +
# fire, direct-delivery encode, lambda event encode, lambda round trips
# through a minimal local lambda with and without batching). Builds and runs
# `capacity` (crates/bench/src/bin/capacity/main.rs) in release mode and prints a
# table; docs/capacity.md explains how to use the figures.
#
#   bench/capacity.sh                 # full run (about a minute)
#   bench/capacity.sh --quick         # smoke run, noisier
#   bench/capacity.sh --json          # JSON rows instead of the table
#   PIN=1 bench/capacity.sh           # on one CPU (BENCH_CPUS, default 1)
#
# Writes a copy of the table to bench/results/capacity-<stamp>.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RESULTS="$ROOT/bench/results"
mkdir -p "$RESULTS"

(cd "$ROOT" && cargo build --release -q -p switchboard-bench --bin capacity)

TASKSET=()
if [[ "${PIN:-0}" == 1 ]] && command -v taskset >/dev/null; then
    TASKSET=(taskset -c "${BENCH_CPUS:-1}")
fi

out="$RESULTS/capacity-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
    echo "# $(uname -srm), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    "${TASKSET[@]}" "$ROOT/target/release/capacity" "$@"
} | tee "$out"
echo "report: $out" >&2
