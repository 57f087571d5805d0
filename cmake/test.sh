#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test elastilm has —
#   1. native x86-64 (or host) build: GoogleTest suite via ctest, a smoke run of the benchmarks;
#      then, where the CPU has AVX-512 BF16 or AVX512-FP16, the GEMM and model tests again built with
#      -march=native;
#   2. ThreadSanitizer build of the threaded tests only (the Service, its soak, the thread pool);
#   3. libFuzzer targets (clang) for the untrusted-input parsers, briefly;
#   4. the aarch64 NEON/FP16 cross build, its tests under qemu-aarch64 -cpu max; then a second, small one
#      for armv8.6-a with dotprod, i8mm and bf16: the quantized kernels' SDOT decode and SMMLA prefill
#      paths, and the BFMMLA prefill GEMM for F16 weights.
# Build trees go to build/ (override with ELASTILM_BUILD_ROOT). Jobs: nproc.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${ELASTILM_BUILD_ROOT:-build}
jobs=$(nproc)

# What the native build and its tests need first; the rest (clang, the aarch64 cross compiler, qemu-user:
# ~330 of the ~340 MB a fresh Debian 12 machine installs) in the background, while the native build runs.
# The fuzz step, the first that needs any of it, waits for it.
bash cmake/install-deps.sh --first
mkdir -p "$root"
bash cmake/install-deps.sh --rest > "$root/install-deps-rest.log" 2>&1 &
deps_rest=$!

