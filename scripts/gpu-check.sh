#!/usr/bin/env bash
# The whole real-GPU check as one script, for a machine with a GPU and only a few
# minutes: a release `gqa` built elsewhere is brought along (no Rust toolchain there),
# with the Vulkan loader's Debian packages when the machine has no loader installed.
#
#   scripts/gpu-check.sh [--gqa PATH] [--libs DIR] [--shared DIR] [--out DIR] [--quick]
#
#   --gqa     the prebuilt binary (default: target/release/gqa)
#   --libs    a folder of .deb packages (libvulkan1 at least): unpacked into a folder
#             beside the output and put on LD_LIBRARY_PATH, nothing installed
#   --shared  the shared fixtures (default: ../shared), for the stories260K check
#   --out     where the results go (default: target/gpu-check)
#   --quick   the tiny preset at short contexts instead of the 1b and 500m presets, and
#             fewer steps per check:
#             how the script is tested on a CPU Vulkan driver (lavapipe)
#
# It checks GPU against CPU logits and sampling on a random model past 4096 positions
# and on stories260K (which also finds the adapter: without one, or with only a CPU
# driver outside --quick, it stops there), then benchmarks the 1b and 500m presets with
# f16 weights at contexts 128, 2048 and 8192 for G in {1, 2, 4, H} and the shipped family
# on the GPU (each with its profile: per-kernel time, fixed cost, read-back, copy
# bandwidth). It writes OUT/gpu-check.json (every report, by name) and OUT/gpu-check.md,
# and fails if a check fails. On an H200 it takes a few minutes; on lavapipe with
# --quick, about one.
set -euo pipefail
cd "$(dirname "$0")/.."

gqa=target/release/gqa
libs=""
shared=../shared
out=target/gpu-check
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --gqa) gqa="$2"; shift 2 ;;
    --libs) libs="$2"; shift 2 ;;
    --shared) shared="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$gqa" ] || { echo "gpu-check: no gqa binary at $gqa (build it with: cargo build --release)" >&2; exit 2; }
mkdir -p "$out"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

# The Vulkan loader, unpacked beside the results when brought along as packages.
if [ -n "$libs" ]; then
  root="$out/vulkan-loader"
  mkdir -p "$root"
  for deb in "$libs"/*.deb; do dpkg -x "$deb" "$root"; done
  export LD_LIBRARY_PATH="$(find "$root" -name 'libvulkan.so*' -printf '%h\n' | sort -u | paste -sd:)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# A driver's manifest outside the loader's default folders (as GPU container runtimes
# mount it): found and named to the loader.
if [ -z "${VK_DRIVER_FILES:-}" ] && ! ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1; then
  icd="$(find /usr/local /opt -name '*_icd*.json' -path '*vulkan*' 2>/dev/null | head -n 1 || true)"
  if [ -n "$icd" ]; then export VK_DRIVER_FILES="$icd"; fi
fi

md="$out/gpu-check.md"
json="$out/gpu-check.json"
: >"$md"
parts=()
status=0
# step NAME TITLE ARGS...: run one gqa command, its Markdown into the table file, its
# JSON under NAME; a failing command fails the script at the end, the others still run.
step() {
  local name="$1" title="$2"
  shift 2
  echo "== $title" | tee -a "$md"
  local start=$SECONDS
  if "$gqa" "$@" --json-out "$out/$name.json" >>"$md" 2>"$out/$name.log"; then
    echo "   ($((SECONDS - start)) s)" | tee -a "$md"
    parts+=("\"$name\": $(cat "$out/$name.json")")
  else
    status=1
    echo "   FAILED ($((SECONDS - start)) s): $(tail -n 3 "$out/$name.log")" | tee -a "$md"
    parts+=("\"$name\": null")
  fi
  echo >>"$md"
}

# --quick keeps the test short on a CPU Vulkan driver: fewer decode steps per check, and the
# shipped family at a short context only.
if [ "$quick" = 1 ]; then check_steps=8; family=(--contexts 128 --steps 8 --rounds 1); else check_steps=16; family=(--contexts 128,2048 --steps 16); fi

# The checks first: they fail at once without a GPU adapter, and they name the adapter.
step check_random "GPU vs CPU: random tiny preset, after 5000 synthetic positions" check-gpu --preset tiny --context 5000 --steps "$check_steps"
if [ -f "$shared/fixtures/llama2c/stories260K.bin" ]; then
  step check_stories260k "GPU vs CPU: stories260K" check-gpu --model "$shared/fixtures/llama2c/stories260K.bin" --steps 64
else
  echo "== GPU vs CPU: stories260K skipped: no $shared/fixtures/llama2c/stories260K.bin" | tee -a "$md"
  status=1
fi
adapter="$(grep -o '"adapter": "[^"]*"' "$out/check_random.json" 2>/dev/null | head -n 1 || true)"
echo "${adapter:-adapter: none found}" | tee -a "$md"
if [ -z "$adapter" ]; then
  echo "gpu-check: no GPU adapter answered (see $out/check_random.log); not benchmarking" | tee -a "$md"
  status=1
elif [ "$quick" = 0 ] && [[ "$adapter" == *", Cpu)"* ]]; then
  echo "gpu-check: only a CPU Vulkan driver was found ($adapter): the GPU's driver manifest is missing (set VK_DRIVER_FILES); not benchmarking the large presets on it" | tee -a "$md"
  status=1
else
  benchmarks=1
fi
if [ "${benchmarks:-0}" = 1 ] && [ "$quick" = 1 ]; then
  step bench_tiny "tiny preset (f16), GPU" bench --backend gpu --preset tiny --dtype f16 --contexts 128,600 --groups 1,2,4,8 --steps 8 --rounds 2
elif [ "${benchmarks:-0}" = 1 ]; then
  step bench_1b "1b preset (f16), GPU" bench --backend gpu --preset 1b --dtype f16 --contexts 128,2048,8192 --groups 1,2,4,32
  step bench_500m "500m preset (f16), GPU" bench --backend gpu --preset 500m --dtype f16 --contexts 128,2048,8192 --groups 1,2,4,16
fi
if [ "${benchmarks:-0}" = 1 ] && [ -f www/models/mha/config.json ]; then
  step bench_family "shipped family (mha and its G, f16), GPU" bench --backend gpu --model www/models/mha --dtype f16 "${family[@]}"
fi

{
  printf '{\n  "quick": %s,\n' "$([ "$quick" = 1 ] && echo true || echo false)"
  for i in "${!parts[@]}"; do
    printf '  %s%s\n' "${parts[$i]}" "$([ "$i" -lt $((${#parts[@]} - 1)) ] && echo ,)"
  done
  printf '}\n'
} >"$json"
echo "gpu-check: wrote $md and $json"
exit $status
