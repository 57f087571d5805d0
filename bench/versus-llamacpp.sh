#!/usr/bin/env bash
# Side by side with llama.cpp on the same GGUF file, same threads, alternating the engines: prefill of -p
# tokens (pp) and decode of -n tokens (tg), -r repetitions, medians and min–max spread.
# Ours is built twice: for the portable baseline (x86-64-v3 / armv8.2-a+fp16, what CI and a default host
# build get) and for this machine's own ISA (-march=native, as llama.cpp's GGML_NATIVE build is), which
# adds the reduced-precision prefill GEMM where the CPU has one (AVX-512 BF16 …).
#
#   bench/versus-llamacpp.sh [--shape tinyllama|openllama3b] [--type f16|q8_0|q4_0] [-m MODEL.gguf] [-t 2] [-r 5] [-p 512] [-n 128] [--ratios 100,50,20] [--no-mmap]
#   bench/versus-llamacpp.sh --smoke      # tiny-gqa shape, -p 64 -n 16, one repetition (CI)
#
# llama.cpp comes from the npm registry (node-llama-cpp ships its source) and is built once into
# $ELASTILM_CACHE (default ~/.cache/elastilm), outside this tree; see bench/llamacpp-build.sh.
# The synthetic model files (fp16, LLaMA-2 vocabulary) are written there by our own GGUF writer;
# --type q8_0|q4_0 quantizes them (layer matrices in that format, embedding and LM head Q8_0). Block
# formats have one layout, GGUF's standard one, which is also our elastic one (a ratio reads a prefix of
# whole blocks of each row), so both engines read the very same file.
# --no-mmap: both engines copy the weights into memory instead of mapping the file (ours onto transparent
# huge pages, io/mapped_file.hpp; llama-bench's --load-mode none).
# Decode is judged against the streaming read bandwidth measured right before and right after each engine's
# run, the higher of the two (a host's bandwidth can drift by 10 % within minutes, and a VM's by 70 %: a
# median over the whole run once put llama.cpp's decode at 104 % of it), counting the bytes a
# decoded token reads (every layer matrix and the LM head, one embedding row), not the file size. At the
# end, ours is also measured token by token against the read loop (model_speed --share), which bracketing
# cannot do.
set -euo pipefail
cd "$(dirname "$0")/.."
shape=tinyllama type=f16 model="" threads=2 reps=5 pp=512 tg=128 ratios=100,90,80,70,60,50,40,30,20 no_mmap=0 smoke=()
while (($#)); do
  case "$1" in
    --smoke) shape=tinygqa reps=1 pp=64 tg=16 smoke=(--smoke) ;;  # llama.cpp unoptimized: see llamacpp-build.sh
    --shape) shape=$2; shift ;;
    --type) type=$2; shift ;;
    -m) model=$2; shift ;;
    -t) threads=$2; shift ;;
    -r) reps=$2; shift ;;
    -p) pp=$2; shift ;;
    -n) tg=$2; shift ;;
    --ratios) ratios=$2; shift ;;  # the native-ISA build's ratios (all nine by default; 100 must be one)
    --no-mmap) no_mmap=1 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
cache=${ELASTILM_CACHE:-$HOME/.cache/elastilm}
root=${ELASTILM_BUILD_ROOT:-build}
bash cmake/install-deps.sh > /dev/null
command -v npm > /dev/null || { echo "versus-llamacpp: needs npm (Debian package npm) to fetch llama.cpp" >&2; exit 1; }
cmake -S . -B "$root/native" -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$root/native" --target elastilm_bench_model_speed > /dev/null
cmake -S . -B "$root/native-isa" -G Ninja -DCMAKE_BUILD_TYPE=Release -DELASTILM_ARCH=native -DELASTILM_BUILD_BENCH=ON \
  -DELASTILM_BUILD_EXAMPLES=OFF > /dev/null  # the same tree cmake/test.sh builds its native-ISA tests in
cmake --build "$root/native-isa" --target elastilm_bench_model_speed > /dev/null
ours="$root/native/bench/elastilm_bench_model_speed"
ours_isa="$root/native-isa/bench/elastilm_bench_model_speed"
portable=$(sed -n 's/^ELASTILM_ARCH:STRING=//p' "$root/native/CMakeCache.txt")
llama_bench=$(ELASTILM_CACHE="$cache" bash bench/llamacpp-build.sh "${smoke[@]}")
export LD_LIBRARY_PATH="$(dirname "$llama_bench")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

if [[ -z "$model" ]]; then
  mkdir -p "$cache/models"
  model="$cache/models/$shape-synthetic-$type.gguf"
  [[ -f "$model" ]] || "$ours" --write-synthetic "$shape" "$model" --type "$type" > /dev/null
