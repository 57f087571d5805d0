// y = W·x for decode: one token, memory-bound. Reads each weight exactly once.
// PLACEHOLDER scalar body: to be replaced by the xsimd implementation (same signature).
#pragma once

#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/simd/f16.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm {

// y[i] = Σ_j W(i, j) · x[j] for i < W.rows, j < W.cols. Either layout, either dtype.
inline void matvec(const MatrixView& W, const float* x, float* y, ThreadPool* pool = nullptr) {
    auto at = [&](int i, int j) -> float {
        const std::size_t k = W.layout == Layout::out_major ? std::size_t(i) * W.ld + j : std::size_t(j) * W.ld + i;
        return W.dtype == DType::f32 ? static_cast<const float*>(W.data)[k]
                                     : f16_to_f32(static_cast<const f16_bits*>(W.data)[k]);
    };
    auto rows = [&](int r0, int r1) {
        for (int i = r0; i < r1; ++i) {
            float acc = 0;
            for (int j = 0; j < W.cols; ++j) acc += at(i, j) * x[j];
            y[i] = acc;
        }
    };
    if (pool) pool->parallel_for(W.rows, rows, 16); else rows(0, W.rows);
}

}  // namespace elastilm
