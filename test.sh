#!/usr/bin/env bash
# Run ferry's tests against real servers (started and stopped by the tests).
#
#   ./test.sh          install the test servers if missing (needs root), then cargo test
#   ./test.sh fuzz     run the stable-Rust fuzzers for FUZZ_SECONDS (default 60) each
#
# FERRY_SKIP_INSTALL=1 skips the install step.
set -euo pipefail
cd "$(dirname "$0")"

if [ "${FERRY_SKIP_INSTALL:-0}" != 1 ]; then
    if [ "$(id -u)" = 0 ]; then
        bash .ci/install-servers.sh
    else
        echo "test.sh: not root, skipping server install (run 'sudo .ci/install-servers.sh' once)"
    fi
fi

case "${1:-}" in
fuzz)
    secs="${FUZZ_SECONDS:-60}"
    cargo run --release --manifest-path crates/ferry-rdb/fuzz/Cargo.toml --bin fuzz_rdb -- --seconds "$secs"
    cargo run --release --manifest-path crates/ferry-resp/fuzz/Cargo.toml --bin fuzz_resp -- --seconds "$secs"
    ;;
"")
    cargo test --workspace
    ;;
*)
    echo "usage: ./test.sh [fuzz]" >&2
    exit 2
    ;;
esac
