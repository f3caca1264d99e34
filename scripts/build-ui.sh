#!/usr/bin/env bash
# Builds the web UI into ui/dist: the Yew app compiled to WebAssembly, its JS glue from
# wasm-bindgen, and the static files. Installs the wasm target and the wasm-bindgen CLI of the
# version Cargo.lock names when they are missing. Nothing is downloaded at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $version"; then
    echo "build-ui: installing wasm-bindgen-cli $version (a few minutes, once)"
    # Not --locked: the CLI's own lockfile can name versions the registry mirror lacks.
    cargo install wasm-bindgen-cli --version "$version"
fi

cargo build --profile ui --target wasm32-unknown-unknown -p parley-ui
target_dir="${CARGO_TARGET_DIR:-target}"
out=ui/dist
rm -rf "$out.new"
mkdir -p "$out.new"
wasm-bindgen --target web --no-typescript --out-dir "$out.new" "$target_dir/wasm32-unknown-unknown/ui/parley_ui.wasm"
cp ui/static/* "$out.new/"
rm -rf "$out"
mv "$out.new" "$out"
wasm_size=$(stat -c %s "$out/parley_ui_bg.wasm")
gzip_size=$(gzip -9 -c "$out/parley_ui_bg.wasm" | wc -c)
echo "build-ui: $out ready (wasm $wasm_size bytes, $gzip_size gzipped)"
