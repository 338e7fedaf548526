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

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

# PostgreSQL on 127.0.0.1:5432 with trust authentication, for the vault's
# tests (each creates and drops a database of its own). A server already
# answering is left alone.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    if ! command -v pg_ctlcluster >/dev/null; then
        echo "installing PostgreSQL for the vault tests"
        $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
    fi
    PG_VERSION="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
    if [ -z "$PG_VERSION" ]; then
        echo "PostgreSQL is installed but has no cluster under /etc/postgresql" >&2
        exit 1
    fi
    PG_HBA="/etc/postgresql/$PG_VERSION/main/pg_hba.conf"
    if ! $SUDO grep -q "^host all all 127.0.0.1/32 trust" "$PG_HBA"; then
        # First match wins: trust for loopback TCP goes before the rest.
        $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$PG_HBA"
    fi
    echo "starting PostgreSQL $PG_VERSION on 127.0.0.1:5432"
    $SUDO pg_ctlcluster "$PG_VERSION" main start || $SUDO pg_ctlcluster "$PG_VERSION" main reload
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    pg_isready -h 127.0.0.1 -p 5432
    psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
        || psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE test"
fi

# NATS with JetStream on 127.0.0.1:4222 (for the event bus to come). A
# server already answering is left alone.
nats_up() { (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; }
if ! nats_up; then
    if ! command -v nats-server >/dev/null; then
        echo "installing nats-server"
        $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >/dev/null
    fi
    echo "starting nats-server -js on 127.0.0.1:4222"
    NATS_DIR="${TMPDIR:-/tmp}/tongban-nats"
    mkdir -p "$NATS_DIR"
    nohup nats-server -js -a 127.0.0.1 -p 4222 -sd "$NATS_DIR" >"$NATS_DIR/nats.log" 2>&1 &
    for _ in $(seq 1 30); do nats_up && break; sleep 0.5; done
    nats_up || { echo "nats-server did not start; see $NATS_DIR/nats.log" >&2; exit 1; }
fi

# graphql-js, the reference implementation, for the introspection test
# (tests/tests/limits.rs runs tests/introspection/introspect.mjs with Node).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "installing Node.js and npm for the graphql-js introspection test"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -d tests/introspection/node_modules/graphql ]; then
    echo "installing graphql-js (tests/introspection, pinned in its package-lock.json)"
    npm ci --prefix tests/introspection --no-audit --no-fund --silent
fi

cargo test --workspace --locked "$@"
