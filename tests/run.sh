#!/usr/bin/env bash
# Every test of the project, on a fresh machine: installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

# Vulkan on the CPU (lavapipe), so the GPU backend's tests run without a GPU.
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  if command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers >/dev/null) ||
      echo "note: could not install mesa-vulkan-drivers; GPU tests will report SKIPPED"
  fi
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

# The library must keep compiling for the browser (wasm32 + SIMD).
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
RUSTFLAGS="-C target-feature=+simd128" cargo build --quiet --lib --target wasm32-unknown-unknown

# All native tests.
cargo test
