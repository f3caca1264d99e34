#!/usr/bin/env bash
# Protocol fuzzing with cargo-fuzz (libFuzzer; needs the nightly toolchain): each target for
# FUZZ_SECONDS from the committed corpus, with the memory limits that make an unbounded
# allocation a finding. Not part of CI, which replays the committed corpus on stable instead
# (`cargo test -p parley-server --test api fuzz`).
#
#   scripts/fuzz.sh                              every target, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh client_frame
#   MINIMIZE=1 scripts/fuzz.sh                   then `cargo fuzz cmin` each corpus (to commit it)
#   FUZZ_ARGS=-len_control=0 scripts/fuzz.sh     more libFuzzer flags (here: inputs up to 64 KiB at once)
#
# Targets (fuzz/fuzz_targets/, checks in fuzz/src/lib.rs): client_frame (WebSocket frames from
# clients and the server's checks of them), request_bodies (every REST request body and its
# validation), server_frame (what clients decode; round trips). New inputs go to
# fuzz/corpus/<target>/; a crash stops the run and leaves its input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
cargo_fuzz_version="0.13.2"
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=(client_frame request_bodies server_frame); fi

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: cargo-fuzz needs the nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
    echo "fuzz: installing cargo-fuzz $cargo_fuzz_version"
    cargo install --quiet cargo-fuzz --version "$cargo_fuzz_version"
fi

# libFuzzer's limits: a process over 512 MiB, or a single allocation over it, is a crash; inputs up
# to 64 KiB (the server's body limit; WebSocket frames stop at 25 KiB by default).
limits=(-rss_limit_mb=512 -malloc_limit_mb=512 -max_len=65536 -timeout=10)

for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    echo "fuzz: $target for $seconds s"
    nice -n 10 cargo +nightly fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        "${limits[@]}" -dict=fuzz/protocol.dict -max_total_time="$seconds" -print_final_stats=1 ${FUZZ_ARGS:-}
done

# `cargo fuzz cmin`, but relative to the seeds (what the hand-written seeds already cover is not
# kept twice), by edges alone (not hit counts) and with libFuzzer's set-cover merge: the same
# coverage in a few hundred files rather than thousands.
if [ "${MINIMIZE:-0}" = 1 ]; then
    for target in "${targets[@]}"; do
        echo "fuzz: minimizing fuzz/corpus/$target"
        merged=$(mktemp -d)
        cp "fuzz/seeds/$target"/* "$merged/"
        nice -n 10 cargo +nightly fuzz run "$target" "$merged" "fuzz/corpus/$target" -- \
            "${limits[@]}" -set_cover_merge=1 -use_counters=0
        for seed in "fuzz/seeds/$target"/*; do rm -f "$merged/$(basename "$seed")"; done
        rm -rf "fuzz/corpus/$target"
        mv "$merged" "fuzz/corpus/$target"
        chmod 755 "fuzz/corpus/$target"
        echo "fuzz: fuzz/corpus/$target keeps $(ls "fuzz/corpus/$target" | wc -l) inputs"
    done
fi