fi
[[ ",$ratios," == *,100,* ]] || { echo "versus-llamacpp: --ratios must include 100 (the comparison is at full width)" >&2; exit 2; }
# Ceilings of the native-ISA build: its fp32 FMA peak (widest SIMD) and the peak of the reduced GEMM's instruction.
IFS=, read -r first_bandwidth peak reduced_peak reduced_name < <("$ours_isa" --roofline -t "$threads")
decode_bytes=$("$ours_isa" -m "$model" --decode-bytes)
ours_load=() llama_load=()
((no_mmap)) && ours_load=(--no-mmap) llama_load=(-lm none)  # llama-bench --load-mode none: read into memory
results=$(mktemp)
trap 'rm -f "$results" "$results.err"' EXIT
# The streaming read bandwidth now, recorded; `around ROW` also records, for that engine's full-width row,
# the higher of this and the previous measurement: the two either side of the run that just ended.
bandwidth_before=0
measure_bandwidth() {
  local b
  b=$("$ours_isa" --bandwidth -t "$threads")
  echo "bandwidth,bw,$b" >> "$results"
  if [[ ${1:-} == around ]]; then
    echo "$2,around,$(awk -v a="$bandwidth_before" -v b="$b" 'BEGIN { print (a > b ? a : b) }')" >> "$results"
  fi
  bandwidth_before=$b
}
for ((rep = 1; rep <= reps; rep++)); do
  echo "repetition $rep/$reps: read bandwidth" >&2
  measure_bandwidth
  echo "repetition $rep/$reps: llama.cpp" >&2
  # llama-bench's progress goes to stderr: kept aside, and shown if it fails (a bad flag must not end the run silently).
  "$llama_bench" -m "$model" -p "$pp" -n "$tg" -t "$threads" -r 1 "${llama_load[@]}" -o csv 2> "$results.err" |
    awk -F'","' 'NR == 1 { next } { gsub(/"/, "", $0); n = split($0, f, ","); p = f[n-7]; g = f[n-6]; ts = f[n-1];
                 if (p > 0) print "llama.cpp,pp," ts; else print "llama.cpp,tg," ts }' >> "$results" \
    || { cat "$results.err" >&2; echo "versus-llamacpp: llama-bench failed (its output above)" >&2; exit 1; }
  measure_bandwidth around "llama.cpp"
  echo "repetition $rep/$reps: elastilm (native ISA)" >&2
  "$ours_isa" -m "$model" -p "$pp" -n "$tg" -t "$threads" --ratios "$ratios" "${ours_load[@]}" |
    awk -F, '{ print "elastilm native " $1 "%,pp," $2; print "elastilm native " $1 "%,tg," $3 }' >> "$results"
  measure_bandwidth around "elastilm native 100%"
  echo "repetition $rep/$reps: elastilm ($portable)" >&2
  "$ours" -m "$model" -p "$pp" -n "$tg" -t "$threads" --ratios 100 "${ours_load[@]}" |
    awk -F, -v isa="$portable" '{ print "elastilm " isa " " $1 "%,pp," $2; print "elastilm " isa " " $1 "%,tg," $3 }' >> "$results"
  measure_bandwidth around "elastilm $portable 100%"
done
# The same share measured token by token: each of ours' decoded tokens next to a read of as many bytes, on
# the same threads (model_speed --share). Bracketing whole runs cannot see the memory change speed during
# a run; pairs side by side see the same memory.
echo "elastilm (native ISA): decode against the read loop, token by token" >&2
share_table=$("$ours_isa" -m "$model" --share -n "$tg" -r 1 -t "$threads" "${ours_load[@]}" 2> "$results.err") \
  || { cat "$results.err" >&2; echo "versus-llamacpp: model_speed --share failed" >&2; exit 1; }

# Weights read per decoded token, from the file size; flops per prompt token at full width (2 per
# parameter), from the size of the same shape's F16 file (2 bytes per parameter) — a block-format file's
# size says nothing exact about its parameter count, so for a user's own quantized -m file that line is left out.
bytes=$(stat -c %s "$model")
flop_bytes=0
if [[ $type == f16 ]]; then flop_bytes=$bytes
elif [[ -f "$cache/models/$shape-synthetic-f16.gguf" && "$model" == "$cache/models/$shape-synthetic-$type.gguf" ]]; then
  flop_bytes=$(stat -c %s "$cache/models/$shape-synthetic-f16.gguf")
fi
echo
bandwidth=$(awk -F, '$1 == "bandwidth" { print $3 }' "$results" | sort -g | awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
  printf "%.2f %.2f %.2f", m, v[1], v[NR] }')
