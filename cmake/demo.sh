#!/usr/bin/env bash
# The demo command: installs what is missing, builds the tools, prepares the elastic service once
# (cached in build/demo/), then runs examples/demo — the paper's demo: a question, a prefill SLO and a
# decode SLO (20%…100% of the full model's latency), the chosen prompt and model ratios, the compressed
# prompt, the streamed answer, and TTFT/TPOT against the SLO.
#   1. elasticize the trained tiny-gqa-15M (../shared/models)            → build/demo/tiny-elastic.gguf
#   2. train the TLM's heads on self-induced labels (train_tlm, ~1 min)  → build/demo/tiny-elastic.tlm.gguf
#   3. train one LoRA recovery adapter per ratio (recover, ~2 min)       → build/demo/adapters/
#   4. demo: interactive on a terminal; otherwise (or with SLO flags) scripted over the built-in prompts.
# Without ../shared/models the demo runs a synthetic 1B-class elastic model instead and says so.
# Extra arguments go to demo (e.g. --ttft-slo 30 --tpot-slo 50, -n 48, -t 2).
set -euo pipefail
cd "$(dirname "$0")/.."
root=${ELASTILM_BUILD_ROOT:-build}
bash cmake/install-deps.sh
cmake -S . -B "$root/native" -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$root/native" -j "$(nproc)" --target demo elasticize train_tlm recover
mkdir -p "$root/demo"
bin="$root/native/examples"

shared=${ELASTILM_SHARED:-$(cd .. && pwd)/shared}
model="$shared/models/tiny-gqa-15M"
tokenizer="$shared/models/tokenizer.model"
args=("$@")
if [[ ! -t 0 && ${#args[@]} -eq 0 ]]; then
  args=(--ttft-slo 50 --tpot-slo 50 --all-prompts)   # no terminal to ask on: script the three prompts
fi

if [[ -f "$model/model.safetensors" && -f "$tokenizer" ]]; then
  elastic="$root/demo/tiny-elastic.gguf"
  if [[ ! -f "$elastic" ]]; then
    echo "== 1/3 elasticizing $model (calibration: valid.txt from token 16384) =="
    "$bin/elasticize" -m "$model" -o "$elastic" --tokenizer "$tokenizer" \
      --calib "$model/valid.txt" --calib-skip 16384 --calib-tokens 8192 --anchors 1
  fi
  heads="$root/demo/tiny-elastic.tlm.gguf"
  if [[ ! -f "$heads" ]]; then
    echo "== 2/3 training the TLM heads (self-induced labels from the model itself) =="
    "$bin/train_tlm" -m "$elastic" --tokenizer "$tokenizer" --calib "$model/valid.txt" --prompts 24 -o "$heads"
  fi
  adapters="$root/demo/adapters"
  if [[ ! -f "$adapters/lora-90.gguf" ]]; then
    echo "== 3/3 training LoRA recovery adapters, one per ratio (self-distillation) =="
    "$bin/recover" -m "$elastic" --tokenizer "$tokenizer" --calib "$model/valid.txt" --calib-tokens 8192 --epochs 1 \
      -o "$adapters" --resume
  fi
  exec "$bin/demo" -m "$elastic" --tokenizer "$tokenizer" --heads "$heads" --adapters "$adapters" "${args[@]}"
else
  echo "../shared/models/tiny-gqa-15M not found: the demo uses a synthetic 1B-class model" >&2
  exec "$bin/demo" "${args[@]}"
fi
