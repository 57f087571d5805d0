#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test elastilm has —
#   1. native x86-64 (or host) build: GoogleTest suite via ctest, a smoke run of the benchmarks;
#   2. libFuzzer targets (clang) for the untrusted-input parsers, briefly;
#   3. the aarch64 NEON/FP16 cross build, its tests under qemu-aarch64 -cpu max.
# Build trees go to build/ (override with ELASTILM_BUILD_ROOT). Jobs: nproc.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${ELASTILM_BUILD_ROOT:-build}
jobs=$(nproc)

bash cmake/install-deps.sh

step() { printf '\n== %s ==\n' "$*"; }

step "native build ($root/native)"
cmake -S . -B "$root/native" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$root/native" -j "$jobs"

step "native tests"
ctest --test-dir "$root/native" --output-on-failure -j "$jobs" --timeout 600

step "benchmark smoke run (tiny shapes, one repetition)"
for b in "$root"/native/bench/elastilm_bench_*; do
  "$b" --smoke --benchmark_min_time=0.01 > "$root/native/$(basename "$b").smoke.txt" 2>&1 \
    || { cat "$root/native/$(basename "$b").smoke.txt"; echo "benchmark smoke failed: $b"; exit 1; }
  echo "ok  $(basename "$b")"
done

step "install, then build a host app with find_package(elastilm)"
if [[ $(uname -m) == x86_64 ]]; then
  cmake --install "$root/native" --prefix "$root/prefix" > /dev/null
  cmake -S tests/install -B "$root/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$PWD/$root/prefix" > /dev/null
  cmake --build "$root/consumer" > /dev/null
  "$root/consumer/consumer"
fi

step "fuzz targets (clang, libFuzzer, 20 s each)"
CXX=clang++ cmake -S . -B "$root/fuzz" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DELASTILM_BUILD_FUZZ=ON \
  -DELASTILM_BUILD_TESTS=ON -DELASTILM_BUILD_BENCH=OFF -DELASTILM_BUILD_EXAMPLES=OFF > /dev/null
for target in $(cmake --build "$root/fuzz" --target help | sed -n 's/^\([a-z0-9_]*_fuzz\):.*/\1/p'); do
  cmake --build "$root/fuzz" -j "$jobs" --target "$target" > /dev/null
  mkdir -p "$root/fuzz/corpus-$target"
  seeds=tests/fuzz/seeds/$target  # read-only starting points (e.g. block-quantized GGUF tensors), if any
  [[ -d $seeds ]] || seeds=""
  "$root/fuzz/tests/fuzz/$target" -max_total_time=20 -print_final_stats=0 "$root/fuzz/corpus-$target" $seeds 2>&1 | tail -n 2 \
    || { echo "fuzz target $target found a crash"; exit 1; }
done

step "aarch64 cross build ($root/aarch64), tests under qemu-aarch64 -cpu max"
cmake -S . -B "$root/aarch64" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
  -DELASTILM_BUILD_BENCH=OFF -DELASTILM_BUILD_EXAMPLES=OFF
cmake --build "$root/aarch64" -j "$jobs"
ctest --test-dir "$root/aarch64" --output-on-failure -j "$jobs" --timeout 1200

step "llama.cpp comparison, smoke mode (bench/versus-llamacpp.sh --smoke)"
if command -v npm > /dev/null; then
  bash bench/versus-llamacpp.sh --smoke
else
  echo "skipped: npm is not installed (the comparison fetches llama.cpp from the npm registry)"
fi
