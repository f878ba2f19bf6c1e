#!/usr/bin/env bash
# Builds the browser demo's two wasm modules, each with its JS bindings (wasm-bindgen-cli
# at Cargo.lock's wasm-bindgen version) and wasm-opt (npm's binaryen: Debian's binaryen
# 108 breaks wasm-bindgen's output):
#
#   www/pkg          single-thread: the library for wasm32 with SIMD (+simd128);
#   www/pkg-threads  threaded: the same with feature `threads`, rayon's pool in Web Workers
#                    (wasm-bindgen-rayon). Shared memory needs atomics, and std rebuilt with
#                    them (rust-src; RUSTC_BOOTSTRAP lets stable cargo take -Z build-std).
#                    Newer Rust (rust-lang/rust#147225) no longer lets atomics imply a
#                    shared memory: the linker
#                    is asked for one (imported, up to 4 GiB) and for the thread-local
#                    storage symbols wasm-bindgen sets up each thread with.
#                    Its own target folder keeps both builds' artifacts.
#
# The page loads the threaded one when it is cross-origin isolated (www/worker.js).
#
#   bash scripts/build-web.sh [both|single|threads]     (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."

wb_version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
rustup component add rust-src >/dev/null 2>&1 || true
if [ "$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$wb_version" ]; then
  echo "installing wasm-bindgen-cli $wb_version (a few minutes, once)"
  nice -n 10 cargo install --quiet wasm-bindgen-cli --version "$wb_version"
fi
if [ ! -x node_modules/.bin/wasm-opt ] || [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/@wllama/wllama ]; then
  npm install --no-audit --no-fund --silent
fi

# bindgen_opt WASM OUT_DIR [WASM_OPT_FLAGS...]: JS bindings, then wasm-opt, then the sizes.
bindgen_opt() {
  local wasm=$1 out=$2
  shift 2
  rm -rf "$out"
  wasm-bindgen --target web --no-typescript --out-dir "$out" --out-name gqa "$wasm"
  nice -n 10 node_modules/.bin/wasm-opt -O3 --strip-debug --strip-producers \
    --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-reference-types --enable-mutable-globals --enable-multivalue "$@" \
    "$out/gqa_bg.wasm" -o "$out/gqa_bg.wasm"
  echo "$out/gqa_bg.wasm: $(stat -c %s "$out/gqa_bg.wasm") bytes, $(gzip -9 -c "$out/gqa_bg.wasm" | wc -c) gzipped"
}

which=${1:-both}
case "$which" in both|single|threads) ;; *) echo "usage: build-web.sh [both|single|threads]" >&2; exit 2 ;; esac

if [ "$which" != threads ]; then
  RUSTFLAGS="-C target-feature=+simd128" nice -n 10 cargo build --quiet --lib --profile web --target wasm32-unknown-unknown
  bindgen_opt target/wasm32-unknown-unknown/web/gqa.wasm www/pkg
fi
[ "$which" = single ] && exit 0

# (rustc warns that `atomics` is an unstable target feature: that warning is expected.)
RUSTC_BOOTSTRAP=1 \
  RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd,+atomics,+bulk-memory,+mutable-globals -C link-arg=--shared-memory \
    -C link-arg=--import-memory -C link-arg=--max-memory=4294967296 -C link-arg=--export=__wasm_init_tls \
    -C link-arg=--export=__tls_size -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base" \
  nice -n 10 cargo build --quiet --lib --profile web --target wasm32-unknown-unknown --features threads \
  -Z build-std=panic_abort,std --target-dir target/wasm-threads 2>&1 | { grep -v -e atomics -e '^  |$' -e 'not stably supported' -e '^$' || true; }
bindgen_opt target/wasm-threads/wasm32-unknown-unknown/web/gqa.wasm www/pkg-threads --enable-threads --enable-relaxed-simd
