#!/usr/bin/env bash
# Bounded soak: a real gateway (target/release/switchboard) and a real PHP
# lambda (crates/switchboard/tests/php/delivery.php) under connect/disconnect
# churn, publishes and lambda calls for SOAK_MINUTES (default 20), sampling
# the gateway's RSS every SAMPLE_S seconds (default 10) into a CSV; prints
# the first, last and largest RSS and the growth after warm-up.
#
#   bench/soak.sh                     # 20 minutes
#   SOAK_MINUTES=2 bench/soak.sh      # a quick check
#
# Load (all on loopback, all bounded by the run's deadline):
#   - STABLE (50) long-lived WebSocket streams on the lambda app, each
#     following one of 10 topics, sending a client message every ~5 s;
#   - churn: CHURN (20) connections at a time, each living 0.2-2 s, mixing
#     WebSocket on the lambda app, WebSocket on a direct app and SSE, closed
#     cleanly or dropped abruptly;
#   - a publisher at RATE (50) messages/s over the 10 topics, so every
#     message is also a lambda call per stream that follows its topic.
# Needs: php-cli, python3 with `websockets` (pip install websockets).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SOAK_MINUTES="${SOAK_MINUTES:-20}"
SAMPLE_S="${SAMPLE_S:-10}"
STABLE="${STABLE:-50}"
CHURN="${CHURN:-20}"
RATE="${RATE:-50}"
SERVER_BIN="${SERVER_BIN:-$ROOT/target/release/switchboard}"
RESULTS="$ROOT/bench/results"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
CSV="${CSV:-$RESULTS/soak-$STAMP.csv}"
mkdir -p "$RESULTS"

command -v php >/dev/null || { echo "soak: php is not installed (apt-get install -y php-cli)" >&2; exit 2; }
python3 -c 'import websockets' 2>/dev/null || { echo "soak: python3 websockets missing (pip install websockets)" >&2; exit 2; }
if [[ "${BUILD:-auto}" == 1 || ! -x "$SERVER_BIN" ]]; then
    (cd "$ROOT" && cargo build --release -p switchboard)
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK="$(mktemp -d /tmp/switchboard-soak.XXXXXX)"
PHP_PID=""
SERVER_PID=""
CLIENT_PID=""
cleanup() {
    for pid in "$CLIENT_PID" "$SERVER_PID" "$PHP_PID"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    sleep 0.5
    for pid in "$CLIENT_PID" "$SERVER_PID" "$PHP_PID"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# The lambda.
PHP_PORT="$(free_port)"
php -S "127.0.0.1:$PHP_PORT" "$ROOT/crates/switchboard/tests/php/delivery.php" >"$WORK/php.log" 2>&1 &
PHP_PID=$!
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PHP_PORT") 2>/dev/null && break
    sleep 0.1
done

# The gateway.
cat >"$WORK/switchboard.toml" <<EOF
log = "warn"
[limits]
keepalive_ms = 5000
[apps.soak]
lambda = "http://127.0.0.1:$PHP_PORT/"
[apps.pubsub]
lambda = "direct"
topics = ["soak/*"]
EOF
"$SERVER_BIN" serve --listen 127.0.0.1:0 --config "$WORK/switchboard.toml" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
URL=""
for _ in $(seq 1 100); do
    URL="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$WORK/server.log" | head -n1 || true)"
    [[ -n "$URL" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.1
done
[[ -n "$URL" ]] || { echo "soak: the gateway printed no address" >&2; exit 1; }
echo "soak: gateway pid $SERVER_PID at $URL, lambda on :$PHP_PORT, $SOAK_MINUTES min, CSV $CSV" >&2

# The load, in Python (asyncio + websockets); it stops by itself.
cat >"$WORK/load.py" <<'PY'
import asyncio, json, os, random, sys, time, urllib.request
import websockets

URL = os.environ["URL"]
HOST, PORT = URL.removeprefix("http://").split(":")
WS = f"ws://{HOST}:{PORT}"
DEADLINE = time.monotonic() + float(os.environ["SECONDS"])
STABLE, CHURN, RATE = int(os.environ["STABLE"]), int(os.environ["CHURN"]), float(os.environ["RATE"])
TOPICS = [f"soak/{i}" for i in range(10)]
stats = {"published": 0, "received": 0, "opened": 0, "closed": 0, "errors": 0, "sse": 0}

def left():
    return DEADLINE - time.monotonic()

async def stable(i):
    topic = TOPICS[i % len(TOPICS)]
    while left() > 0:
        try:
            async with websockets.connect(f"{WS}/v1/ws?app=soak&topic={topic}", open_timeout=10) as ws:
                stats["opened"] += 1
                next_send = time.monotonic() + random.uniform(1, 5)
                while left() > 0:
                    try:
                        msg = await asyncio.wait_for(ws.recv(), timeout=min(1.0, max(left(), 0.01)))
                        if '"type":"event"' in msg:
                            stats["received"] += 1
                    except asyncio.TimeoutError:
                        pass
                    if time.monotonic() >= next_send:
                        await ws.send(json.dumps({"type": "send", "stream": "0", "data": {"i": i}}))
                        next_send = time.monotonic() + 5
        except Exception:
            stats["errors"] += 1
            await asyncio.sleep(0.5)

async def sse_once(topic, life):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, int(PORT)), 5)
    writer.write(f"GET /v1/sse/soak?topic={topic} HTTP/1.1\r\nHost: {HOST}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    end = time.monotonic() + life
    try:
        while time.monotonic() < end:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), timeout=max(end - time.monotonic(), 0.01))
            except asyncio.TimeoutError:
                break
            if not chunk:
                break
            stats["received"] += chunk.count(b"\nevent: msg")
    finally:
        writer.close()
    stats["sse"] += 1

