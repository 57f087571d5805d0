// RMSNorm (Zhang & Sennrich 2019): out = x / sqrt(mean(x²) + eps) ⊙ weight.
#pragma once
#include <cmath>

#include "elastilm/simd/f16_widen.hpp"

namespace elastilm {

// The sum of squares runs in SIMD lanes, two accumulators deep: a scalar running sum is one chain of
// n dependent adds, and decode runs two norms per layer as serial work between products (prefill one per
// token on one thread). Each lane sums n / (2·lanes) squares in fp32, within a few ulps of the
// double-precision sum at model widths (tests/ops/rmsnorm_test.cpp).
inline void rmsnorm(float* out, const float* x, const float* weight, int n, float eps) {
    using simd::fbatch;
    constexpr int S = simd::lanes;
    fbatch acc0{}, acc1{};
    int i = 0;
    for (; i + 2 * S <= n; i += 2 * S) {
        const fbatch a = simd::load(x + i), b = simd::load(x + i + S);
        acc0 = xsimd::fma(a, a, acc0);
        acc1 = xsimd::fma(b, b, acc1);
    }
    for (; i + S <= n; i += S) {
        const fbatch a = simd::load(x + i);
        acc0 = xsimd::fma(a, a, acc0);
    }
    float ss = xsimd::hadd(acc0 + acc1);
    for (; i < n; ++i) ss += x[i] * x[i];
    const float scale = 1.0f / std::sqrt(ss / float(n) + eps);
    for (i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

}  // namespace elastilm
