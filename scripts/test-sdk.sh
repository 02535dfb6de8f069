#!/usr/bin/env bash
# Installs what the SDK tests need when it is missing, so that
# `cargo nextest run` can run them (crates/switchboard/tests/sdk_php.rs,
# sdk_python.rs, browser.rs):
#   php-cli      the PHP SDK's tests and the example lambda (php -S)
#   chromium     headless browser for sdk/js's end-to-end test (/usr/bin/chromium)
#   python3      the Python helper's tests
#   node modules playwright-core, from sdk/js/test/package-lock.json (npm ci);
#                it drives Debian's chromium and never downloads a browser
# Idempotent and quiet: installs nothing when everything is there; runs
# apt-get update at most once. Needs root (or sudo) only to install packages.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# as_root
source scripts/lib.sh

missing=()
command -v php >/dev/null 2>&1 || missing+=(php-cli)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ "${#missing[@]}" -gt 0 ]; then
    echo "test-sdk: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# playwright-core needs Node.js 20 or later.
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
    echo "test-sdk: Node.js $(node --version) is too old for playwright-core (needs >= 20)" >&2
    exit 1
fi

# npm ci when the modules are missing or older than the lock file.
js_test=sdk/js/test
stamp="$js_test/node_modules/.package-lock.json"
if [ ! -d "$js_test/node_modules/playwright-core" ] || [ "$js_test/package-lock.json" -nt "$stamp" ]; then
    echo "test-sdk: npm ci in $js_test"
    # Browsers come from Debian: never let an install step fetch one.
    (cd "$js_test" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
