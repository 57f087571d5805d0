#!/usr/bin/env bash
# Installs every Debian 12 package elastilm's build, tests, benchmarks, examples and cross tests need.
# Idempotent: does nothing (and needs no network) when everything is already installed.
#
#   cmake/install-deps.sh          # all of them
#   cmake/install-deps.sh --first  # what the native build, its tests, benchmarks and examples need
#   cmake/install-deps.sh --rest   # what only later CI steps use: clang (the fuzzers), the aarch64
#                                  # cross compiler and qemu-user — most of what a fresh machine downloads,
#                                  # so cmake/test.sh installs them in the background of its native build
set -euo pipefail

first=(
  build-essential cmake ninja-build pkg-config
  libxsimd-dev xtl-dev nlohmann-json3-dev      # header-only library dependencies
  libgtest-dev googletest libbenchmark-dev     # tests and microbenchmarks
  libsentencepiece-dev sentencepiece           # tokenizer oracle in the tests
)
rest=(
  clang libclang-rt-14-dev                     # libFuzzer targets
  g++-aarch64-linux-gnu qemu-user              # ARM NEON/FP16 cross build, tests under qemu-aarch64
)
case "${1:-}" in
  "") packages=("${first[@]}" "${rest[@]}") ;;
  --first) packages=("${first[@]}") ;;
  --rest) packages=("${rest[@]}") ;;
  *) echo "install-deps: unknown argument $1 (--first, --rest or none)" >&2; exit 2 ;;
esac

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
