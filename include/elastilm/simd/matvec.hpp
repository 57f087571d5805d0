// y = W·x for decode: one token, memory-bound, so the goal is to stream every weight byte exactly once
// at full bandwidth. Rows (outputs) are split across the thread pool.
//  out_major: four rows at a time share each loaded slice of x; two batches per row in flight.
//  in_major:  y[r0:r1] += x[j]·W[:, j] over columns, four columns per pass over the thread's y block.
#pragma once

#include <algorithm>

#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/simd/f16_widen.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm {

namespace detail {

// y[i] for rows [r0, r1) of an out_major W (element type T).
template <class T>
void matvec_rows(const T* W, std::size_t ld, int cols, const float* x, float* y, int r0, int r1) {
    using simd::fbatch;
    constexpr int S = simd::lanes;
    const int vec_end = cols / (2 * S) * (2 * S);
    int r = r0;
    for (; r + 4 <= r1; r += 4) {
        const T* w[4] = {W + std::size_t(r) * ld, W + std::size_t(r + 1) * ld, W + std::size_t(r + 2) * ld, W + std::size_t(r + 3) * ld};
        fbatch a[4][2] = {};
        for (int j = 0; j < vec_end; j += 2 * S) {
            const fbatch x0 = simd::load(x + j), x1 = simd::load(x + j + S);
            for (int k = 0; k < 4; ++k) {
                a[k][0] = xsimd::fma(simd::load(w[k] + j), x0, a[k][0]);
                a[k][1] = xsimd::fma(simd::load(w[k] + j + S), x1, a[k][1]);
            }
        }
        for (int k = 0; k < 4; ++k) {
            float s = xsimd::hadd(a[k][0] + a[k][1]);
            for (int j = vec_end; j < cols; ++j) s += simd::to_float(w[k][j]) * x[j];
            y[r + k] = s;
        }
    }
    for (; r < r1; ++r) {
        const T* w = W + std::size_t(r) * ld;
        fbatch a0{}, a1{};
        for (int j = 0; j < vec_end; j += 2 * S) {
            a0 = xsimd::fma(simd::load(w + j), simd::load(x + j), a0);
            a1 = xsimd::fma(simd::load(w + j + S), simd::load(x + j + S), a1);
        }
        float s = xsimd::hadd(a0 + a1);
        for (int j = vec_end; j < cols; ++j) s += simd::to_float(w[j]) * x[j];
        y[r] = s;
    }
}

// y[r0:r1] of an in_major W: column j of W is contiguous (W + j·ld).
template <class T>
void matvec_columns(const T* W, std::size_t ld, int cols, const float* x, float* y, int r0, int r1) {
    using simd::fbatch;
    constexpr int S = simd::lanes;
    std::fill(y + r0, y + r1, 0.0f);
    const int vec_end = r0 + (r1 - r0) / S * S;
    int j = 0;
    for (; j + 4 <= cols; j += 4) {
        const T* c[4] = {W + std::size_t(j) * ld, W + std::size_t(j + 1) * ld, W + std::size_t(j + 2) * ld, W + std::size_t(j + 3) * ld};
        const fbatch x0(x[j]), x1(x[j + 1]), x2(x[j + 2]), x3(x[j + 3]);
        for (int r = r0; r < vec_end; r += S) {
            fbatch acc = simd::load(y + r);
            acc = xsimd::fma(simd::load(c[0] + r), x0, acc);
            acc = xsimd::fma(simd::load(c[1] + r), x1, acc);
            acc = xsimd::fma(simd::load(c[2] + r), x2, acc);
            acc = xsimd::fma(simd::load(c[3] + r), x3, acc);
            acc.store_unaligned(y + r);
        }
        for (int r = vec_end; r < r1; ++r)
            y[r] += simd::to_float(c[0][r]) * x[j] + simd::to_float(c[1][r]) * x[j + 1] + simd::to_float(c[2][r]) * x[j + 2] +
                    simd::to_float(c[3][r]) * x[j + 3];
    }
    for (; j < cols; ++j) {
        const T* c = W + std::size_t(j) * ld;
        for (int r = r0; r < r1; ++r) y[r] += simd::to_float(c[r]) * x[j];
    }
}

template <class T>
void matvec_range(const MatrixView& W, const float* x, float* y, int r0, int r1) {
    const T* data = static_cast<const T*>(W.data);
    if (W.layout == Layout::out_major) matvec_rows(data, W.ld, W.cols, x, y, r0, r1);
    else matvec_columns(data, W.ld, W.cols, x, y, r0, r1);
}

}  // namespace detail

// y[i] = Σ_j W(i, j) · x[j] for i < W.rows, j < W.cols. Either layout, either dtype.
inline void matvec(const MatrixView& W, const float* x, float* y, ThreadPool* pool = nullptr) {
    auto run = [&](int r0, int r1) {
        if (W.dtype == DType::f16) detail::matvec_range<f16_bits>(W, x, y, r0, r1);
        else detail::matvec_range<float>(W, x, y, r0, r1);
    };
    // Below ~64K weights the hand-off costs more than the work.
    const bool parallel = pool && pool->size() > 1 && std::size_t(W.rows) * W.cols >= (1u << 16);
    // Chunks of whole cache lines of y (in_major) / whole 4-row groups (out_major).
    if (parallel) pool->parallel_for(W.rows, run, 16);
    else run(0, W.rows);
}

}  // namespace elastilm
