// y = W·x for decode: one token, memory-bound, so the goal is to stream every weight byte exactly once
// at full bandwidth. Rows (outputs) are split across the thread pool.
//  out_major: four rows at a time share each loaded slice of x; two batches per row in flight.
//  in_major:  y[r0:r1] += x[j]·W[:, j] over columns, four columns per pass over the thread's y block.
#pragma once

#include <algorithm>
#include <atomic>
#include <vector>

#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/simd/f16_widen.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm {

namespace detail {

// y[i] for rows [r0, r1) of an out_major W (element type T).
// One row at a time: consecutive rows are consecutive in memory, so the thread reads one sequential
// stream the hardware prefetcher can follow across pages (several rows at once would be several short,
// page-bounded streams — measured 30% slower). x stays in L1.
// Bytes ahead of the read position to prefetch: each thread's stream restarts at every matrix, and the
// hardware prefetcher needs a while to ramp up; a software hint one or two pages ahead covers that.
inline constexpr std::size_t kPrefetchAhead = 2048;

template <class T>
void matvec_rows(const T* W, std::size_t ld, int cols, const float* x, float* y, int r0, int r1) {
    using simd::fbatch;
    constexpr int S = simd::lanes;
    const int end4 = cols / (4 * S) * (4 * S), end1 = cols / S * S;
    for (int r = r0; r < r1; ++r) {
        const T* w = W + std::size_t(r) * ld;
        fbatch a0{}, a1{}, a2{}, a3{};
        int j = 0;
        for (; j < end4; j += 4 * S) {
            __builtin_prefetch(w + j + kPrefetchAhead / sizeof(T), 0, 0);
            a0 = xsimd::fma(simd::load(w + j), simd::load(x + j), a0);
            a1 = xsimd::fma(simd::load(w + j + S), simd::load(x + j + S), a1);
            a2 = xsimd::fma(simd::load(w + j + 2 * S), simd::load(x + j + 2 * S), a2);
            a3 = xsimd::fma(simd::load(w + j + 3 * S), simd::load(x + j + 3 * S), a3);
        }
        for (; j < end1; j += S) a0 = xsimd::fma(simd::load(w + j), simd::load(x + j), a0);
        float sum = xsimd::hadd((a0 + a1) + (a2 + a3));
        for (; j < cols; ++j) sum += simd::to_float(w[j]) * x[j];
        y[r] = sum;
    }
}

// y[0:rows] = Σ_{j in [c0, c1)} x[j]·W[:, j] for an in_major W: column j is contiguous (W + j·ld), so
// a range of columns is one sequential stream. Four columns per pass over y.
template <class T>
void matvec_columns(const T* W, std::size_t ld, int rows, const float* x, float* y, int c0, int c1) {
    using simd::fbatch;
    constexpr int S = simd::lanes;
    std::fill(y, y + rows, 0.0f);
    const int vec_end = rows / S * S;
    int j = c0;
    for (; j + 4 <= c1; j += 4) {
        const T* c[4] = {W + std::size_t(j) * ld, W + std::size_t(j + 1) * ld, W + std::size_t(j + 2) * ld, W + std::size_t(j + 3) * ld};
        const fbatch x0(x[j]), x1(x[j + 1]), x2(x[j + 2]), x3(x[j + 3]);
        for (int r = 0; r < vec_end; r += S) {
            fbatch acc = simd::load(y + r);
            acc = xsimd::fma(simd::load(c[0] + r), x0, acc);
            acc = xsimd::fma(simd::load(c[1] + r), x1, acc);
            acc = xsimd::fma(simd::load(c[2] + r), x2, acc);
            acc = xsimd::fma(simd::load(c[3] + r), x3, acc);
            acc.store_unaligned(y + r);
        }
        for (int r = vec_end; r < rows; ++r)
            y[r] += simd::to_float(c[0][r]) * x[j] + simd::to_float(c[1][r]) * x[j + 1] + simd::to_float(c[2][r]) * x[j + 2] +
                    simd::to_float(c[3][r]) * x[j + 3];
    }
    for (; j < c1; ++j) {
        const T* c = W + std::size_t(j) * ld;
        for (int r = 0; r < rows; ++r) y[r] += simd::to_float(c[r]) * x[j];
    }
}

template <class T>
void matvec_in_major(const MatrixView& W, const float* x, float* y, ThreadPool* pool) {
    const T* data = static_cast<const T*>(W.data);
    if (!pool || pool->size() == 1) {
        matvec_columns(data, W.ld, W.rows, x, y, 0, W.cols);
        return;
    }
    // Each thread sums its own columns into a partial y; the caller adds the partials.
    thread_local std::vector<float> partial;
    const std::size_t stride = (std::size_t(W.rows) + 15) / 16 * 16;
    partial.resize(stride * pool->size());
    std::atomic<int> slots{0};
    float* base = partial.data();
    pool->parallel_for(W.cols, [&](int c0, int c1) {
        matvec_columns(data, W.ld, W.rows, x, base + stride * slots.fetch_add(1), c0, c1);
    }, 4);
    const int used = slots.load();
    std::copy_n(base, W.rows, y);
    for (int s = 1; s < used; ++s)
        for (int r = 0; r < W.rows; ++r) y[r] += base[stride * s + r];
}

}  // namespace detail

// y[i] = Σ_j W(i, j) · x[j] for i < W.rows, j < W.cols. Either layout, either dtype.
inline void matvec(const MatrixView& W, const float* x, float* y, ThreadPool* pool = nullptr) {
    // Below ~64K weights the hand-off costs more than the work.
    if (pool && std::size_t(W.rows) * W.cols < (1u << 16)) pool = nullptr;
    if (W.layout == Layout::in_major) {
        if (W.dtype == DType::f16) detail::matvec_in_major<f16_bits>(W, x, y, pool);
        else detail::matvec_in_major<float>(W, x, y, pool);
        return;
    }
    auto rows = [&](int r0, int r1) {
        if (W.dtype == DType::f16) detail::matvec_rows(static_cast<const f16_bits*>(W.data), W.ld, W.cols, x, y, r0, r1);
        else detail::matvec_rows(static_cast<const float*>(W.data), W.ld, W.cols, x, y, r0, r1);
    };
    if (pool && pool->size() > 1) pool->parallel_for(W.rows, rows, 16);
    else rows(0, W.rows);
}

}  // namespace elastilm
