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

# The browser tests drive Debian's Chromium through chromedriver, against the built web UI.
if ! command -v chromedriver >/dev/null 2>&1 || ! [ -x /usr/bin/chromium ]; then
    echo "test: installing chromium and chromium-driver (apt-get)"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium chromium-driver
fi
# The cluster tests (server/tests/cluster) run Debian's nginx and private redis-servers, beside the
# shared Redis at PARLEY_TEST_REDIS_URL.
if ! command -v redis-server >/dev/null 2>&1 || ! [ -x /usr/sbin/nginx ]; then
    echo "test: installing nginx and redis-server (apt-get)"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq nginx redis-server
fi
export PARLEY_TEST_REDIS_URL="${PARLEY_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
redis_hostport="${PARLEY_TEST_REDIS_URL#*://}"; redis_hostport="${redis_hostport##*@}"; redis_hostport="${redis_hostport%%/*}"
if ! (exec 3<>"/dev/tcp/${redis_hostport%:*}/${redis_hostport##*:}") 2>/dev/null; then
    echo "test: no Redis at $redis_hostport; start one (redis-server --daemonize yes) or set PARLEY_TEST_REDIS_URL" >&2
    exit 1
fi
# The desktop app (src-tauri) links WebKitGTK, so every workspace build needs its libraries. Its
# test runs the app in Xvfb with a D-Bus session of its own, driven by tauri-driver through
# WebKitWebDriver; notification-daemon only makes the notifications visible in its screenshots.
desktop_apt=()
pkg-config --exists webkit2gtk-4.1 libsoup-3.0 2>/dev/null \
    || desktop_apt+=(libwebkit2gtk-4.1-dev libgtk-3-dev libsoup-3.0-dev librsvg2-dev)
for tool in xvfb-run:xvfb dbus-run-session:dbus-daemon dbus-monitor:dbus-bin xwininfo:x11-utils \
    WebKitWebDriver:webkit2gtk-driver; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || desktop_apt+=("${tool##*:}")
done
[ -x /usr/lib/notification-daemon/notification-daemon ] || desktop_apt+=(notification-daemon)
if ((${#desktop_apt[@]})); then
    echo "test: installing ${desktop_apt[*]} (apt-get)"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${desktop_apt[@]}"
fi
command -v tauri-driver >/dev/null 2>&1 || cargo install tauri-driver --locked
scripts/build-ui.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p parley-ui --target wasm32-unknown-unknown --locked -- -D warnings
cargo test --workspace --locked
# The REST API against its own OpenAPI document (schemathesis, bounded, fixed seed).
scripts/api-fuzz.sh
