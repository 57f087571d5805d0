// SwiGLU gate (Shazeer 2020): gate ← silu(gate) ⊙ up, with silu(x) = x·σ(x).
#pragma once
#include <cmath>

namespace elastilm {

inline void silu_mul(float* gate, const float* up, int n) {
    for (int i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace elastilm
