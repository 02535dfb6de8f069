# Shared helpers for the bench scripts (sourced, not run).
# Starts target/release/switchboard on a free loopback port and stops it;
# start_target / stop_target do the same for SERVER=switchboard|pushpin|nchan
# (Pushpin 1.36 and nginx + Nchan from Debian's packages, each with its own
# config in a temporary directory, on free loopback ports).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# SERVER_BIN / BENCH_BIN override the binaries (e.g. a gateway built elsewhere).
SERVER_BIN="${SERVER_BIN:-$ROOT/target/release/switchboard}"
BENCH_BIN="${BENCH_BIN:-$ROOT/target/release/switchboard-bench}"
RESULTS="$ROOT/bench/results"
mkdir -p "$RESULTS"

# As many open files as allowed: each connection is one on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Optional pinning (PIN=1): server on CPU 0, load generator on CPU 1.
SERVER_TASKSET=()
BENCH_TASKSET=()
if [[ "${PIN:-0}" == 1 ]] && command -v taskset >/dev/null; then
    SERVER_TASKSET=(taskset -c "${SERVER_CPUS:-0}")
    BENCH_TASKSET=(taskset -c "${BENCH_CPUS:-1}")
fi

build() {
    if [[ "${BUILD:-auto}" == 1 || ! -x "$SERVER_BIN" || ! -x "$BENCH_BIN" ]]; then
        (cd "$ROOT" && cargo build --release -p switchboard -p switchboard-bench)
    fi
}

# await_address VAR NAME PID LOG REGEX STOP: sets VAR to the first match of
# REGEX in LOG once the process PID has written it (within 10 s). Returns 1
# if PID exits first (LOG goes to stderr), or, after running STOP, if it
# never writes one.
await_address() {
    local var="$1" name="$2" pid="$3" log="$4" re="$5" stop="$6" i
    for i in $(seq 1 100); do
        printf -v "$var" '%s' "$(grep -o "$re" "$log" | head -n1 || true)"
        [[ -n "${!var}" ]] && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name exited at start:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "$name did not report its address within 10 s" >&2
    "$stop"
    return 1
}

# end_process PID TENTHS: SIGTERM, up to TENTHS tenths of a second to exit,
# then SIGKILL; reaps it.
end_process() {
    local pid="$1" tenths="$2" i
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 "$tenths"); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

SERVER_PID=""
SERVER_URL=""
SERVER_LOG=""

# start_server [extra serve flags...]: sets SERVER_PID and SERVER_URL.
start_server() {
    SERVER_LOG="$(mktemp /tmp/switchboard-bench-server.XXXXXX)"
    SWITCHBOARD_LOG="${SWITCHBOARD_LOG:-warn}" "${SERVER_TASKSET[@]}" "$SERVER_BIN" serve --listen 127.0.0.1:0 "$@" >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    await_address SERVER_URL switchboard "$SERVER_PID" "$SERVER_LOG" \
        'http://127\.0\.0\.1:[0-9]*' stop_server || return 1
    echo "switchboard pid $SERVER_PID at $SERVER_URL" >&2
}

stop_server() {
    if [[ -n "$SERVER_PID" ]] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
        local rc=0
        wait "$SERVER_PID" 2>/dev/null || rc=$?
        echo "switchboard (pid $SERVER_PID) had exited on its own (status $rc); its log ends:" >&2
        tail -n 20 "$SERVER_LOG" >&2 || true
    elif [[ -n "$SERVER_PID" ]]; then
        end_process "$SERVER_PID" 100
    fi
    SERVER_PID=""
    [[ -n "$SERVER_LOG" ]] && rm -f "$SERVER_LOG"
    SERVER_LOG=""
}
# SERVER: the gateway the scenario scripts drive (bench/README.md).
SERVER="${SERVER:-switchboard}"
case "$SERVER" in
    switchboard | pushpin | nchan) ;;
    *)
        echo "SERVER must be switchboard, pushpin or nchan (not '$SERVER')" >&2
        exit 2
        ;;
