// y = W·x for one token (memory-bound matvec) or for a block of tokens (compute-bound matmul).
#pragma once

#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/simd/matmul.hpp"
#include "elastilm/simd/matvec.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm {

// Y[t, :W.rows] = W · X[t, :W.cols] for t < n. `weights`: whether prefill's reduced GEMM may round W
// (simd/precision.hpp); decode's matvec reads W exactly either way.
inline void linear(float* Y, int ldy, const MatrixView& W, const float* X, int ldx, int n, ThreadPool& pool,
                   GemmWeights weights = GemmWeights::exact) {
    if (n == 1) matvec(Y, W, X, &pool);
    else matmul(Y, ldy, W, X, ldx, n, &pool, weights);
}

}  // namespace elastilm
