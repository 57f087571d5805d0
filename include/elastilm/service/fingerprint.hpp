// The one hasher behind the two weight fingerprints: the latency cache's (service/latency_model.hpp,
// latency_fingerprint) and the TLM heads file's (service/tlm.hpp, tlm_fingerprint). FNV-1a, 64-bit:
// small and stable across builds and machines — both values are stored in files — not for security.
// Matrices are hashed by their ends only: reading whole tensors would cost gigabytes at every start-up.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "elastilm/tensor.hpp"

namespace elastilm {

struct Fnv1a {
    std::uint64_t h = 0xcbf29ce484222325ull;

    void bytes(const void* p, std::size_t n) {
        const auto* b = static_cast<const unsigned char*>(p);
        for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
    }
    void text(std::string_view s) { bytes(s.data(), s.size()), bytes("\0", 1); }
    template <class T>
    void value(T v) { bytes(&v, sizeof v); }
    // The first and the last `window` bytes of the bytes a matrix view spans (fewer when it is smaller).
    void matrix_ends(const MatrixView& m, std::size_t window) {
        if (!m.data || m.rows <= 0 || m.cols <= 0) return;
        const std::size_t span = bytes_for(m.dtype, m.offset(m.rows - 1, m.cols - 1) + 1);
        const std::size_t n = std::min(window, span);
        const auto* p = static_cast<const unsigned char*>(m.data);
        bytes(p, n);
        bytes(p + span - n, n);
    }
    std::string hex() const {
        char buf[17];
        std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
        return buf;
    }
};

}  // namespace elastilm
