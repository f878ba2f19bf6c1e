#!/usr/bin/env bash
# The demo: builds the wasm module and serves www/ on http://127.0.0.1:8080/
# (PORT=... to change). Needs a Rust toolchain and Node 20.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-web.sh
exec node scripts/serve.mjs --port "${PORT:-8080}"
