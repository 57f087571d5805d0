// y = W·x for decode: one token, memory-bound, so the goal is to stream every weight byte exactly once
// at full bandwidth. Rows (outputs) are split across the thread pool.
//  out_major: one row at a time, one sequential stream per thread, four accumulators per row in flight.
//  in_major:  y += x[j]·W[:, j] over a thread's block of columns, four columns per pass over y; the
//             threads' partial y are summed at the end.
// A product may carry a few extra input columns E (same layout and rows as W) with their own inputs z:
// y = W·x + E·z in the same pass. Decode reads a LoRA adapter's B this way, as [W | B]·[x ; s·A·x].
#pragma once

#include <algorithm>
#include <atomic>
#include <span>
#include <vector>

#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/simd/f16_widen.hpp"
#include "elastilm/simd/quant_matvec.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm {

// Extra input columns of a product: E (f16, the layout and rows of W) applied to inputs z.
struct ExtraColumns {
    MatrixView E;
    const float* z = nullptr;
};

namespace detail {

// y[i] for rows [r0, r1) of an out_major W (element type T).
// One row at a time: consecutive rows are consecutive in memory, so the thread reads one sequential
// stream the hardware prefetcher can follow across pages (several rows at once would be several short,
// page-bounded streams — measured 30% slower). x stays in L1.
// Bytes ahead of the read position to prefetch: each thread's stream restarts at every matrix, and the
// hardware prefetcher needs a while to ramp up; a software hint one or two pages ahead covers that.
// The hint is an ordinary one (prefetcht0), not non-temporal: on Intel (Sapphire Rapids) prefetchnta
// keeps the line out of L2 and starves the L2 streamer — the 5632×2048 F16 matvec ran 4× slower with it
// (elastilm_bench_kernels, 7 vs 28 GB/s on one thread) and whole-model decode at half of llama.cpp.
inline constexpr std::size_t kPrefetchAhead = 2048;

template <class T>
void matvec_rows(float* y, const T* W, std::size_t ld, int cols, const float* x, int r0, int r1, const ExtraColumns* extra = nullptr) {
    using simd::fbatch;
    constexpr int S = simd::lanes;
    const int end4 = cols / (4 * S) * (4 * S), end1 = cols / S * S;
    // Extra columns join the row's own accumulators: a few more lanes, not a second reduction per row.
    const auto* E = extra ? static_cast<const f16_bits*>(extra->E.data) : nullptr;
    const int e_cols = extra ? extra->E.cols : 0, e_end = e_cols / S * S;
    for (int r = r0; r < r1; ++r) {
        const T* w = W + std::size_t(r) * ld;
        fbatch a0{}, a1{}, a2{}, a3{};
        int j = 0;
        for (; j < end4; j += 4 * S) {
            __builtin_prefetch(w + j + kPrefetchAhead / sizeof(T), 0, 3);
            a0 = xsimd::fma(simd::load(w + j), simd::load(x + j), a0);
            a1 = xsimd::fma(simd::load(w + j + S), simd::load(x + j + S), a1);
            a2 = xsimd::fma(simd::load(w + j + 2 * S), simd::load(x + j + 2 * S), a2);
            a3 = xsimd::fma(simd::load(w + j + 3 * S), simd::load(x + j + 3 * S), a3);
        }
        for (; j < end1; j += S) a0 = xsimd::fma(simd::load(w + j), simd::load(x + j), a0);
        if (E) {
            const f16_bits* e = E + std::size_t(r) * extra->E.ld;
            int k = 0;
            for (; k < e_end; k += S) a1 = xsimd::fma(simd::load(e + k), simd::load(extra->z + k), a1);
            if (k < e_cols) a2 = xsimd::fma(simd::load_partial(e + k, e_cols - k), simd::load_partial(extra->z + k, e_cols - k), a2);
        }
        float sum = xsimd::hadd((a0 + a1) + (a2 + a3));
        for (; j < cols; ++j) sum += simd::to_float(w[j]) * x[j];
        y[r] = sum;
    }
}

// y[0:rows] += Σ_{j in [c0, c1)} x[j]·W[:, j] for an in_major W: column j is contiguous (W + j·ld), so
// a range of columns is one sequential stream. Four columns per pass over y.
template <class T>
void matvec_columns(float* y, const T* W, std::size_t ld, int rows, const float* x, int c0, int c1) {
    using simd::fbatch;
    constexpr int S = simd::lanes;
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

// Columns [c0, c1) of [W | E] (E optional, f16) into y, which the caller has zeroed.
template <class T>
void matvec_columns_extended(float* y, const MatrixView& W, const float* x, const ExtraColumns* extra, int c0, int c1) {
    if (c0 < W.cols) matvec_columns(y, static_cast<const T*>(W.data), W.ld, W.rows, x, c0, std::min(c1, W.cols));
    if (extra && c1 > W.cols)
        matvec_columns(y, static_cast<const f16_bits*>(extra->E.data), extra->E.ld, W.rows, extra->z,
                       std::max(c0, W.cols) - W.cols, c1 - W.cols);
}

template <class T>
void matvec_in_major(float* y, const MatrixView& W, const float* x, ThreadPool* pool, const ExtraColumns* extra) {
    const int columns = W.cols + (extra ? extra->E.cols : 0);
    if (!pool || pool->size() == 1) {
        std::fill(y, y + W.rows, 0.0f);
        matvec_columns_extended<T>(y, W, x, extra, 0, columns);
        return;
    }
    // Each thread sums its own columns into a partial y; the caller adds the partials.
    thread_local std::vector<float> partial;
    const std::size_t stride = (std::size_t(W.rows) + 15) / 16 * 16;
    partial.resize(stride * pool->size());
    std::atomic<int> slots{0};
    float* base = partial.data();
    pool->parallel_for(columns, [&](int c0, int c1) {
        float* part = base + stride * slots.fetch_add(1);
        std::fill(part, part + W.rows, 0.0f);
        matvec_columns_extended<T>(part, W, x, extra, c0, c1);
    }, 4);
    const int used = slots.load();
    std::copy_n(base, W.rows, y);
    for (int s = 1; s < used; ++s)
        for (int r = 0; r < W.rows; ++r) y[r] += base[stride * s + r];
}

}  // namespace detail

// Below ~64K weights that sit in cache, the hand-off to the pool costs more than the work.
inline constexpr std::size_t kParallelMatvecWeights = std::size_t(1) << 16;

// y[i] = Σ_j W(i, j) · x[j] for i < W.rows, j < W.cols, plus Σ_k E(i, k) · z[k] when `extra` is given.
// Output first, then inputs, then options — the argument order of every kernel and op.
// Either layout, any dtype (block formats: simd/quant_matvec.hpp). Split across `pool` from `parallel_from` weights of W.
inline void matvec(float* y, const MatrixView& W, const float* x, ThreadPool* pool = nullptr, const ExtraColumns* extra = nullptr,
                   std::size_t parallel_from = kParallelMatvecWeights) {
    assert(!extra || (extra->E.layout == W.layout && extra->E.rows == W.rows && extra->E.dtype == DType::f16));
    if (is_quantized(W.dtype))
        return quant_matvec(y, W, x, pool, extra ? &extra->E : nullptr, extra ? extra->z : nullptr, parallel_from);
    if (pool && std::size_t(W.rows) * W.cols < parallel_from) pool = nullptr;
    if (W.layout == Layout::in_major) {
        if (W.dtype == DType::f16) detail::matvec_in_major<f16_bits>(y, W, x, pool, extra);
        else detail::matvec_in_major<float>(y, W, x, pool, extra);
        return;
    }
    auto rows = [&](int r0, int r1) {
        if (W.dtype == DType::f16) detail::matvec_rows(y, static_cast<const f16_bits*>(W.data), W.ld, W.cols, x, r0, r1, extra);
        else detail::matvec_rows(y, static_cast<const float*>(W.data), W.ld, W.cols, x, r0, r1, extra);
    };
    if (pool && pool->size() > 1) pool->parallel_for(W.rows, rows, 16);
    else rows(0, W.rows);
}

// y[m] = W[m]·x for products of one input (Wq, Wk, Wv; W_gate, W_up): block formats of one type and
// input count run as one product over all their rows (simd/quant_matvec.hpp's quant_matvecs), other
// weights one matvec each.
inline void matvecs(std::span<float* const> y, std::span<const MatrixView> W, const float* x, ThreadPool* pool = nullptr) {
    const bool fused = std::all_of(W.begin(), W.end(), [&](const MatrixView& w) {
        return is_quantized(w.dtype) && w.dtype == W[0].dtype && w.cols == W[0].cols;
    });
    if (fused) return quant_matvecs(y, W, x, pool);
    for (std::size_t m = 0; m < W.size(); ++m) matvec(y[m], W[m], x, pool);
}

}  // namespace elastilm
