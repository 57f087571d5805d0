// y = W·x for one token (memory-bound matvec) or for a block of tokens (compute-bound matmul).
#pragma once

#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/simd/matmul.hpp"
#include "elastilm/simd/matvec.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm {

// Y[t, :W.rows] = W · X[t, :W.cols] for t < n.
inline void linear(const MatrixView& W, const float* X, int ldx, float* Y, int ldy, int n, ThreadPool& pool) {
    if (n == 1) matvec(W, X, Y, &pool);
    else matmul(W, X, ldx, Y, ldy, n, &pool);
}

}  // namespace elastilm
