#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit tests and the integration tests, which start
# real servers on SQLite and on the Postgres at PARLEY_TEST_POSTGRES_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

export PARLEY_TEST_POSTGRES_URL="${PARLEY_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
pg_hostport="${PARLEY_TEST_POSTGRES_URL#*@}"; pg_hostport="${pg_hostport%%/*}"
if ! (exec 3<>"/dev/tcp/${pg_hostport%:*}/${pg_hostport##*:}") 2>/dev/null; then
    echo "test: no Postgres at $pg_hostport; start one or set PARLEY_TEST_POSTGRES_URL" >&2
    exit 1
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
