#!/usr/bin/env bash
# The demo command: installs what is missing, builds the tools, prepares the elastic service once
# (cached in build/demo/), then runs examples/demo — the paper's demo: a documentation passage and a
# question, a prefill SLO and a decode SLO (20%…100% of the full model's latency), the chosen prompt and
# model ratios, the compressed prompt, the streamed answer, and TTFT/TPOT against the SLO.
# It serves docs-95M (../shared/models) with docs-tlm-15M as the TLM's trunk:
#   1. elasticize docs-95M (calibration: docs_valid.txt from token 131072)  → build/demo/docs-95M-elastic.gguf
#   2. one LoRA recovery adapter per ratio (recover, self-distillation)    → build/demo/adapters/
#   3. the TLM's score head (--full: and its decision head) on labels made by docs-95M with those adapters
#                                                                           → build/demo/docs-95M-elastic.tlm.gguf
#   4. demo: measures the orchestrator's prior once (cached in ~/.cache/elastilm), then interactive on a
#      terminal; otherwise (or with SLO flags) scripted over the built-in prompts.
# The first run prepares a short recipe. `bash cmake/demo.sh --full` prepares
# the full-quality one instead (more calibration text, more epochs, more labelled prompts, and the decision
# head on 320 multiple-choice items; about an hour on 2 cores, most of it labelling) in build/demo/full/ and
# serves from it; later runs with --full reuse it.
# Without ../shared/models/docs-95M the demo runs a synthetic 1B-class elastic model instead and says so.
# Extra arguments go to demo (e.g. --ttft-slo 30 --tpot-slo 50, -n 48, -t 2).
set -euo pipefail
cd "$(dirname "$0")/.."
root=${ELASTILM_BUILD_ROOT:-build}
full=0
args=()
for a in "$@"; do
  if [[ $a == --full ]]; then full=1; else args+=("$a"); fi
done
bash cmake/install-deps.sh
cmake -S . -B "$root/native" -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$root/native" -j "$(nproc)" --target demo elasticize train_tlm recover
bin="$root/native/examples"

shared=${ELASTILM_SHARED:-$(cd .. && pwd)/shared}
model="$shared/models/docs-95M"
trunk="$shared/models/docs-tlm-15M"
text="$shared/models/docs_valid.txt"
tokenizer="$shared/models/tokenizer.model"
if [[ ! -t 0 && ${#args[@]} -eq 0 ]]; then
  args=(--ttft-slo 50 --tpot-slo 50 --all-prompts)   # no terminal to ask on: script the three prompts
fi

# The recipes. docs_valid.txt's first 131,072 tokens are held out for evaluation (perplexity scores its
# first 32k; service_eval's multiple-choice items come from documents inside it): calibration starts after
# them, and the TLM's prompts after the calibration text.
if (( full )); then
  cache="$root/demo/full"
  # The decision head on the service's own task: 320 multiple-choice items, each read along the prior's
  # three curves (train_tlm --decision-labels choice; the head reads the trunk's context dependence).
  # The labels are cached as they are made (train_tlm --labels): an interrupted run resumes where it stopped.
  calib_tokens=8192;  recover_tokens=8192; recover_epochs=2; prompts=320
  head_flags=(--decision-labels choice --choice-items 320 --labels "$cache/labels-choice.json")
else
  cache="$root/demo"
  # The demo plans with a measured prior, not the decision head (examples/demo.cpp), so the short recipe
  # trains the score head only: the decision head's pair labels were most of the first run's time.
  calib_tokens=4096;  recover_tokens=2048; recover_epochs=1; prompts=32; head_flags=(--no-decision-head)
fi
mkdir -p "$cache"

if [[ -f "$model/model.safetensors" && -f "$trunk/model.safetensors" && -f "$tokenizer" && -f "$text" ]]; then
  start=$SECONDS
  elastic="$cache/docs-95M-elastic.gguf"
  if [[ ! -f "$elastic" ]]; then
    echo "== 1/3 elasticizing $model (calibration: $calib_tokens tokens of docs_valid.txt from token 131072) =="
    "$bin/elasticize" -m "$model" -o "$elastic" --tokenizer "$tokenizer" --calib "$text" --calib-skip 131072 \
      --calib-tokens "$calib_tokens" --window 1024 --anchors 1
  fi
  adapters="$cache/adapters"
  if [[ ! -f "$adapters/lora-90.gguf" ]]; then
    echo "== 2/3 training LoRA recovery adapters, one per ratio (self-distillation, $recover_tokens tokens, $recover_epochs epochs) =="
    "$bin/recover" -m "$elastic" --tokenizer "$tokenizer" --calib "$text" --calib-skip 131072 --calib-tokens "$recover_tokens" \
      --window 128 --epochs "$recover_epochs" -o "$adapters" --resume
  fi
  heads="$cache/docs-95M-elastic.tlm.gguf"
  if [[ ! -f "$heads" ]]; then
    echo "== 3/3 training the TLM heads on docs-tlm-15M ($prompts prompts labelled by docs-95M with its adapters) =="
    "$bin/train_tlm" -m "$elastic" --tokenizer "$tokenizer" --trunk "$trunk" --trunk-percent 100 --adapters "$adapters" \
      --calib "$text" --calib-skip 147456 --prompts "$prompts" --prompt-len 16,24,32 --cont-len 8 "${head_flags[@]}" -o "$heads"
  fi
  (( SECONDS - start > 5 )) && echo "== prepared in $(( SECONDS - start )) s, cached in $cache =="
  exec "$bin/demo" -m "$elastic" --tokenizer "$tokenizer" --trunk "$trunk" --trunk-percent 100 --heads "$heads" \
    --adapters "$adapters" --prior-text "$text" "${args[@]}"
else
  echo "../shared/models/docs-95M (or docs-tlm-15M, docs_valid.txt) not found: the demo uses a synthetic 1B-class model" >&2
  exec "$bin/demo" "${args[@]}"
fi
