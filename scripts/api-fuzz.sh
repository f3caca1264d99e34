#!/usr/bin/env bash
# Fuzzes the REST API from its own OpenAPI document with schemathesis: a real server (SQLite, open
# signup, rate limits raised so that the fuzzer reaches the handlers), a session for the
# authenticated routes. Every check runs but two: `positive_data_acceptance` (business rules such
# as "no chat with yourself" refuse schema-valid data by design) and `negative_data_rejection`
# (schemathesis 4.32 reported a request *without* the parameter it claimed to have made invalid).
# What the issue asks stays checked: no 5xx, every status documented, every body as documented.
#
#   scripts/api-fuzz.sh            bounded run, fixed seed (what CI runs)
#   EXAMPLES=2000 SEED= scripts/api-fuzz.sh   a long run with a random seed
set -euo pipefail
cd "$(dirname "$0")/.."

examples="${EXAMPLES:-40}"
seed="${SEED-20261126}"
schemathesis_version="4.32.5"

if ! st --version 2>/dev/null | grep -q "$schemathesis_version"; then
    echo "api-fuzz: installing schemathesis $schemathesis_version (pip)"
    python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version"
fi

target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --quiet -p parley-server --locked
server="$target_dir/debug/parley-server"

data_dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
generous=100000
env PARLEY_BIND="127.0.0.1:$port" PARLEY_DATA_DIR="$data_dir" PARLEY_SIGNUP=open PARLEY_LOG=warn \
    PARLEY_RATE_LIMITS__SIGNUP_PER_IP=$generous PARLEY_RATE_LIMITS__SIGNUP_PER_EMAIL=$generous \
    PARLEY_RATE_LIMITS__LOGIN_PER_IP=$generous PARLEY_RATE_LIMITS__LOGIN_PER_EMAIL=$generous \
    PARLEY_RATE_LIMITS__VERIFY_PER_IP=$generous PARLEY_RATE_LIMITS__RESEND_PER_IP=$generous \
    PARLEY_RATE_LIMITS__NEW_CHAT_PER_USER=$generous \
    "$server" >"$data_dir/server.log" 2>&1 &
server_pid=$!
trap 'kill $server_pid 2>/dev/null || true; rm -rf "$data_dir"' EXIT
for _ in $(seq 1 100); do
    curl -fs "$base/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done

signup() {
    curl -fs -X POST -H 'content-type: application/json' \
        -d "{\"email\":\"$1\",\"password\":\"a good password\",\"display_name\":\"$2\"}" "$base/api/v1/auth/signup"
}
token=$(signup fuzz@example.org Fuzz | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
# Someone to start chats with, so that the chat routes get past "no such user".
signup friend@example.org Friend >/dev/null

seed_args=()
[ -n "$seed" ] && seed_args=(--seed "$seed")
# Routes that end the fuzzer's own session (deleting the account too) are left out: after them
# every call would be a 401.
st run "$base/api/v1/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks all --exclude-checks positive_data_acceptance,negative_data_rejection \
    --max-examples "$examples" "${seed_args[@]}" \
    --exclude-path /api/v1/auth/logout \
    --exclude-path /api/v1/me/password \
    --exclude-path /api/v1/sessions/others \
    --exclude-path-regex '^/api/v1/sessions/\{id\}$' \
    --exclude-operation-id delete_me \
    --no-color
if grep -q "panicked" "$data_dir/server.log"; then
    echo "api-fuzz: the server panicked:" >&2
    grep -A5 panicked "$data_dir/server.log" >&2
    exit 1
fi
curl -fs "$base/healthz" >/dev/null || { echo "api-fuzz: the server is not healthy after the run" >&2; exit 1; }
echo "api-fuzz: passed"