# Runs `$1 ITEM` for each further argument, $jobs at a time, and waits for all; the function records
# its own log and exit code (the single-threaded steps: benchmark smoke runs, fuzzers, qemu tests).
# It waits for its own jobs only: the llama.cpp build below runs in the background meanwhile.
in_batches() {
  local fn=$1 item pids=()
  shift
  for item in "$@"; do
    "$fn" "$item" &
    pids+=($!)
    if (( ${#pids[@]} == jobs )); then wait "${pids[@]}"; pids=(); fi
  done
  if (( ${#pids[@]} )); then wait "${pids[@]}"; fi
}

# Each step says when it starts (seconds since the start): CI must stay well under 30 minutes on 2 cores.
step() { printf '\n== %s == (at %d s)\n' "$*" "$SECONDS"; }

# The llama.cpp comparison at the end needs llama.cpp built: ~300 CPU-seconds (-O0) where the cache
# (bench/llamacpp-build.sh) does not have it yet, as on a fresh machine — 3 minutes when it ran as the last
# step. It starts now at SCHED_IDLE priority (chrt --idle): it gets only the CPU time the steps below
# leave unused (a build's last, long compiles, a test run's last tests, downloads); it can still cost them
# some shared cache and memory bandwidth (tests assert no timings). The last step waits for what is left.
llamacpp_build=""
if command -v npm > /dev/null; then
  # In its own process group (set -m), so that a step failing stops the whole build with this script.
  # Not setsid: a new session is a new autogroup, which the scheduler gives an equal share of the CPU
  # whatever its tasks' policy — it took half the machine from the native build that way.
  set -m
  chrt --idle 0 bash bench/llamacpp-build.sh --smoke > "$root/llamacpp-build.log" 2>&1 &
  llamacpp_build=$!
  set +m
  trap 'kill -- -"$llamacpp_build" 2> /dev/null || true' EXIT
fi

step "native build ($root/native)"
cmake -S . -B "$root/native" -G Ninja -DCMAKE_BUILD_TYPE=Release -DELASTILM_EXAMPLES_SYNTAX_ONLY=ON
cmake --build "$root/native" -j "$jobs"

step "native tests"
ctest --test-dir "$root/native" --output-on-failure -j "$jobs" --timeout 600

step "benchmark smoke run (tiny shapes, one repetition, $jobs at a time)"
bench_smoke() {
  local b=$1 extra=() rc=0
  # Only the Google Benchmark programs know --benchmark_*; the others refuse unknown flags.
  if readelf -d "$b" 2>/dev/null | grep -q libbenchmark || grep -qa benchmark_min_time "$b"; then
    extra=(--benchmark_min_time=0.01)
  fi
  "$b" --smoke "${extra[@]}" > "$root/native/$(basename "$b").smoke.txt" 2>&1 || rc=$?
  echo "$rc" > "$root/native/$(basename "$b").smoke.rc"
}
benches=("$root"/native/bench/elastilm_bench_*)
in_batches bench_smoke "${benches[@]}"
for b in "${benches[@]}"; do
  out="$root/native/$(basename "$b").smoke"
  [[ $(cat "$out.rc") == 0 ]] || { cat "$out.txt"; echo "benchmark smoke failed: $b"; exit 1; }
  echo "ok  $(basename "$b")"
done

step "native-ISA build ($root/native-isa, -march=native): the reduced-precision prefill GEMM"
# CI's main build is portable (x86-64-v3), which has no reduced-precision arithmetic; the AVX-512 BF16 and
# AVX512-FP16 GEMMs are only compiled for a richer -march. Build the tests that exercise them for this
# machine's own ISA when the CPU has either instruction (Zen 4: bf16 only; Sapphire Rapids: both; the
# tests run each one the build has and skip the other). The NEON FP16 GEMM is covered by the aarch64
# build below. The tiled attention test rides along: there its tiles are 16-lane AVX-512 vectors
# instead of AVX2's 8.
isa_tests=(elastilm_simd_gemm_reduced_test elastilm_simd_kernels_test elastilm_model_reduced_precision_test
           elastilm_model_reference_models_test elastilm_model_session_test elastilm_ops_attention_tiled_test
           elastilm_simd_quant_kernels_test    # the packed AVX-512 VNNI quantized GEMM, the interleaved decode kernel
           elastilm_io_mapped_file_test)       # and the loader interleaving a --no-mmap copy's blocks for it
if grep -qwE 'avx512_bf16|avx512_fp16' /proc/cpuinfo; then
  # The llama.cpp comparison at the end runs this tree's model_speed as its native-ISA row: built here
  # with the tests, its single long compile overlaps theirs instead of running alone on one core.
  cmake -S . -B "$root/native-isa" -G Ninja -DCMAKE_BUILD_TYPE=Release -DELASTILM_ARCH=native \
    -DELASTILM_BUILD_BENCH=ON -DELASTILM_BUILD_EXAMPLES=OFF -DELASTILM_SHARED_VARIANTS=OFF > /dev/null
  cmake --build "$root/native-isa" -j "$jobs" --target "${isa_tests[@]}" elastilm_bench_model_speed
  for t in "${isa_tests[@]}"; do
    "$root/native-isa/tests/$t" > "$root/native-isa/$t.txt" 2>&1 \
      || { cat "$root/native-isa/$t.txt"; echo "native-ISA test failed: $t"; exit 1; }
    echo "ok  $t ($(grep -c '^\[       OK' "$root/native-isa/$t.txt" || true) passed, -march=native)"
  done
else
  echo "skipped: this CPU has neither avx512_bf16 nor avx512_fp16 (/proc/cpuinfo): no reduced-precision GEMM runs here"
fi

step "ThreadSanitizer: the service tests and the thread pool ($root/tsan, three targets only)"
# The Service's worker, its clients and the ThreadPool under TSan: the multi-threaded service test, the
# soak (8 client threads, cancellations, a full queue) and the pool's own test (dynamic chunks taken from a
# shared counter). Three small targets keep this step to a couple of minutes.
tsan_tests=(elastilm_service_service_test elastilm_service_soak_test elastilm_runtime_thread_pool_test)
cmake -S . -B "$root/tsan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS=-fsanitize=thread \
  -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread -DELASTILM_BUILD_BENCH=OFF -DELASTILM_BUILD_EXAMPLES=OFF -DELASTILM_SHARED_VARIANTS=OFF > /dev/null
cmake --build "$root/tsan" -j "$jobs" --target "${tsan_tests[@]}"
for t in "${tsan_tests[@]}"; do
  TSAN_OPTIONS="halt_on_error=1 abort_on_error=0 exitcode=66" "$root/tsan/tests/$t" --gtest_brief=1 \
    || { echo "ThreadSanitizer run failed: $t"; exit 1; }
done

step "install, then build a host app with find_package(elastilm)"
if [[ $(uname -m) == x86_64 ]]; then
  cmake --install "$root/native" --prefix "$root/prefix" > /dev/null
  cmake -S tests/install -B "$root/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$PWD/$root/prefix" > /dev/null
  cmake --build "$root/consumer" > /dev/null
  "$root/consumer/consumer"
fi

step "fuzz targets (clang, libFuzzer, 10 s each, $jobs at a time)"
wait "$deps_rest" || { cat "$root/install-deps-rest.log"; echo "installing clang, the aarch64 cross compiler and qemu-user failed"; exit 1; }
cat "$root/install-deps-rest.log"
CXX=clang++ cmake -S . -B "$root/fuzz" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DELASTILM_BUILD_FUZZ=ON \
  -DELASTILM_BUILD_TESTS=ON -DELASTILM_BUILD_BENCH=OFF -DELASTILM_BUILD_EXAMPLES=OFF > /dev/null
mapfile -t fuzz_targets < <(cmake --build "$root/fuzz" --target help | sed -n 's/^\([a-z0-9_]*_fuzz\):.*/\1/p')
cmake --build "$root/fuzz" -j "$jobs" --target "${fuzz_targets[@]}" > /dev/null
# Each fuzzer is one process on one core: run them $jobs at a time, each with its own log and exit code
# (libFuzzer exits non-zero, and writes a crash-* file, when it finds a crash, a leak or a timeout).
fuzz() {
  local target=$1 seeds=tests/fuzz/seeds/$1  # read-only starting points (e.g. block-quantized GGUF tensors), if any
  mkdir -p "$root/fuzz/corpus-$target"
  [[ -d $seeds ]] || seeds=""
  local rc=0
  "$root/fuzz/tests/fuzz/$target" -max_total_time=10 -print_final_stats=0 "$root/fuzz/corpus-$target" $seeds \
    > "$root/fuzz/$target.log" 2>&1 || rc=$?
  echo "$rc" > "$root/fuzz/$target.rc"
}
in_batches fuzz "${fuzz_targets[@]}"
for target in "${fuzz_targets[@]}"; do
  echo "$target: $(tail -n 1 "$root/fuzz/$target.log")"
  [[ $(cat "$root/fuzz/$target.rc") == 0 ]] || { cat "$root/fuzz/$target.log"; echo "fuzz target $target found a crash"; exit 1; }
done

step "aarch64 cross build ($root/aarch64), tests under qemu-aarch64 -cpu max"
cmake -S . -B "$root/aarch64" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
  -DELASTILM_BUILD_BENCH=OFF -DELASTILM_BUILD_EXAMPLES=OFF
cmake --build "$root/aarch64" -j "$jobs"
ctest --test-dir "$root/aarch64" --output-on-failure -j "$jobs" --timeout 1200

step "aarch64 i8mm cross build ($root/aarch64-i8mm, armv8.6-a+fp16+dotprod+i8mm+bf16): the integer and bf16 matrix kernels"
# The build above is armv8.2-a+fp16, which has neither SDOT (+dotprod), SMMLA (+i8mm) nor BFMMLA (+bf16):
# the quantized decode kernel's sdot branch (simd/arch/quant_dot_neon.hpp), the SMMLA prefill GEMM
# (simd/quant_matmul.hpp, simd/arch/quant_mmla_neon.hpp) and the BFMMLA prefill GEMM for F16 weights
# (simd/gemm_bf16_mmla.hpp, simd/arch/bf16_mmla_neon.hpp) are only compiled here. qemu's max CPU has all
# three. Targets: the quantized kernels against the scalar reference, a quantized model's prefill and
# decode, and — filtered to bf16, the fp16 cases ran above — the reduced GEMM test and the bfmmla
# model-logits check (tiny-gqa-15M; the whole model test is ~5 CPU-minutes under qemu).
i8mm_arch=armv8.6-a+fp16+dotprod+i8mm+bf16
i8mm_tests=(elastilm_simd_quant_kernels_test elastilm_io_quant_formats_test elastilm_simd_gemm_reduced_test
            elastilm_model_reduced_precision_test)
declare -A i8mm_filter=([elastilm_simd_gemm_reduced_test]='*bf16*:*Bfmmla*'
                        [elastilm_model_reduced_precision_test]='ReducedPrecisionBfmmla.*')
cmake -S . -B "$root/aarch64-i8mm" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
  -DELASTILM_ARCH="$i8mm_arch" -DELASTILM_BUILD_BENCH=OFF -DELASTILM_BUILD_EXAMPLES=OFF -DELASTILM_SHARED_VARIANTS=OFF > /dev/null
cmake --build "$root/aarch64-i8mm" -j "$jobs" --target "${i8mm_tests[@]}"
# Under qemu each test is mostly one busy host thread: run them $jobs at a time.
i8mm_run() {
  local t=$1 rc=0
  ELASTILM_EMULATED=1 qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu "$root/aarch64-i8mm/tests/$t" \
    --gtest_filter="${i8mm_filter[$t]:-*}" > "$root/aarch64-i8mm/$t.txt" 2>&1 || rc=$?
  echo "$rc" > "$root/aarch64-i8mm/$t.rc"
}
in_batches i8mm_run "${i8mm_tests[@]}"
for t in "${i8mm_tests[@]}"; do
  out="$root/aarch64-i8mm/$t.txt"
  [[ $(cat "$root/aarch64-i8mm/$t.rc") == 0 ]] || { cat "$out"; echo "aarch64 i8mm test failed: $t"; exit 1; }
  echo "ok  $t ($(grep -c '^\[       OK' "$out" || true) passed, -march=$i8mm_arch)"
done
# The tests name the paths they ran; all must be the ARM extensions, not the fallbacks.
grep -E '^(integer dot products|prefill GEMM):' "$root/aarch64-i8mm/elastilm_simd_quant_kernels_test.txt" | sed 's/^/    /'
grep -E '^bf16 GEMM:' "$root/aarch64-i8mm/elastilm_simd_gemm_reduced_test.txt" | sed 's/^/    /'
grep -q '^integer dot products: neon+sdot' "$root/aarch64-i8mm/elastilm_simd_quant_kernels_test.txt" \
  && grep -q '^prefill GEMM: tiled, smmla' "$root/aarch64-i8mm/elastilm_simd_quant_kernels_test.txt" \
  || { echo "aarch64 i8mm build did not run the sdot / smmla kernels"; exit 1; }
grep -q '^bf16 GEMM: bf16 (NEON bfmmla)' "$root/aarch64-i8mm/elastilm_simd_gemm_reduced_test.txt" \
  || { echo "aarch64 bf16 build did not run the bfmmla GEMM"; exit 1; }

step "llama.cpp comparison, smoke mode (bench/versus-llamacpp.sh --smoke)"
if [[ -n $llamacpp_build ]]; then
  # Its own failure is reported by the comparison, which runs the same build again in the foreground.
  waited=$SECONDS
  wait "$llamacpp_build" || { echo "the background llama.cpp build failed; its log:"; tail -n 20 "$root/llamacpp-build.log"; }
  echo "background llama.cpp build: waited $((SECONDS - waited)) s for it here"
  bash bench/versus-llamacpp.sh --smoke
else
  echo "skipped: npm is not installed (the comparison fetches llama.cpp from the npm registry)"
fi

printf '\nall steps passed in %d min %d s\n' $((SECONDS / 60)) $((SECONDS % 60))
