#!/usr/bin/env bash
# Sets up and runs Parley on the embedded default: the web UI at /, SQLite in ./data, mail written
# as files into ./data/mail (unless PARLEY_SMTP_URL is set). Every PARLEY_* variable of the README
# applies.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
scripts/build-ui.sh
cargo build --release -p parley-server
exec "${CARGO_TARGET_DIR:-target}/release/parley-server" serve
