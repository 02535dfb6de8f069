#!/usr/bin/env bash
# Fanout across NODES gateway processes (default 3) sharing a broker (NATS
# with JetStream, then Redis), behind a load balancer (HAProxy, or nginx with
# LB=nginx) that spreads the subscribers over the nodes. The publisher's
# keep-alive connection lands on one node, so about (NODES-1)/NODES of the
# deliveries cross the broker. Brokers, nodes and the balancer run on free
# loopback ports and are stopped at the end. Prints the bench table per
# broker; writes JSON reports to bench/results/scale-<broker>-*.json.
#
#   bench/scale.sh                          # 3 nodes, 3,000 WS subscribers, 50 msg/s, 20 s
#   BROKERS=redis SUBS=6000 bench/scale.sh  # one broker; env overrides
#   LB=nginx bench/scale.sh                 # nginx instead of HAProxy
#   bench/scale.sh --payload 200            # extra args go to switchboard-bench
#   MODE=idle SUBS=45000 bench/scale.sh     # most connections: SUBS/NODES idle
#                                           # subscribers straight to each node
#
# Needs nats-server, redis-server and haproxy (or nginx):
#   apt-get install -y nats-server redis-server haproxy
# The configs written for the balancers are the ones docs/scaling.md shows.
# Server RSS/CPU in the report are those of node 1 (`--server-pid`).
source "$(dirname "$0")/lib.sh"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

BROKERS="${BROKERS:-nats redis}"
NODES="${NODES:-3}"
LB="${LB:-haproxy}"
SUBS="${SUBS:-3000}"
RATE="${RATE:-50}"
DURATION="${DURATION:-20}"
WARMUP="${WARMUP:-5}"
TOPICS="${TOPICS:-1}"
TRANSPORT="${TRANSPORT:-ws}"
MODE="${MODE:-fanout}"

[[ "$MODE" == idle ]] && LB=true
for tool in nats-server redis-server "$LB"; do
    command -v "$tool" >/dev/null || { echo "bench/scale.sh: $tool is not installed" >&2; exit 1; }
done

