#!/usr/bin/env bash
# The test command of the README: every test of the workspace.
# Installs what the tests need when it is missing, then runs them.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Share one target directory between every crate and test.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

# The portal's browser tests drive Debian's Chromium through chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "installing chromium and chromium-driver for the browser tests"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver fonts-wqy-zenhei >/dev/null
fi

# The official Python EventStoreDB client, for the endpoint's compatibility test.
if ! python3 -c "import esdbclient" 2>/dev/null; then
    echo "installing the official Python EventStoreDB client (esdbclient) for the endpoint test"
    python3 -m pip install --quiet --disable-pip-version-check esdbclient==1.1.7
fi

# graphql-js, the reference implementation, for the introspection test
# (tests/tests/limits.rs runs tests/introspection/introspect.mjs with Node).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "installing Node.js and npm for the graphql-js introspection test"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -d tests/introspection/node_modules/graphql ]; then
    echo "installing graphql-js (tests/introspection, pinned in its package-lock.json)"
    npm ci --prefix tests/introspection --no-audit --no-fund --silent
fi

cargo test --workspace --locked "$@"
