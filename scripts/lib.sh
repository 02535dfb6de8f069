# Shared by scripts/test.sh and scripts/test-sdk.sh (sourced, not run).

# Runs a command as root: directly, or through sudo when we are not root.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "$(basename "$0"): need root (or sudo) to run: $*" >&2
        return 1
    fi
}
