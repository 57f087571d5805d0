// Softmax and its pieces over a row of logits or scores: the largest value, log Σ exp, and the softmax
// in place. All in SIMD lanes (xsimd's exp): decode attention runs one softmax per head over every
// cached position between two products while the memory idles, and the distillation loss and the TLM's
// next-token distributions run log Σ exp over 32000-wide vocabularies.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>

#include "elastilm/simd/f16_widen.hpp"

namespace elastilm {

namespace detail {
// Float sums of exponentials are flushed to a double every this many batches, so a 32000-wide row
// keeps a double's accuracy without a double per lane.
inline constexpr int kFlushBatches = 64;
}  // namespace detail

// max(z[0 .. n)), n ≥ 1.
inline float max_of(const float* z, int n) {
    using simd::fbatch;
    constexpr int S = simd::lanes;
    float mx = z[0];
    int i = 0;
    if (n >= S) {
        fbatch m = simd::load(z);
        for (i = S; i + S <= n; i += S) m = xsimd::max(m, simd::load(z + i));
        alignas(64) std::array<float, S> lanes{};
        m.store_aligned(lanes.data());
        mx = *std::max_element(lanes.begin(), lanes.end());
    }
    for (; i < n; ++i) mx = std::max(mx, z[i]);
    return mx;
}

// log Σ exp(z[0 .. n)), stable (the largest value is taken out first), n ≥ 1.
inline float log_sum_exp(const float* z, int n) {
    using simd::fbatch;
    constexpr int S = simd::lanes;
    const float mx = max_of(z, n);
    double sum = 0;
    fbatch acc(0.0f);
    int i = 0, blocks = 0;
    for (; i + S <= n; i += S) {
        acc += xsimd::exp(simd::load(z + i) - fbatch(mx));
        if (++blocks == detail::kFlushBatches) sum += xsimd::hadd(acc), acc = fbatch(0.0f), blocks = 0;
    }
    sum += xsimd::hadd(acc);
    for (; i < n; ++i) sum += std::exp(z[i] - mx);
    return float(double(mx) + std::log(sum));
}

// x[0 .. n) = softmax(x), stable, n ≥ 1.
inline void softmax(float* x, int n) {
    using simd::fbatch;
    constexpr int S = simd::lanes;
    const float max = max_of(x, n);
    fbatch sums{};
    const fbatch mb(max);
    int i = 0;
    for (; i + S <= n; i += S) {
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
