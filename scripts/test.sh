#!/usr/bin/env bash
# Runs the whole test suite, the same steps locally and in CI (.ci/run):
# installs what is missing, then fmt, clippy, tests, doctests and docs.
# Stops at the first failing step.
#
# Needs a Debian machine with the Rust toolchain. Set SKIP_INSTALL=1 to
# install nothing (missing tools then make their step fail, except
# cargo-nextest, for which `cargo test` stands in).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# nats-server installs to /usr/sbin, which is not on every user's PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

step() {
    printf '\n==> %s\n' "$*"
}

# as_root
source scripts/lib.sh

install_missing() {
    # Command -> Debian package. php-cli serves the test lambdas;
    # nats-server and redis-server are the shared brokers' tests (with TLS too).
    local missing=()
    command -v php >/dev/null 2>&1 || missing+=(php-cli)
    command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    # The TLS tests make their CA and certificates with the openssl command.
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    # The SDK tests' packages (the list of scripts/test-sdk.sh), in the same
    # install so that apt-get update runs once.
    if [ -x scripts/test-sdk.sh ]; then
        [ -x /usr/bin/chromium ] || missing+=(chromium)
        command -v python3 >/dev/null 2>&1 || missing+=(python3)
        command -v node >/dev/null 2>&1 || missing+=(nodejs)
        command -v npm >/dev/null 2>&1 || missing+=(npm)
    fi
    # kosoku (the Autobahn cases, tests/autobahn.rs) goes into a virtualenv
    # when python3 lacks it: Debian splits ensurepip out into python3-venv
    # (which brings python3 along).
    python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
    if [ "${#missing[@]}" -gt 0 ]; then
        step "Installing ${missing[*]}"
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends "${missing[@]}"
    fi
    if [ -x scripts/test-sdk.sh ]; then
        step "SDK test tools (scripts/test-sdk.sh)"
        scripts/test-sdk.sh
    fi
    step "Autobahn cases (kosoku, for tests/autobahn.rs)"
    scripts/autobahn.sh --install

    if command -v rustup >/dev/null 2>&1; then
        if ! cargo fmt --version >/dev/null 2>&1; then
            step "Installing rustfmt"
            rustup component add rustfmt
        fi
        if ! cargo clippy --version >/dev/null 2>&1; then
            step "Installing clippy"
            rustup component add clippy
        fi
    fi

    if ! cargo nextest --version >/dev/null 2>&1; then
        step "Installing cargo-nextest"
        cargo install cargo-nextest --locked \
            || echo "cargo-nextest did not install; the tests will run with cargo test" >&2
    fi
}

if [ "${SKIP_INSTALL:-0}" != "1" ]; then
    install_missing
fi

step "Format (cargo fmt --check)"
cargo fmt --all -- --check

step "Lint (cargo clippy, warnings denied)"
cargo clippy --workspace --all-targets -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
    step "Tests (cargo nextest)"
    cargo nextest run --workspace --no-fail-fast
else
    step "Tests (cargo test; cargo-nextest is not installed)"
    cargo test --workspace
fi

step "Bench helper tests (bench/test_grip_origin.py)"
python3 bench/test_grip_origin.py

step "Doctests"
cargo test --workspace --doc

step "Docs (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

step "All checks passed"