read -r bandwidth bw_lo bw_hi <<< "$bandwidth"
echo "model: $model ($((bytes / 1000000)) MB) | threads $threads | repetitions $reps | pp$pp tg$tg$( ((no_mmap)) && echo " | --no-mmap (llama-bench -lm none)")"
echo "machine, this run: streaming read ${bandwidth} GB/s (median of $((4 * reps)), one before and after each engine's run: ${bw_lo}–${bw_hi}), fp32 FMA peak ${peak} GFLOP/s, reduced-precision GEMM peak ${reduced_peak} GFLOP/s of ${reduced_name} (the native-ISA build's prefill GEMM, $(uname -m))"
echo
grep -v '^bandwidth,' "$results" | awk -F, -v bytes="$decode_bytes" -v fbytes="$flop_bytes" -v peak="$peak" -v rpeak="$reduced_peak" -v rname="$reduced_name" -v pp="$pp" -v tg="$tg" -v type="$type" '
  { key = $1 SUBSEP $2; n[key]++; v[key, n[key]] = $3; if (!($1 in seen)) { seen[$1] = 1; order[++rows] = $1 } }
  function median(k,   i, j, t, m) { m = n[k]; for (i = 1; i <= m; i++) a[i] = v[k, i];
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    lo = a[1]; hi = a[m]; return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
  # Median over the repetitions of the decode GB/s of row e against the bandwidth measured around its run.
  function bw_share(e,   i, k) { k = e SUBSEP "share"; n[k] = 0
    for (i = 1; i <= n[e SUBSEP "tg"] && i <= n[e SUBSEP "around"]; i++) v[k, ++n[k]] = v[e SUBSEP "tg", i] * bytes / 1e9 / v[e SUBSEP "around", i]
    return median(k) }
  END {
    base_pp = median("llama.cpp" SUBSEP "pp"); base_tg = median("llama.cpp" SUBSEP "tg")
    printf "| engine | pp%d tok/s (min–max) | vs llama.cpp | tg%d tok/s (min–max) | vs llama.cpp |\n", pp, tg
    print "|---|---|---|---|---|"
    for (r = 1; r <= rows; r++) { e = order[r]
      p = median(e SUBSEP "pp"); plo = lo; phi = hi; g = median(e SUBSEP "tg"); glo = lo; ghi = hi
      printf "| %s | %.1f (%.1f–%.1f) | %.2f× | %.2f (%.2f–%.2f) | %.2f× |\n", e, p, plo, phi, p / base_pp, g, glo, ghi, g / base_tg }
    printf "\nat full width a decoded token reads %.0f MB (layer matrices, LM head, one embedding row): against the read bandwidth measured either side of each run (the higher; median over repetitions), llama.cpp tg = %.1f%%, elastilm 100%% = %.1f%%\n",
      bytes / 1e6, 100 * bw_share("llama.cpp"), 100 * bw_share("elastilm native 100%")
    # Each repetition on its own: on a host whose bandwidth moves, a median hides which runs had fast memory.
    for (i = 1; i <= n["llama.cpp" SUBSEP "tg"]; i++)
      printf "repetition %d: llama.cpp %.1f GB/s of %.1f (%.1f%%), elastilm 100%% %.1f GB/s of %.1f (%.1f%%)\n", i,
        v["llama.cpp", "tg", i] * bytes / 1e9, v["llama.cpp", "around", i], 100 * v["llama.cpp", "tg", i] * bytes / 1e9 / v["llama.cpp", "around", i],
        v["elastilm native 100%", "tg", i] * bytes / 1e9, v["elastilm native 100%", "around", i],
        100 * v["elastilm native 100%", "tg", i] * bytes / 1e9 / v["elastilm native 100%", "around", i]
    if (fbytes > 0 && type != "f16")  # integer dot products: neither fp32 FMA nor the bf16 GEMM instruction is their roofline
      printf "prefill at full width does ~%.2f GFLOP/token, with %s weights as integer dot products: llama.cpp %.0f, elastilm 100%% %.0f GOP/s (elastilm_bench_quant_kernels prints this machine'"'"'s vpdpbusd peak)\n",
        fbytes / 1e9, type, base_pp * fbytes / 1e9, median("elastilm native 100%" SUBSEP "pp") * fbytes / 1e9
    else if (fbytes > 0) {
      printf "prefill at full width does ~%.2f GFLOP/token: llama.cpp pp = %.0f%% of the fp32 FMA peak, elastilm 100%% = %.0f%%\n",
        fbytes / 1e9, 100 * base_pp * fbytes / 1e9 / peak, 100 * median("elastilm native 100%" SUBSEP "pp") * fbytes / 1e9 / peak
      if (rpeak > 0)
        printf "against the peak of %s (%.0f GFLOP/s): llama.cpp pp = %.0f%%, elastilm native 100%% = %.0f%%\n",
          rname, rpeak, 100 * base_pp * fbytes / 1e9 / rpeak, 100 * median("elastilm native 100%" SUBSEP "pp") * fbytes / 1e9 / rpeak
    }
  }'
echo
echo "elastilm native 100%, each decoded token next to a streaming read of the bytes it reads (bench/model_speed.cpp --share):"
echo "$share_table"
((${#smoke[@]} == 0)) || echo "smoke run (CI): llama.cpp built unoptimized, a 24M-parameter model that stays in cache, one repetition — it checks that this script runs end to end; none of the figures above is a measurement"
