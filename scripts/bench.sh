#!/usr/bin/env bash
# Runs the load generator's scenarios against a fresh release server on this machine.
#   scripts/bench.sh sqlite|postgres [throughput|catchup|fanout|connections …]
# Runs the named scenarios (all four without names) with the settings of docs/BENCHMARKS.md and
# writes the JSON results into <target>/bench/<backend>-<scenario>.json. Settings can be changed
# with THROUGHPUT_ARGS, CONNECTIONS, SOURCE_IPS; ACCOUNTS (default 400) is how many accounts it
# creates (the scenarios use the first few hundred; more make the tables as large as a real
# server's). PERF=1 records a profile of the (first) server
# during each scenario into <target>/bench/<backend>-<scenario>.perf (`perf report -i …`);
# KEEP_DB=1 keeps the PostgreSQL database for a look afterwards; BENCH_PG_QUERY is appended to
# its URL (say `?options=-c%20plan_cache_mode%3Dforce_generic_plan`); BENCH_BIN=<folder> runs the
# binaries in that folder instead of building (two builds compared back to back). The server's
# /metrics after each scenario go to <target>/bench/<backend>-<scenario>.metrics, and the
# scenario's group commits (batches, mean size, the writers' busy time, and on Postgres how many
# took their chats' members from memory) are printed from them.
# NODES=2 (postgres only) starts that many nodes on one database and one Redis (BENCH_REDIS_URL, default
# redis://127.0.0.1:6379, under a key prefix of the run's own); REDIS=1 puts a single node on
# Redis too. Results are then named <backend>-redis-<N>node-<scenario>.json. With several nodes,
# `connections` runs one load generator per node, each with CONNECTIONS/NODES sockets held
# HOLD_SECS (default 60) after its own measurement, and sums the nodes' sockets and RSS while all
# are open: how 100,000 sockets are held on a machine whose processes may open ~19,900 each.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
backend="${1:?usage: scripts/bench.sh sqlite|postgres [scenario…]}"
shift
target_dir="${CARGO_TARGET_DIR:-target}"
if [ -n "${BENCH_BIN:-}" ]; then
    bin="$BENCH_BIN"
else
    cargo build --release -p parley-server -p parley-load
    bin="$target_dir/release"
fi
out="$target_dir/bench"
mkdir -p "$out"

# Many sockets need many descriptors, on both sides.
ulimit -n 250000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

data="$(mktemp -d)"
# The server picks a free port and says which on its first line of output.
export PARLEY_DATA_DIR="$data" PARLEY_BIND="127.0.0.1:0" PARLEY_SIGNUP=closed PARLEY_LOG=warn \
       PARLEY_RATE_LIMITS__MESSAGES_PER_USER=0 PARLEY_RATE_LIMITS__NEW_CHAT_PER_USER=0 \
       PARLEY_WS_FRAMES_PER_SEC=1000000 PARLEY_WS_QUEUE_LEN=4096
case "$backend" in
    sqlite) unset DATABASE_URL ;;
    postgres)
        db="parley_bench_$$"
        psql -q -h 127.0.0.1 -U postgres -d test -c "CREATE DATABASE $db"
        export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db${BENCH_PG_QUERY:-}"
        ;;
    *) echo "backend: sqlite or postgres" >&2; exit 2 ;;
esac
nodes="${NODES:-1}"
tag="$backend"
unset PARLEY_REDIS_URL
if [ "$nodes" -gt 1 ] || [ "${REDIS:-0}" = 1 ]; then
    [ "$backend" = postgres ] || { echo "several nodes share one database: use postgres" >&2; exit 2; }
    export PARLEY_REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}" PARLEY_REDIS_PREFIX="bench$$:"
    tag="$backend-redis-${nodes}node"
fi
server_pids=()
cleanup() {
    for pid in "${server_pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
    if [ "$backend" = postgres ] && [ "${KEEP_DB:-0}" = 1 ]; then
        echo "kept the database $db"
    elif [ "$backend" = postgres ]; then
        psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS $db" || true
    fi
    rm -rf "$data"
}
trap cleanup EXIT

