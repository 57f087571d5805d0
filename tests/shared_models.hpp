// Where the tests find ../shared/models, and the skip message when it is absent.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace elastilm::test {

// $ELASTILM_SHARED if set, else the ../shared beside the source tree.
inline std::filesystem::path shared_dir() {
    if (const char* env = std::getenv("ELASTILM_SHARED"); env && *env) return env;
    return ELASTILM_SHARED_DIR;
}

inline std::filesystem::path shared_model(const std::string& relative) { return shared_dir() / "models" / relative; }

// True when the tests run under an emulator (the aarch64 build under qemu), ~50x slower than native.
inline bool emulated() {
    const char* e = std::getenv("ELASTILM_EMULATED");
    return e && *e == '1';
}

}  // namespace elastilm::test

// Skips the current test, saying which file it needs, when that file from ../shared is missing.
#define ELASTILM_REQUIRE_SHARED(path)                                                                   \
    do {                                                                                                \
        if (!std::filesystem::exists(path))                                                             \
            GTEST_SKIP() << "needs " << (path) << " (the shared models folder; set ELASTILM_SHARED)";   \
    } while (0)
