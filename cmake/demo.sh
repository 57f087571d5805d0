#!/usr/bin/env bash
# The demo command: installs what is missing, builds the examples, then
#   1. elasticizes the trained tiny-gqa-15M model (../shared/models) into build/demo/tiny-elastic.gguf,
#   2. answers one prompt with the full model and with its 50% and 20% sub-models, showing TTFT/TPOT.
# Without ../shared/models it runs a synthetic-weight stories260K-shaped model instead and says so.
# Extra arguments go to every `generate` call (e.g. -n 64 -t 2).
set -euo pipefail
cd "$(dirname "$0")/.."
root=${ELASTILM_BUILD_ROOT:-build}
bash cmake/install-deps.sh
cmake -S . -B "$root/native" -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$root/native" -j "$(nproc)" --target generate elasticize
mkdir -p "$root/demo"

shared=${ELASTILM_SHARED:-$(cd .. && pwd)/shared}
model="$shared/models/tiny-gqa-15M"
prompt="Mr. Speaker, the state of our Union is"
if [[ -f "$model/model.safetensors" && -f "$shared/models/tokenizer.model" ]]; then
  elastic="$root/demo/tiny-elastic.gguf"
  if [[ ! -f "$elastic" ]]; then
    echo "== elasticizing $model (calibration: valid.txt from token 16384) =="
    "$root/native/examples/elasticize" -m "$model" -o "$elastic" --tokenizer "$shared/models/tokenizer.model" \
      --calib "$model/valid.txt" --calib-skip 16384 --calib-tokens 8192 --anchors 1
  fi
  for ratio in 100 50 20; do
    echo; echo "== $ratio% sub-model =="
    "$root/native/examples/generate" -m "$elastic" --tokenizer "$shared/models/tokenizer.model" -p "$prompt" -n 48 \
      --ratio "$ratio" "$@"
  done
else
  echo "../shared/models/tiny-gqa-15M not found: running stories260K.bin by token ids instead" >&2
  "$root/native/examples/generate" -m "$shared/models/stories260K.bin" --ids 1 -n 48 "$@"
fi
