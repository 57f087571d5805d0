// Numerically stable softmax in place.
#pragma once
#include <algorithm>
#include <cmath>

namespace elastilm {

inline void softmax(float* x, int n) {
    const float max = *std::max_element(x, x + n);
    float sum = 0;
    for (int i = 0; i < n; ++i) { x[i] = std::exp(x[i] - max); sum += x[i]; }
    const float inv = 1.0f / sum;
    for (int i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace elastilm
