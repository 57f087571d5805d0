#!/usr/bin/env bash
# Obtains llama.cpp from the npm registry and builds its llama-bench (CPU, Release) into a cache
# outside the source tree; prints the path of the llama-bench binary. Reuses the cache on later runs.
#
#   bench/llamacpp-build.sh           # optimized (Release): what every comparison is measured with
#   bench/llamacpp-build.sh --smoke   # unoptimized (-O0), a separate build: checks the comparison script
#                                     # runs end to end in CI, where the Release build's ~9 CPU-minutes
#                                     # (~4.5 min on 2 cores) would be a sixth of the whole run; 3.5 CPU-min.
#
# The node-llama-cpp package ships the llama.cpp source of its release as llama/gitRelease.bundle.
# Cache: $ELASTILM_CACHE (default ~/.cache/elastilm)/llamacpp. Nothing from it is ever committed.
set -euo pipefail
cache=${ELASTILM_CACHE:-$HOME/.cache/elastilm}/llamacpp
version=${NODE_LLAMA_CPP_VERSION:-3.22.1}
build_type=Release flavour="" what=Release
case "${1:-}" in
  "") ;;
  --smoke) build_type=None flavour=-O0 what="unoptimized, for --smoke only" ;;  # CMake's "None": no -O flag (gcc's -O0), no -g
  *) echo "llamacpp-build: unknown argument $1 (only --smoke)" >&2; exit 2 ;;
esac
# GGML_NATIVE turns on ggml's AMX int8 kernels on CPUs with AMX (Sapphire Rapids); this release's AMX path
# segfaults in llama-bench on Q4_0/Q8_0 files, so x86 builds keep every native ISA extension except AMX.
# (With gcc an explicit -mno-* wins over -march=native in either order.) The build directory names the
# flavour, so a cache built before this rule is rebuilt rather than reused.
extra_flags=""
[[ "$(uname -m)" == x86_64 ]] && extra_flags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
build="build-$version-native${extra_flags:+-noamx}$flavour"
bin="$cache/$build/bin/llama-bench"
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi

mkdir -p "$cache"
cd "$cache"
if [[ ! -d "src-$version/.git" ]]; then
  echo "llamacpp: npm pack node-llama-cpp@$version" >&2
  npm pack --silent "node-llama-cpp@$version" > /dev/null
  tar xzf "node-llama-cpp-$version.tgz" package/llama/gitRelease.bundle
  git clone -q package/llama/gitRelease.bundle "src-$version" 2>/dev/null
  rm -rf package "node-llama-cpp-$version.tgz"
fi
echo "llamacpp: building llama-bench ($what, CPU only, GGML_NATIVE=ON${extra_flags:+, without AMX}) — a few minutes on 2 cores" >&2
cmake -S "src-$version" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="$build_type" -DGGML_NATIVE=ON \
  -DCMAKE_C_FLAGS="$extra_flags" -DCMAKE_CXX_FLAGS="$extra_flags" \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >&2
cmake --build "$build" --target llama-bench -j "$(nproc)" >&2
echo "$bin"
