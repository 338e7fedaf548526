#!/usr/bin/env bash
# The test command of the README: every test of the workspace.
# Installs what the tests need when it is missing, then runs them.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Share one target directory between every crate and test.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

cargo test --workspace --locked "$@"
