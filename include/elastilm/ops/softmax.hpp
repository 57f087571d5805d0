// Numerically stable softmax in place.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>

#include "elastilm/simd/f16_widen.hpp"

namespace elastilm {

// In SIMD lanes (xsimd's exp), as silu_mul: decode attention runs one softmax per head over every cached
// position between two products, while the memory idles, and it called libm's expf once per position.
inline void softmax(float* x, int n) {
    using simd::fbatch;
    constexpr int S = simd::lanes;
    int i = 0;
    float max = -INFINITY;
    if (n >= S) {
        fbatch m = simd::load(x);
        for (i = S; i + S <= n; i += S) m = xsimd::max(m, simd::load(x + i));
        alignas(64) std::array<float, S> lanes{};
        m.store_aligned(lanes.data());
        max = *std::max_element(lanes.begin(), lanes.end());
    }
    for (; i < n; ++i) max = std::max(max, x[i]);
    fbatch sums{};
    const fbatch mb(max);
    for (i = 0; i + S <= n; i += S) {
        const fbatch e = xsimd::exp(simd::load(x + i) - mb);
        e.store_unaligned(x + i);
        sums += e;
    }
    float sum = xsimd::hadd(sums);
    for (; i < n; ++i) {
        x[i] = std::exp(x[i] - max);
        sum += x[i];
    }
    const float inv = 1.0f / sum;
    for (i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace elastilm
