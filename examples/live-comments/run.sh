#!/usr/bin/env bash
# Starts the live-comments example: the PHP lambda (php -S), the page's
# server (php -S) and the gateway, then prints the page's URL. Ctrl-C stops all.
#
#   examples/live-comments/run.sh
#
# Env: GATEWAY_PORT (8080), LAMBDA_PORT (9000), WEB_PORT (8081),
#      LIVE_COMMENTS_DATA (a fresh temp dir), SWITCHBOARD_BIN (cargo build's),
#      BROKER (memory; e.g. redis://127.0.0.1:6379 once the gateway has it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
GATEWAY_PORT="${GATEWAY_PORT:-8080}"
LAMBDA_PORT="${LAMBDA_PORT:-9000}"
WEB_PORT="${WEB_PORT:-8081}"
BROKER="${BROKER:-memory}"
export LIVE_COMMENTS_DATA="${LIVE_COMMENTS_DATA:-$(mktemp -d -t live-comments.XXXXXX)}"

command -v php >/dev/null || { echo "run.sh: php is missing: apt-get install -y php-cli" >&2; exit 1; }
if [[ -z "${SWITCHBOARD_BIN:-}" ]]; then
  echo "building the gateway (cargo build -p switchboard)..."
  (cd "$root" && cargo build -q -p switchboard)
  SWITCHBOARD_BIN="$root/target/debug/switchboard"
fi

# Each server runs in its own process group (setsid), so that stopping it
# also stops php -S's workers.
pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

wait_port() { # port name
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "run.sh: $2 did not start on port $1" >&2
  exit 1
}

# The lambda: every request goes to lambda/index.php. Workers let php -S
# answer concurrent calls (the gateway batches, but several batches fly at once).
PHP_CLI_SERVER_WORKERS=4 setsid php -d display_errors=stderr -S "127.0.0.1:$LAMBDA_PORT" "$here/lambda/index.php" \
  > >(sed -u -E '/ (Accepted|Closing)$|speculative preconnection$/d; s/^/[lambda] /') 2>&1 &
pids+=($!)
wait_port "$LAMBDA_PORT" "the lambda (php -S)"

# The page: public/, /switchboard.js from sdk/js, /api/recent for refetches.
setsid php -S "127.0.0.1:$WEB_PORT" -t "$here/public" "$here/web.php" > /dev/null 2>&1 &
pids+=($!)
wait_port "$WEB_PORT" "the page server (php -S)"

setsid "$SWITCHBOARD_BIN" serve --listen "127.0.0.1:$GATEWAY_PORT" --broker "$BROKER" \
  --app "live_comments=http://127.0.0.1:$LAMBDA_PORT/index.php" \
  --allowed-origins "http://127.0.0.1:$WEB_PORT" &
pids+=($!)
wait_port "$GATEWAY_PORT" "the gateway"

url="http://127.0.0.1:$WEB_PORT/?gateway=http://127.0.0.1:$GATEWAY_PORT&video=1234"
cat <<MSG

  Live comments is running.
    page:    $url
             (open it twice, e.g. add &lang=fr&user=ann to one: both see every comment)
    gateway: http://127.0.0.1:$GATEWAY_PORT   (app live_comments, broker $BROKER)
    lambda:  http://127.0.0.1:$LAMBDA_PORT/index.php
    data:    $LIVE_COMMENTS_DATA
  Publish as the product's backend would:
    $SWITCHBOARD_BIN publish --url http://127.0.0.1:$GATEWAY_PORT live_video_comment/1234 '{"id":"x1","user":"backend","text":"hello everyone","at":0}'
  Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