"$bin/parley-server" admin create-users --count "${ACCOUNTS:-400}" --prefix load --tokens-out "$data/tokens.tsv" >/dev/null
servers=()
urls=()
for n in $(seq 1 "$nodes"); do
    "$bin/parley-server" serve >"$data/server$n.out" &
    server_pids+=($!)
    for _ in $(seq 1 100); do grep -q "running at" "$data/server$n.out" 2>/dev/null && break; sleep 0.1; done
    url=$(sed -n 's/^Parley is running at //p' "$data/server$n.out")
    [ -n "$url" ] || { echo "node $n did not start" >&2; exit 1; }
    servers+=(--server "$url")
    urls+=("$url")
    [ "$n" = 1 ] && first_url="$url"
    echo "node $n: pid ${server_pids[-1]} at $url, idle RSS $(awk '/VmRSS/ {print $2, $3}' "/proc/${server_pids[-1]}/status")"
done
server_pid="${server_pids[0]}"

# CPU seconds used so far by the given processes (utime + stime from /proc/<pid>/stat).
cpu_secs() {
    local ticks=0 pid
    for pid in "$@"; do
        [ -r "/proc/$pid/stat" ] && ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}'
}
database_pids() { [ "$backend" = postgres ] && pgrep -x postgres || true; }
# Context switches so far of the given processes, all their threads: each is a thread that went to
# sleep (voluntary: it waited, to be woken again) or was taken off a core (involuntary).
switches() {
    local pid
    for pid in "$@"; do cat /proc/"$pid"/task/*/status 2>/dev/null; done |
        awk '/^voluntary_ctxt_switches/ {v += $2} /^nonvoluntary_ctxt_switches/ {n += $2} END {printf "%d %d", v, n}'
}

load() {
    local name="$1"; shift
    local perf_pid=""
    if [ "${PERF:-0}" = 1 ]; then
        perf record -q -F 999 -g -p "$server_pid" -o "$out/$tag-$name.perf" 2>/dev/null &
        perf_pid=$!
    fi
    local server_cpu database_cpu started_ns server_written
    server_written=$(awk '/^wchar/ {print $2}' "/proc/$server_pid/io")
    server_cpu=$(cpu_secs "${server_pids[@]}")
    # shellcheck disable=SC2046
    database_cpu=$(cpu_secs $(database_pids))
    local server_switches database_switches
    server_switches=$(switches "${server_pids[@]}")
    # shellcheck disable=SC2046
    database_switches=$(switches $(database_pids))
    started_ns=$(date +%s%N)
    local TIMEFORMAT="load generator: %U s user + %S s system CPU"
    time "$bin/parley-load" "${servers[@]}" --tokens "$data/tokens.tsv" \
        --json "$out/$tag-$name.json" "$@"
    # Backends that connected during the run count in full; ones that exited are missed.
    # shellcheck disable=SC2046
    awk -v s0="$server_cpu" -v s1="$(cpu_secs "${server_pids[@]}")" \
        -v d0="$database_cpu" -v d1="$(cpu_secs $(database_pids))" \
        -v ns="$(( $(date +%s%N) - started_ns ))" \
        -v w="$(( $(awk '/^wchar/ {print $2}' "/proc/$server_pid/io") - server_written ))" \
        'BEGIN {printf "server: %.2f s CPU, database: %.2f s CPU, in %.2f s; the server wrote %.1f MiB\n",
                s1 - s0, d1 - d0, ns / 1e9, w / 1048576}'
    # shellcheck disable=SC2046
    awk -v s0="$server_switches" -v s1="$(switches "${server_pids[@]}")" \
        -v d0="$database_switches" -v d1="$(switches $(database_pids))" \
        'BEGIN {split(s0, a); split(s1, b); split(d0, c); split(d1, d)
                printf "context switches, voluntary / involuntary: server %d / %d, database %d / %d\n",
                       b[1] - a[1], b[2] - a[2], d[1] - c[1], d[2] - c[2]}'
    if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
    # The server's own counters and histograms (batch sizes, store latency) after the scenario.
    curl -sf "$first_url/metrics" >"$out/$tag-$name.metrics" || true
    commit_batches "$out/$tag-$name.metrics"
    echo
}
# The first node's group commits during the last scenario: how many, how large, and how long its
# writers spent storing them (the metrics count from the server's start, so the scenario's share
# is the difference from the last reading).
batches_seen=0 batch_messages_seen=0 batch_secs_seen=0 remembered_seen=0 read_seen=0 changed_seen=0
commit_batches() {
    local now file="$1"
    now=$(awk '/^parley_commit_batch_messages_count / {c = $2} /^parley_commit_batch_messages_sum / {m = $2}
               /^parley_store_seconds_sum\{op="send_messages"\}/ {t = $2}
               END {printf "%d %d %.3f", c, m, t}' "$file" 2>/dev/null) || return 0
    set -- $now
    [ "$#" -eq 3 ] || return 0
    awk -v c="$(( $1 - batches_seen ))" -v m="$(( $2 - batch_messages_seen ))" -v t="$3" -v t0="$batch_secs_seen" \
        'BEGIN {if (c > 0) printf "group commit: %d batches, %.1f messages each on average, the writers busy %.2f s in all\n",
                               c, m / c, t - t0}'
    batches_seen=$1 batch_messages_seen=$2 batch_secs_seen=$3
    # Where the batches' chat members came from (Postgres keeps them in memory between batches).
    now=$(awk '/^parley_batch_members_total\{from="memory"\}/ {r = $2} /^parley_batch_members_total\{from="database"\}/ {d = $2}
               /^parley_members_changed_total / {x = $2} END {printf "%d %d %d", r, d, x}' "$file" 2>/dev/null) || return 0
    set -- $now
    awk -v r="$(( $1 - remembered_seen ))" -v d="$(( $2 - read_seen ))" -v x="$(( $3 - changed_seen ))" \
        'BEGIN {if (r > 0) printf "members: from memory for %d batches, read for %d, changed meanwhile %d times\n", r, d, x}'
    remembered_seen=$1 read_seen=$2 changed_seen=$3
}
# With several nodes: one load generator per node, each holding its share of the sockets, all at
# once (a process here can hold at most ~19,900); the nodes' sockets and RSS are summed while they
# hold them.
connections_on_every_node() {
    local total="${CONNECTIONS:-10000}" n pids=() ports=() rss_before=0 peak_sockets=0 peak_rss=0
    local share=$(( (total + nodes - 1) / nodes ))
    for n in $(seq 0 $((nodes - 1))); do
        rss_before=$((rss_before + $(awk '/VmRSS/ {print $2}' "/proc/${server_pids[$n]}/status")))
        ports+=("${urls[$n]##*:}")
    done
    local started_ns; started_ns=$(date +%s%N)
    for n in $(seq 0 $((nodes - 1))); do
        "$bin/parley-load" --server "${urls[$n]}" --tokens "$data/tokens.tsv" --timeout-secs 1800 \
            --json "$out/$tag-connections-node$((n + 1)).json" \
            connections --count "$share" --server-pid "${server_pids[$n]}" --hold-secs "${HOLD_SECS:-60}" \
            >"$data/load$n.out" 2>&1 &
        pids+=($!)
    done
    while kill -0 "${pids[@]}" 2>/dev/null; do
        local sockets=0 rss=0 port pid
        for port in "${ports[@]}"; do
            sockets=$((sockets + $(ss -Htn state established "( sport = :$port )" | wc -l)))
        done
        for pid in "${server_pids[@]}"; do rss=$((rss + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status"))); done
        if [ "$sockets" -gt "$peak_sockets" ]; then peak_sockets=$sockets; peak_rss=$rss; fi
        sleep 2
    done
    local failed=0
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    cat "$data"/load*.out
    awk -v n="$nodes" -v s="$peak_sockets" -v r0="$rss_before" -v r="$peak_rss" \
        -v secs="$(( ($(date +%s%N) - started_ns) / 1000000000 ))" \
        'BEGIN {printf "connections on %d nodes: at most %d sockets established at once; the nodes'"'"' RSS then %.1f MiB in all (%.1f MiB before), %.2f KiB per connection; %d s in all\n",
                n, s, r / 1024, r0 / 1024, (r - r0) / s, secs}'
    return "$failed"
}

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(throughput catchup fanout connections)
for scenario in "${scenarios[@]}"; do
    case "$scenario" in
        # shellcheck disable=SC2086
        throughput) load throughput throughput ${THROUGHPUT_ARGS:---pairs 50 --messages 4000 --window 32} ;;
        catchup) load catchup catchup --messages 10000 ;;
        fanout) load fanout fanout --devices 50 --rounds 200 ;;
        connections)
            if [ "$nodes" -gt 1 ]; then
                connections_on_every_node
            else
                load connections connections --count "${CONNECTIONS:-10000}" --source-ips "${SOURCE_IPS:-1}" \
                    --server-pid "$server_pid"
            fi
            ;;
        *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
done
echo "server RSS at the end $(awk '/VmRSS/ {print $2, $3}' /proc/$server_pid/status)"
