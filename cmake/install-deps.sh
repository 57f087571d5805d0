#!/usr/bin/env bash
# Installs every Debian 12 package elastilm's build, tests, benchmarks, examples and cross tests need.
# Idempotent: does nothing (and needs no network) when everything is already installed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libxsimd-dev xtl-dev nlohmann-json3-dev      # header-only library dependencies
  libgtest-dev googletest libbenchmark-dev     # tests and microbenchmarks
  libsentencepiece-dev sentencepiece           # tokenizer oracle in the tests
  clang libclang-rt-14-dev                     # libFuzzer targets
  g++-aarch64-linux-gnu qemu-user              # ARM NEON/FP16 cross build, tests under qemu-aarch64
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
