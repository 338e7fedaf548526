#!/usr/bin/env bash
# kill -9 under concurrent HTTP writes, 20 rounds (the test suite runs 3):
# the real `tongban` binary is killed mid-flight and restarted on the same
# data directory; every acknowledged write must be readable afterwards and
# the hash chain intact. Prints acknowledged and lost counts per round.
#
#   TONGBAN_KILL_ROUNDS=20   rounds (default 20)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export TONGBAN_KILL_ROUNDS="${TONGBAN_KILL_ROUNDS:-20}"
cargo test -p tongban-e2e --locked --test health_code_flow \
    every_acknowledged_write_survives_kill_nine_under_concurrent_writers -- --nocapture