esac
PUSHPIN_BIN="${PUSHPIN_BIN:-pushpin}"
NGINX_BIN="${NGINX_BIN:-nginx}"
NCHAN_MODULE="${NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}"
# Log levels of the others while measured: warnings only, like SWITCHBOARD_LOG=warn.
PUSHPIN_LOG_LEVEL="${PUSHPIN_LOG_LEVEL:-1}"
NGINX_ERROR_LOG_LEVEL="${NGINX_ERROR_LOG_LEVEL:-warn}"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# http_ok URL: true if a GET answers 200 within 2 s.
http_ok() {
    python3 - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

# tcp_open PORT: true if 127.0.0.1:PORT accepts a connection.
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# children PID: the pids whose parent is PID, comma separated.
children() {
    local f pids=""
    for f in /proc/[0-9]*/stat; do
        local st
        st="$(cat "$f" 2>/dev/null)" || continue
        # Fields after the command name (which may hold spaces): state ppid ...
        local rest="${st##*) }"
        local ppid
        ppid="$(cut -d' ' -f2 <<<"$rest")"
        if [[ "$ppid" == "$1" ]]; then
            local pid="${f#/proc/}"
            pids="${pids:+$pids,}${pid%/stat}"
        fi
    done
    echo "$pids"
}

# await_group PGID NAME TRIES CHECK LOG...: runs CHECK (a command) every
# 0.1 s, at most TRIES times, while the process group PGID lives; 0 once
# CHECK succeeds. Otherwise says why and shows the end of each LOG.
await_group() {
    local pgid="$1" name="$2" tries="$3" check="$4" i
    shift 4
    for i in $(seq 1 "$tries"); do
        if ! kill -0 "$pgid" 2>/dev/null; then
            echo "$name exited at start:" >&2
            tail -n 20 "$@" >&2 || true
            return 1
        fi
        "$check" && return 0
        sleep 0.1
    done
    echo "$name did not answer within $((tries / 10)) s" >&2
    tail -n 20 "$@" >&2 || true
    return 1
}

# check_group PID NAME: waits (up to 2 s) until PID, just started as
# `setsid CMD &`, leads its own process group (setsid ran and did not fork).
check_group() {
    local st rest pgid="" i
    for i in $(seq 1 40); do
        st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0 # exited: the caller reports it
        rest="${st##*) }"
        pgid="$(cut -d' ' -f3 <<<"$rest")"
        [[ "$pgid" == "$1" ]] && return 0
        sleep 0.05
    done
    echo "$2 (pid $1) is not a process group leader (group $pgid); not starting" >&2
    kill -TERM "$1" 2>/dev/null || true
    return 1
}

# stop_group PGID NAME: TERM the process group we started, then KILL it.
stop_group() {
    local pgid="$1" name="$2" i
    kill -TERM -- "-$pgid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        kill -0 -- "-$pgid" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "$name did not stop within 10 s; killing it" >&2
    kill -KILL -- "-$pgid" 2>/dev/null || true
}

# Pushpin: the runner (`pushpin --config`) with condure, zurl, pushpin-proxy
# and pushpin-handler, in a process group of its own, in front of
# bench/grip_origin.py. Sets SERVER_URL (clients), PUBLISH_URL (the
# handler's HTTP publish port), SERVER_PIDS (runner and its children),
# ORIGIN_PID.
PUSHPIN_PGID=""
PUSHPIN_DIR=""
ORIGIN_PID=""
start_pushpin() {
    PUSHPIN_DIR="$(mktemp -d /tmp/switchboard-bench-pushpin.XXXXXX)"
    local d="$PUSHPIN_DIR" http_port pub_port origin_port i
    mkdir -p "$d/run" "$d/log"
    "${SERVER_TASKSET[@]}" python3 "$ROOT/bench/grip_origin.py" --port 0 \
        --port-file "$d/origin.port" >"$d/log/origin.log" 2>&1 &
    ORIGIN_PID=$!
    for i in $(seq 1 100); do
        [[ -s "$d/origin.port" ]] && break
        kill -0 "$ORIGIN_PID" 2>/dev/null || { cat "$d/log/origin.log" >&2; return 1; }
        sleep 0.1
    done
    origin_port="$(cat "$d/origin.port")"
    http_port="$(free_port)"
    pub_port="$(free_port)"
    # The packaged internal.conf points the proxy at a system zurl; ours is
    # started by the runner in our own rundir.
    sed -e 's#ipc:///var/run/zurl/zurl-in-stream#ipc://{rundir}/{ipc_prefix}zurl-in-stream#' \
        -e 's#ipc:///var/run/zurl/zurl-in#ipc://{rundir}/{ipc_prefix}zurl-in#' \
        -e 's#ipc:///var/run/zurl/zurl-out#ipc://{rundir}/{ipc_prefix}zurl-out#' \
        /usr/lib/pushpin/internal.conf >"$d/internal.conf"
    # From /etc/pushpin/pushpin.conf: zmq specs on ipc in our rundir instead
    # of fixed tcp ports; message_rate/message_hwm (2500/s, 25000: a cap on
    # deliveries per second, past which Pushpin queues, then drops) raised
    # out of the way so they don't cap fanout.
    cat >"$d/pushpin.conf" <<EOF
[global]
include=$d/internal.conf
rundir=$d/run
ipc_prefix=pushpin-
port_offset=0
stats_connection_ttl=120

[runner]
services=condure,zurl,pushpin-proxy,pushpin-handler
http_port=127.0.0.1:$http_port
logdir=$d/log
log_level=$PUSHPIN_LOG_LEVEL
client_buffer_size=8192
client_maxconn=50000
condure_bin=condure
zurl_bin=zurl

[proxy]
routesfile=routes
debug=false
auto_cross_origin=false
accept_x_forwarded_protocol=false
set_x_forwarded_protocol=proto-only
x_forwarded_for=
x_forwarded_for_trusted=
orig_headers_need_mark=
accept_pushpin_route=false
log_from=false
log_user_agent=false
sig_iss=pushpin
sig_key=changeme
upstream_key=
updates_check=off
organization_name=

[handler]
push_in_spec=ipc://{rundir}/{ipc_prefix}publish-pull
push_in_sub_specs=ipc://{rundir}/{ipc_prefix}publish-sub
push_in_sub_connect=false
push_in_http_addr=127.0.0.1
push_in_http_port=$pub_port
push_in_http_max_headers_size=10000
push_in_http_max_body_size=10000000
stats_spec=ipc://{rundir}/{ipc_prefix}stats
command_spec=ipc://{rundir}/{ipc_prefix}command
message_rate=${PUSHPIN_MESSAGE_RATE:--1}
message_hwm=${PUSHPIN_MESSAGE_HWM:--1}
message_wait=5000
id_cache_ttl=60
connection_subscription_max=20
subscription_linger=60
stats_subscription_ttl=60
stats_report_interval=10
stats_format=tnetstring
EOF
    # WebSocket clients reach the origin as WebSocket-over-HTTP (over_http);
    # plain HTTP (SSE) is proxied as it is.
    echo "* 127.0.0.1:$origin_port,over_http" >"$d/routes"
    # setsid: a process group of its own, which stop_pushpin ends whole.
    "${SERVER_TASKSET[@]}" setsid "$PUSHPIN_BIN" --config "$d/pushpin.conf" >"$d/log/runner.log" 2>&1 &
    PUSHPIN_PGID=$!
    check_group "$PUSHPIN_PGID" pushpin || return 1
    SERVER_URL="http://127.0.0.1:$http_port"
    PUBLISH_URL="http://127.0.0.1:$pub_port"
    pushpin_up() { tcp_open "$pub_port" && http_ok "$SERVER_URL/health"; }
    await_group "$PUSHPIN_PGID" pushpin 150 pushpin_up "$d"/log/*.log || return 1
    SERVER_PIDS="$PUSHPIN_PGID,$(children "$PUSHPIN_PGID")"
    echo "pushpin $("$PUSHPIN_BIN" --version 2>/dev/null | head -n1) pids $SERVER_PIDS at $SERVER_URL (publish $PUBLISH_URL), origin pid $ORIGIN_PID; dir $d" >&2
}

stop_pushpin() {
    if [[ -n "$PUSHPIN_PGID" ]]; then
        if ! kill -0 "$PUSHPIN_PGID" 2>/dev/null; then
            echo "pushpin (pid $PUSHPIN_PGID) had exited on its own; its logs end:" >&2
            tail -n 10 "$PUSHPIN_DIR"/log/*.log >&2 || true
        fi
        stop_group "$PUSHPIN_PGID" pushpin
        wait "$PUSHPIN_PGID" 2>/dev/null || true
    fi
    if [[ -n "$ORIGIN_PID" ]]; then
        kill -TERM "$ORIGIN_PID" 2>/dev/null || true
        wait "$ORIGIN_PID" 2>/dev/null || true
    fi
    if [[ -n "$PUSHPIN_DIR" && "${KEEP:-0}" != 1 ]]; then
        rm -rf "$PUSHPIN_DIR"
    fi
    PUSHPIN_PGID=""
    ORIGIN_PID=""
    PUSHPIN_DIR=""
}

# Nchan: nginx (master + NGINX_WORKERS workers, default 1) with the Nchan
# module, `daemon off` in a process group of its own, `-p DIR -c DIR/nginx.conf`.
# Sets SERVER_URL, PUBLISH_URL (the same), SERVER_PIDS (master and workers).
NCHAN_PGID=""
NCHAN_DIR=""
start_nchan() {
    NCHAN_DIR="$(mktemp -d /tmp/switchboard-bench-nchan.XXXXXX)"
    local d="$NCHAN_DIR" port nofile i
    mkdir -p "$d/logs" "$d/tmp"
    port="$(free_port)"
    nofile="$(ulimit -n)"
    cat >"$d/nginx.conf" <<EOF
load_module $NCHAN_MODULE;
daemon off;
master_process on;
worker_processes ${NGINX_WORKERS:-1};
worker_rlimit_nofile $nofile;
pid $d/nginx.pid;
error_log $d/logs/error.log $NGINX_ERROR_LOG_LEVEL;
events {
    worker_connections $((nofile - 64));
    multi_accept on;
}
http {
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    # The publisher's one keep-alive connection lasts the whole run.
    keepalive_requests 1000000000;
    keepalive_timeout 3600s;
    client_body_buffer_size 64k;
    nchan_shared_memory_size 256m;
    server {
        listen 127.0.0.1:$port backlog=4096;
        location = /health { return 200 "ok\n"; }
        # /sub/bench/0: WebSocket or EventSource (by the request's headers).
        location ~ ^/sub/(.+)\$ {
            nchan_subscriber websocket eventsource;
            nchan_channel_id \$1;
            # Only what is published after connecting, as with the others.
            nchan_subscriber_first_message newest;
        }
        location ~ ^/pub/(.+)\$ {
            nchan_publisher;
            nchan_channel_id \$1;
            nchan_message_buffer_length 16;
            nchan_message_timeout 60s;
        }
    }
}
EOF
    if [[ "$nofile" -lt 15100 ]]; then
        echo "warning: open files limit $nofile is under 15,100; nginx cannot hold 15,000 connections" >&2
    fi
    "${SERVER_TASKSET[@]}" setsid "$NGINX_BIN" -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf" >"$d/logs/stderr.log" 2>&1 &
    NCHAN_PGID=$!
    check_group "$NCHAN_PGID" nginx || return 1
    SERVER_URL="http://127.0.0.1:$port"
    PUBLISH_URL="$SERVER_URL"
    nchan_up() { http_ok "$SERVER_URL/health"; }
    await_group "$NCHAN_PGID" nginx 100 nchan_up "$d/logs/stderr.log" "$d/logs/error.log" || return 1
    local workers=""
    for i in $(seq 1 50); do
        workers="$(children "$NCHAN_PGID")"
        [[ $(tr ',' '\n' <<<"$workers" | grep -c .) -ge ${NGINX_WORKERS:-1} ]] && break
        sleep 0.1
    done
    SERVER_PIDS="$NCHAN_PGID${workers:+,$workers}"
    echo "$("$NGINX_BIN" -v 2>&1 | head -n1) + nchan, pids $SERVER_PIDS at $SERVER_URL; dir $d" >&2
}

stop_nchan() {
    if [[ -n "$NCHAN_PGID" ]]; then
        if ! kill -0 "$NCHAN_PGID" 2>/dev/null; then
            echo "nginx (pid $NCHAN_PGID) had exited on its own; its log ends:" >&2
            tail -n 10 "$NCHAN_DIR/logs/error.log" >&2 || true
        fi
        # TERM: nginx's fast shutdown (QUIT would wait for every subscriber).
        stop_group "$NCHAN_PGID" nginx
        wait "$NCHAN_PGID" 2>/dev/null || true
    fi
    if [[ -n "$NCHAN_DIR" && "${KEEP:-0}" != 1 ]]; then
        rm -rf "$NCHAN_DIR"
    fi
    NCHAN_PGID=""
    NCHAN_DIR=""
}

# start_target [switchboard serve flags...]: starts $SERVER and sets
# SERVER_URL, SERVER_PIDS and TARGET_ARGS, the switchboard-bench
# flags that point at it (--url, --server-pid with all its pids, and for the
# others --server, --publish-url, --origin-pid).
TARGET_ARGS=()
SERVER_PIDS=""
start_target() {
    case "$SERVER" in
        switchboard)
            start_server "$@"
            SERVER_PIDS="$SERVER_PID"
            TARGET_ARGS=(--url "$SERVER_URL" --server-pid "$SERVER_PID")
            ;;
        pushpin)
            start_pushpin
            # Pushpin's proxy queues at most 100 requests towards zurl (a
            # fixed zmq high-water mark) and answers 502 past that: connect
            # bursts stay under it (--connect-concurrency still wins).
            export BENCH_CONNECT_CONCURRENCY="${BENCH_CONNECT_CONCURRENCY:-64}"
            TARGET_ARGS=(--server pushpin --url "$SERVER_URL" --publish-url "$PUBLISH_URL"
                --server-pid "$SERVER_PIDS" --origin-pid "$ORIGIN_PID")
            ;;
        nchan)
            start_nchan
            TARGET_ARGS=(--server nchan --url "$SERVER_URL" --server-pid "$SERVER_PIDS")
            ;;
    esac
}

stop_target() {
    case "$SERVER" in
        switchboard) stop_server ;;
        pushpin) stop_pushpin ;;
        nchan) stop_nchan ;;
    esac
}

# target_alive: every process of the running target is still there.
target_alive() {
    local p
    [[ -n "$SERVER_PIDS" ]] || return 1
    for p in ${SERVER_PIDS//,/ }; do
        kill -0 "$p" 2>/dev/null || return 1
    done
}

# Tag for report names: empty for Switchboard (names as before), else "nchan-".
server_tag() { [[ "$SERVER" == switchboard ]] || printf '%s-' "$SERVER"; }

stop_all() {
    stop_server
    stop_pushpin
    stop_nchan
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# json_field FILE KEY: a number or string from the report's flat "summary".
json_field() {
    grep -o "\"$2\": *[^,}]*" "$1" | head -n1 | sed -e 's/^[^:]*: *//' -e 's/"//g'
}

stamp() { date -u +%Y%m%dT%H%M%SZ; }

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