async def churner(j):
    while left() > 1:
        life = random.uniform(0.2, 2.0)
        topic = random.choice(TOPICS)
        kind = random.random()
        try:
            if kind < 0.3:
                await sse_once(topic, life)
            else:
                app = "soak" if kind < 0.7 else "pubsub"
                ws = await websockets.connect(f"{WS}/v1/ws?app={app}&topic={topic}", open_timeout=10)
                stats["opened"] += 1
                end = time.monotonic() + life
                while time.monotonic() < end:
                    try:
                        msg = await asyncio.wait_for(ws.recv(), timeout=max(end - time.monotonic(), 0.01))
                        if '"type":"event"' in msg:
                            stats["received"] += 1
                    except asyncio.TimeoutError:
                        break
                if random.random() < 0.5:
                    await ws.close()
                else:
                    ws.transport.abort()  # dropped, no close handshake
                stats["closed"] += 1
        except Exception:
            stats["errors"] += 1
            await asyncio.sleep(0.2)

def post(messages):
    body = json.dumps({"messages": messages}).encode()
    req = urllib.request.Request(f"{URL}/v1/publish", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()

async def publisher():
    n = 0
    tick = 0.2
    per_tick = max(1, round(RATE * tick))
    loop = asyncio.get_running_loop()
    while left() > 0:
        t0 = time.monotonic()
        msgs = [{"topic": random.choice(TOPICS), "data": {"n": n + k, "pad": "x" * random.randint(0, 512)}} for k in range(per_tick)]
        try:
            await loop.run_in_executor(None, post, msgs)
            stats["published"] += per_tick
            n += per_tick
        except Exception:
            stats["errors"] += 1
        await asyncio.sleep(max(0.0, tick - (time.monotonic() - t0)))

async def reporter():
    start = time.monotonic()
    while left() > 0:
        await asyncio.sleep(min(60, max(left(), 0.01)))
        print(f"load: {time.monotonic() - start:6.0f}s {stats}", file=sys.stderr, flush=True)

async def main():
    tasks = [asyncio.create_task(stable(i)) for i in range(STABLE)]
    tasks += [asyncio.create_task(churner(j)) for j in range(CHURN)]
    tasks += [asyncio.create_task(publisher()), asyncio.create_task(reporter())]
    await asyncio.wait(tasks, timeout=left() + 15)
    for t in tasks:
        t.cancel()
    print(json.dumps(stats))

asyncio.run(main())
PY

SECONDS_TOTAL=$((SOAK_MINUTES * 60))
URL="$URL" SECONDS="$SECONDS_TOTAL" STABLE="$STABLE" CHURN="$CHURN" RATE="$RATE" \
    timeout $((SECONDS_TOTAL + 60)) python3 "$WORK/load.py" >"$WORK/load.out" &
CLIENT_PID=$!

metric() {
    curl -s --max-time 5 "$URL/metrics" | awk -v m="$1" '$1 == m { print $2 }' || true
}

echo "elapsed_s,rss_kib,connections,streams_soak,lambda_calls_soak" >"$CSV"
START=$(date +%s)
while kill -0 "$CLIENT_PID" 2>/dev/null; do
    NOW=$(date +%s)
    RSS=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status")
    CONNS=$(metric switchboard_connections)
    STREAMS=$(metric 'switchboard_app_streams{app="soak"}')
    CALLS=$(metric 'switchboard_app_lambda_calls{app="soak"}')
    echo "$((NOW - START)),$RSS,${CONNS:-},${STREAMS:-},${CALLS:-}" >>"$CSV"
    # Sleep in small steps so the end of the load is noticed quickly.
    for _ in $(seq 1 "$SAMPLE_S"); do
        kill -0 "$CLIENT_PID" 2>/dev/null || break
        sleep 1
    done
done
wait "$CLIENT_PID" || true
CLIENT_PID=""
# A last sample once the load is gone: what is kept after churn.
sleep 2
echo "$(( $(date +%s) - START )),$(awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status"),$(metric switchboard_connections),$(metric 'switchboard_app_streams{app="soak"}'),$(metric 'switchboard_app_lambda_calls{app="soak"}')" >>"$CSV"

echo "soak: load totals $(tail -n1 "$WORK/load.out")" >&2
python3 - "$CSV" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
rss = [int(r["rss_kib"]) for r in rows if r["rss_kib"]]
if not rss:
    sys.exit("soak: no samples")
# The last sample is taken after the load; the others under load.
load = rss[:-1] if len(rss) > 1 else rss
q1, half = load[len(load) // 4], load[len(load) // 2]
print(f"soak: {len(rss)} samples; RSS first {rss[0]} KiB, at 1/4 {q1} KiB, at 1/2 {half} KiB, "
      f"last under load {load[-1]} KiB, after the load {rss[-1]} KiB, max {max(rss)} KiB")
for name, base in (("after the first quarter", q1), ("over the second half", half)):
    growth = load[-1] - base
    print(f"soak: growth {name}: {growth:+d} KiB ({100.0 * growth / base:+.1f}%)")
PY
echo "soak: samples in $CSV" >&2