WORK="$(mktemp -d /tmp/switchboard-scale.XXXXXX)"
PIDS=()

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL: until it answers 200 (20 s).
wait_http() {
    local i
    for i in $(seq 1 200); do
        [[ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" == 200 ]] && return 0
        sleep 0.1
    done
    echo "no 200 from $1 within 20 s; logs:" >&2
    tail -n 5 "$WORK"/*.log >&2 || true
    return 1
}

# cpu_ticks PID: user + system clock ticks so far.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# cpu_report NAME=PID... with TICKS0 from cpu_start: % of a core over the run.
cpu_start() {
    CPU_T0="$(date +%s.%N)"
    TICKS0=()
    local np
    for np in "$@"; do TICKS0+=("$(cpu_ticks "${np#*=}")"); done
}
cpu_report() {
    local secs hz=$(getconf CLK_TCK) i=0 np line="CPU over the run (% of a core):"
    secs="$(awk -v a="$(date +%s.%N)" -v b="$CPU_T0" 'BEGIN {print a - b}')"
    for np in "$@"; do
        line+=" ${np%%=*} $(awk -v t1="$(cpu_ticks "${np#*=}")" -v t0="${TICKS0[$i]}" -v hz="$hz" -v s="$secs" 'BEGIN {printf "%.1f", (t1 - t0) * 100 / hz / s}')"
        i=$((i + 1))
    done
    echo "  $line" >&2
}

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    PIDS=()
}
trap 'cleanup; stop_server; rm -rf "$WORK"' EXIT

start_broker() { # kind -> BROKER_URL
    local port
    port="$(free_port)"
    case "$1" in
        nats)
            mkdir -p "$WORK/nats"
            nats-server -js -a 127.0.0.1 -p "$port" -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
            BROKER_URL="nats://127.0.0.1:$port"
            ;;
        redis)
            redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
                --dir "$WORK" >"$WORK/redis.log" 2>&1 &
            BROKER_URL="redis://127.0.0.1:$port"
            ;;
    esac
    PIDS+=($!)
    BROKER_PID=$!
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$1 did not start" >&2
    return 1
}

start_nodes() { # -> NODE_PORTS, NODE_PIDS
    NODE_PORTS=()
    NODE_PIDS=()
    local n port
    for n in $(seq 1 "$NODES"); do
        port="$(free_port)"
        SWITCHBOARD_LOG="${SWITCHBOARD_LOG:-warn}" "${SERVER_TASKSET[@]}" "$SERVER_BIN" serve \
            --listen "127.0.0.1:$port" --broker "$BROKER_URL" >"$WORK/node$n.log" 2>&1 &
        PIDS+=($!)
        NODE_PIDS+=($!)
        NODE_PORTS+=("$port")
    done
    for port in "${NODE_PORTS[@]}"; do wait_http "http://127.0.0.1:$port/readyz"; done
}

start_lb() { # -> LB_URL
    local port servers="" upstreams="" n=0 p
    port="$(free_port)"
    # Each proxied connection is two descriptors.
    local maxconn=$(( $(ulimit -n) / 2 - 100 ))
    for p in "${NODE_PORTS[@]}"; do
        n=$((n + 1))
        servers+="    server node$n 127.0.0.1:$p check"$'\n'
        upstreams+="    server 127.0.0.1:$p max_fails=2 fail_timeout=5s;"$'\n'
    done
    case "$LB" in
        haproxy)
            cat >"$WORK/haproxy.cfg" <<EOF
global
    maxconn $maxconn
defaults
    mode http
    timeout connect 5s
    timeout client 90s
    timeout server 90s
    timeout tunnel 1h
    timeout http-keep-alive 10s
    option forwardfor
frontend switchboard
    bind 127.0.0.1:$port
    default_backend nodes
backend nodes
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
$servers
EOF
            haproxy -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
            ;;
        nginx)
            mkdir -p "$WORK/nginx"
            cat >"$WORK/nginx.conf" <<EOF
# One process, so that the CPU figure covers it (a deployment keeps the master).
master_process off;
worker_processes 1;
worker_rlimit_nofile $(ulimit -n);
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
daemon off;
events { worker_connections $maxconn; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx;
    proxy_temp_path $WORK/nginx;
    map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }
    upstream switchboard {
        least_conn;
$upstreams        keepalive 64;
    }
    server {
        listen 127.0.0.1:$port;
        proxy_http_version 1.1;
        proxy_set_header Host \$host;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        location /v1/ws {
            proxy_pass http://switchboard;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }
        location /v1/sse/ {
            proxy_pass http://switchboard;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 1h;
        }
        location / {
            proxy_pass http://switchboard;
            proxy_set_header Connection "";
        }
    }
}
EOF
            nginx -c "$WORK/nginx.conf" -p "$WORK/nginx" >"$WORK/nginx.log" 2>&1 &
            ;;
        *) echo "LB must be haproxy or nginx" >&2; return 1 ;;
    esac
    PIDS+=($!)
    LB_PID=$!
    LB_URL="http://127.0.0.1:$port"
    wait_http "$LB_URL/readyz"
}

build
echo "# $(uname -srm), $(nproc) CPUs; $NODES nodes behind $LB; load average $(loadavg)" >&2
run_fanout() {
    start_lb
    local out="$RESULTS/scale-$broker-$TRANSPORT-${SUBS}x${RATE}-$(stamp).json" n watched=()
    for n in $(seq 1 "$NODES"); do watched+=("node$n=${NODE_PIDS[$((n - 1))]}"); done
    watched+=("$broker=$BROKER_PID" "$LB=$LB_PID")
    cpu_start "${watched[@]}"
    "${BENCH_TASKSET[@]}" "$BENCH_BIN" --url "$LB_URL" --server-pid "${NODE_PIDS[0]}" \
        --transport "$TRANSPORT" --subscribers "$SUBS" --topics "$TOPICS" --rate "$RATE" \
        --duration "$DURATION" --warmup "$WARMUP" --label "scale-$broker-$NODES-nodes" \
        --json-out "$out" "$@"
    cpu_report "${watched[@]}"
    echo "report: $out" >&2
}

# Idle connections straight to each node (no balancer: its descriptors
# would be the limit), one load generator per node, all at once.
run_idle() {
    local n pids=() per=$((SUBS / NODES)) total=0 ok
    for n in $(seq 1 "$NODES"); do
        "$BENCH_BIN" --idle --url "http://127.0.0.1:${NODE_PORTS[$((n - 1))]}" \
            --server-pid "${NODE_PIDS[$((n - 1))]}" --transport "$TRANSPORT" \
            --subscribers "$per" --duration "$DURATION" --topics "$TOPICS" \
            --label "scale-idle-$broker-node$n" \
            --json-out "$RESULTS/scale-idle-$broker-node$n-$(stamp).json" "$@" \
            >"$WORK/idle$n.out" 2>&1 &
        pids+=($!)
    done
    for n in $(seq 1 "$NODES"); do
        wait "${pids[$((n - 1))]}" || true
        ok="$(grep -m1 -oE 'connected +[0-9]+ ok' "$WORK/idle$n.out" | grep -oE '[0-9]+' || echo 0)"
        echo "  node$n: $(grep -E 'connected|RSS per connection|verdict' "$WORK/idle$n.out" | tr -s ' ' | paste -sd';')" >&2
        total=$((total + ok))
    done
    echo "  connections held over $NODES nodes: $total of $SUBS" >&2
}

build
echo "# $(uname -srm), $(nproc) CPUs; $NODES nodes; $MODE; load average $(loadavg)" >&2
for broker in $BROKERS; do
    echo "== $broker: $SUBS $TRANSPORT subscribers over $NODES nodes, $RATE msg/s on $TOPICS topic(s)" >&2
    start_broker "$broker"
    start_nodes
    if [[ "$MODE" == idle ]]; then
        run_idle "$@"
    else
        run_fanout "$@"
    fi
    for n in $(seq 1 "$NODES"); do
        grep -E "WARN|ERROR" "$WORK/node$n.log" | tail -n 3 | sed "s/^/node$n: /" >&2 || true
    done
    cleanup
done
