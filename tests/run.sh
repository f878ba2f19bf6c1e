#!/usr/bin/env bash
# Every test of the project, on a fresh machine: installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

# Vulkan on the CPU (lavapipe), so the GPU backend's tests run without a GPU.
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  if command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers >/dev/null) ||
      echo "note: could not install mesa-vulkan-drivers; the GPU tests will be ignored (and fail under CI=true)"
  fi
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

# Every test run's output is also kept, to total the results at the end. A failing
# run does not stop the others; the script fails at the end. Each run says how long it took.
LOG="$(mktemp)"
status=0
t() {
  local start=$SECONDS
  "$@" 2>&1 | tee -a "$LOG" || status=1
  echo "[$((SECONDS - start)) s: $*]"
}

# The browser build first: the library must keep compiling for wasm32 + SIMD, and the page
# needs it (the single-thread and the threaded module, each wasm + JS bindings + wasm-opt,
# into www/pkg and www/pkg-threads; installs wasm-bindgen-cli, rust-src and the npm tools once). The wasm tests below use its profile, so its dependencies are built once.
bash scripts/build-web.sh single
echo "[${SECONDS} s so far: installs and scripts/build-web.sh single]"
# The threaded module builds beside the native tests (its own target folder; its long
# single-threaded LTO link would leave a core idle), and is waited for before the browser tests.
THREADS_LOG="$(mktemp)"
nice -n 5 bash scripts/build-web.sh threads > "$THREADS_LOG" 2>&1 &
threads_build=$!

# All native tests, training included (candle, CPU).
t cargo test --features train --no-fail-fast
# The kernels' own tests above ran on every instruction set of this CPU; the engine
# ran on the best one. Where that is AVX-512, run the engine again on AVX2.
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  GQA_NO_AVX512=1 t cargo test --features train --no-fail-fast --test engine --test fixture
else
  echo "note: no AVX-512 on this CPU: the engine ran on AVX2 only"
fi
# The file loaders against a minute of mutated inputs (examples/fuzz_loaders.rs).
t cargo run --quiet --features train --example fuzz_loaders -- --seconds 60

# The browser demo. Debian's Chromium and chromedriver (never a downloaded browser).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) ||
    echo "note: could not install chromium; the browser tests will fail"
fi
# The wasm API under Node (CPU SIMD = native logits; no WebGPU there) and in headless
# Chromium (WebGPU), built as the page is (the web profile); the native reference logits
# come from tests/web_reference.rs above.
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
RUSTFLAGS="-C target-feature=+simd128" t cargo test --profile web --target wasm32-unknown-unknown --test web_node
# (300 positions on SwiftShader take tens of seconds: past the runner's default 20 s timeout.)
WASM_BINDGEN_TEST_TIMEOUT=300 CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_WEBDRIVER_JSON=tests/web/webdriver.json \
  RUSTFLAGS="-C target-feature=+simd128" t cargo test --profile web --target wasm32-unknown-unknown --test web_browser -- --nocapture
# SmolLM2's GGUF into www/models/ (from ../shared here), where the browser tests load it.
t bash scripts/fetch-model.sh smollm2
# The threaded module in Chromium: native logits, its threads, and no start without isolation.
start=$SECONDS
wait "$threads_build" || { status=1; echo "FAILED: scripts/build-web.sh threads"; }
cat "$THREADS_LOG"
echo "[$((SECONDS - start)) s waiting for scripts/build-web.sh threads]"
t node tests/web/threads.mjs
# The demo server alone, then the page end to end in Chromium from it (screenshots in target/e2e).
t node tests/web/server.mjs
t node tests/web/e2e.mjs

# One closing line for everything above (each runner's own lines are above it). Tests
# whose requirement is missing here are "ignored" (cargo) or "skipped" (the e2e run);
# under CI=true they fail instead.
awk '/test result: /{ for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1);
                                                 if ($i ~ /^(ignored|skipped)/) s += $(i-1) } }
     END { printf "total: %d passed, %d failed, %d skipped\n", p, f, s }' "$LOG"
echo "[${SECONDS} s in all]"
exit $status
