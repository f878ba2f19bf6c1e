#!/usr/bin/env bash
# Builds the browser demo into www/pkg: the library for wasm32 with SIMD (+simd128),
# its JS bindings (wasm-bindgen-cli at Cargo.lock's wasm-bindgen version) and wasm-opt
# (npm's binaryen: Debian's binaryen 108 breaks wasm-bindgen's output).
set -euo pipefail
cd "$(dirname "$0")/.."

wb_version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
if [ "$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$wb_version" ]; then
  echo "installing wasm-bindgen-cli $wb_version (a few minutes, once)"
  nice -n 10 cargo install --quiet wasm-bindgen-cli --version "$wb_version"
fi
if [ ! -x node_modules/.bin/wasm-opt ] || [ ! -d node_modules/playwright-core ]; then
  npm install --no-audit --no-fund --silent
fi

RUSTFLAGS="-C target-feature=+simd128" nice -n 10 cargo build --quiet --lib --profile web --target wasm32-unknown-unknown
rm -rf www/pkg
wasm-bindgen --target web --no-typescript --out-dir www/pkg --out-name gqa \
  target/wasm32-unknown-unknown/web/gqa.wasm
nice -n 10 node_modules/.bin/wasm-opt -O3 --strip-debug --strip-producers \
  --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-reference-types --enable-mutable-globals --enable-multivalue \
  www/pkg/gqa_bg.wasm -o www/pkg/gqa_bg.wasm

raw=$(stat -c %s www/pkg/gqa_bg.wasm)
gz=$(gzip -9 -c www/pkg/gqa_bg.wasm | wc -c)
echo "www/pkg/gqa_bg.wasm: $raw bytes, $gz gzipped"
