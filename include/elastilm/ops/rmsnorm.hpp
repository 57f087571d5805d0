// RMSNorm (Zhang & Sennrich 2019): out = x / sqrt(mean(x²) + eps) ⊙ weight.
#pragma once
#include <cmath>

namespace elastilm {

inline void rmsnorm(float* out, const float* x, const float* weight, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += double(x[i]) * x[i];
    const float scale = 1.0f / std::sqrt(float(ss / n) + eps);
    for (int i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

}  // namespace elastilm
