# Helpers for the scenarios with a lambda (sourced after lib.sh): start and
# stop target/release/mini_lambda, read the gateway's per-app counters, and
# sample them over a run.

if [[ "${SERVER:-switchboard}" != switchboard ]]; then
    echo "the lambda and timer scenarios run against Switchboard only (SERVER=$SERVER)" >&2
    exit 2
fi

LAMBDA_BIN="${LAMBDA_BIN:-$ROOT/target/release/mini_lambda}"
TIMER_BIN="${TIMER_BIN:-$ROOT/target/release/timer_load}"

LAMBDA_TASKSET=()
if [[ "${PIN:-0}" == 1 ]] && command -v taskset >/dev/null; then
    LAMBDA_TASKSET=(taskset -c "${LAMBDA_CPUS:-${BENCH_CPUS:-1}}")
fi

build_lambda() {
    if [[ "${BUILD:-auto}" == 1 || ! -x "$LAMBDA_BIN" || ! -x "$TIMER_BIN" ]]; then
        (cd "$ROOT" && cargo build --release -p switchboard-bench)
    fi
}

LAMBDA_PID=""
LAMBDA_URL=""
LAMBDA_LOG=""

# start_lambda [extra mini_lambda flags...]: sets LAMBDA_PID and LAMBDA_URL
# (http://127.0.0.1:PORT/).
start_lambda() {
    LAMBDA_LOG="$(mktemp /tmp/switchboard-bench-lambda.XXXXXX)"
    "${LAMBDA_TASKSET[@]}" "$LAMBDA_BIN" --listen 127.0.0.1:0 "$@" >"$LAMBDA_LOG" 2>&1 &
    LAMBDA_PID=$!
    await_address LAMBDA_URL mini_lambda "$LAMBDA_PID" "$LAMBDA_LOG" \
        'http://127\.0\.0\.1:[0-9]*/' stop_lambda || return 1
    echo "mini_lambda pid $LAMBDA_PID at $LAMBDA_URL" >&2
}

stop_lambda() {
    if [[ -n "$LAMBDA_PID" ]]; then
        end_process "$LAMBDA_PID" 50
    fi
    LAMBDA_PID=""
    [[ -n "$LAMBDA_LOG" ]] && rm -f "$LAMBDA_LOG"
    LAMBDA_LOG=""
}

SAMPLER_PID=""
stop_sampler() {
    if [[ -n "$SAMPLER_PID" ]]; then
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
    fi
    SAMPLER_PID=""
}

trap 'stop_sampler; stop_lambda; stop_server' EXIT

# cpu_ticks PID: utime + stime of PID in clock ticks (0 if gone).
cpu_ticks() {
    local s
    s="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo 0; return; }
    # Fields after the command name (which ends at the last ')').
    s="${s##*) }"
    awk '{ print $12 + $13 }' <<<"$s"
}

# app_counters URL APP: one line `lambda_events=N lambda_calls=N ...` from
# the gateway's /metrics (switchboard_app_<name>{app="APP"}).
app_counters() {
    curl -s --max-time 2 "$1/metrics" | awk -v app="$2" '
        $1 ~ "^switchboard_app_[a-z_]+[{]app=\"" app "\"[}]$" {
            name = $1; sub(/^switchboard_app_/, "", name); sub(/[{].*/, "", name)
            printf "%s=%s ", name, $2
        }
        END { print "" }'
}

# start_sampler FILE URL APP PID...: every 0.5 s appends
# `<unix ms> <counters of APP> cpu_<pid>=<ticks>...` to FILE until stop_sampler.
start_sampler() {
    local file="$1" url="$2" app="$3"
    shift 3
    local pids=("$@")
    (
        while :; do
            local line p
            line="$(date +%s%3N) $(app_counters "$url" "$app")"
            for p in "${pids[@]}"; do
                line+="cpu_$p=$(cpu_ticks "$p") "
            done
            echo "$line" >>"$file"
            sleep 0.5
        done
    ) &
    SAMPLER_PID=$!
}

# window_rate FILE FROM_MS TO_MS KEY [SCALE]: the rate per second of counter
# KEY between the first sample at or after FROM_MS and the last at or
# before TO_MS, times SCALE (default 1). Empty if fewer than two samples.
window_rate() {
    awk -v from="$2" -v to="$3" -v key="$4" -v scale="${5:-1}" '
        function val(   i, kv) {
            for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == key) return kv[2] + 0 }
            return ""
        }
        $1 >= from && $1 <= to { v = val(); if (v == "") next; if (t0 == "") { t0 = $1; v0 = v } t1 = $1; v1 = v }
        END { if (t0 != "" && t1 > t0) printf "%.1f\n", (v1 - v0) * scale * 1000 / (t1 - t0) }' "$1"
}

# window_delta FILE FROM_MS TO_MS KEY: the counter's increase over the same samples.
window_delta() {
    awk -v from="$2" -v to="$3" -v key="$4" '
        function val(   i, kv) {
            for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == key) return kv[2] + 0 }
            return ""
        }
        $1 >= from && $1 <= to { v = val(); if (v == "") next; if (c == 0) v0 = v; v1 = v; c++ }
        END { if (c >= 2) print v1 - v0 }' "$1"
}

# ratio A B [PLACES]: A / B, or empty.
ratio() {
    awk -v a="$1" -v b="$2" -v p="${3:-1}" 'BEGIN { if (a != "" && b != "" && b + 0 != 0) printf "%.*f\n", p, a / b }'
}
