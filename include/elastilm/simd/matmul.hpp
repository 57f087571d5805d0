// Y = X·Wᵀ for prefill: n tokens at once, compute-bound.
// PLACEHOLDER body (calls matvec per token): to be replaced by the cache-blocked xsimd kernel.
#pragma once

#include "elastilm/simd/matvec.hpp"

namespace elastilm {

// Y[t, i] = Σ_j W(i, j) · X[t, j] for t < n, i < W.rows, j < W.cols.
// X is row-major with leading dimension ldx (>= W.cols); Y row-major with ldy (>= W.rows).
inline void matmul(const MatrixView& W, const float* X, int ldx, float* Y, int ldy, int n, ThreadPool* pool = nullptr) {
    for (int t = 0; t < n; ++t) matvec(W, X + std::size_t(t) * ldx, Y + std::size_t(t) * ldy, pool);
}

}  // namespace elastilm
