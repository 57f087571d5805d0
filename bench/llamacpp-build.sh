#!/usr/bin/env bash
# Obtains llama.cpp from the npm registry and builds its llama-bench (CPU, Release) into a cache
# outside the source tree; prints the path of the llama-bench binary. Reuses the cache on later runs.
#
# The node-llama-cpp package ships the llama.cpp source of its release as llama/gitRelease.bundle.
# Cache: $ELASTILM_CACHE (default ~/.cache/elastilm)/llamacpp. Nothing from it is ever committed.
set -euo pipefail
cache=${ELASTILM_CACHE:-$HOME/.cache/elastilm}/llamacpp
version=${NODE_LLAMA_CPP_VERSION:-3.22.1}
bin="$cache/build-$version/bin/llama-bench"
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
echo "llamacpp: building llama-bench (Release, CPU only, GGML_NATIVE=ON) — a few minutes on 2 cores" >&2
cmake -S "src-$version" -B "build-$version" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >&2
cmake --build "build-$version" --target llama-bench -j "$(nproc)" >&2
echo "$bin"
