// lane_sums(rows): one batch whose lane j is the sum of rows[j]'s lanes, for `lanes` rows. Decode
// attention scores `lanes` cached positions at once with it (ops/attention.hpp): each position's dot
// product ends in a batch of partial sums, and reducing them together takes about a third of the
// instructions of reducing them one by one (each step of the tree serves every row at once).
#pragma once

#include <xsimd/xsimd.hpp>

#include "elastilm/simd/f16_widen.hpp"

#if defined(__AVX512F__)
#include "elastilm/simd/arch/lane_sums_avx512.hpp"
#endif

namespace elastilm::simd {

inline fbatch lane_sums(const fbatch (&rows)[lanes]) {
#if defined(__AVX512F__)
    if constexpr (lanes == 16) {
        __m512 r[16];
        for (int j = 0; j < 16; ++j) r[j] = rows[j];
        return fbatch(avx512::lane_sums(r));
    } else
#endif
        return xsimd::haddp(rows);  // SSE, AVX and NEON: in order (tests/simd/lane_sums_test.cpp)
}

}  // namespace elastilm::simd
