// y = W·x for decode with W in a block format (Q8_0 / Q4_0, out_major, blocks along the inputs):
// x is quantized once per call (simd/quant_dot.hpp), then rows are split across the pool as in the fp16
// matvec, each row one sequential stream of whole blocks. A ratio's slice is a prefix of each row's
// blocks (W.cols a multiple of 32), so the same kernel serves every width.
//
// With AVX-512 VNNI and BW (-march with both) each row's dot product is simd/quant_matvec_vnni.hpp's,
// several blocks per 512-bit vector from activations laid out for the weight type; elsewhere it is
// simd/quant_dot.hpp's, one block at a time.
#pragma once

#include <algorithm>
#include <vector>

#include "elastilm/error.hpp"
#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/simd/quant_dot.hpp"
#include "elastilm/tensor.hpp"

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define ELASTILM_QMATVEC_VNNI 1
#include "elastilm/simd/quant_matvec_vnni.hpp"
#else
#define ELASTILM_QMATVEC_VNNI 0
#endif

namespace elastilm {

namespace detail {

// Σ_k e[k]·z[k] for a row of fp16 extra columns (a LoRA adapter's B).
inline float extra_dot(const f16_bits* e, const float* z, int n) {
    constexpr int S = simd::lanes;
    simd::fbatch acc{};
    int k = 0;
    for (; k + S <= n; k += S) acc = xsimd::fma(simd::load(e + k), simd::load(z + k), acc);
    float sum = xsimd::hadd(acc);
    for (; k < n; ++k) sum += simd::to_float(e[k]) * z[k];
    return sum;
}

// Software prefetch: the rows' pieces a thread reads are one stream when a view spans whole rows, but
// a ratio's prefix of a row is a short piece followed by a skip, which the hardware prefetcher does not
// follow. So the kernel prefetches the piece of the row ~2 KB ahead in its own sequence (never the
// skipped bytes), which covers both cases: row_dot(w, blocks, ahead) gets `ahead`, the same blocks that
// many rows later (nullptr near the end of the thread's rows), and prefetches from it as it goes.
// Ordinary hints, not non-temporal ones: see simd/matvec.hpp.
inline constexpr std::size_t kQuantPrefetchAhead = 2048;

// y[r] for r in [r0, r1): row_dot(first block of row r, blocks, ahead) + the extra columns' product.
template <class Block, class RowDot>
void quant_rows(float* y, const MatrixView& W, RowDot row_dot, int r0, int r1, const MatrixView* E, const float* z) {
    const int blocks = W.cols / kQuantBlock;
    const std::size_t row_blocks = W.ld / kQuantBlock;
    const auto* base = static_cast<const Block*>(W.data);
    const std::size_t piece = std::size_t(blocks) * sizeof(Block);
    const int ahead = int(std::max<std::size_t>(1, (kQuantPrefetchAhead + piece - 1) / piece));
    for (int r = r0; r < r1; ++r) {
        const Block* later = r + ahead < r1 ? base + std::size_t(r + ahead) * row_blocks : nullptr;
        float sum = row_dot(base + std::size_t(r) * row_blocks, blocks, later);
        if (E) sum += extra_dot(static_cast<const f16_bits*>(E->data) + std::size_t(r) * E->ld, z, E->cols);
        y[r] = sum;
    }
}

// The one-block-at-a-time kernel's prefetch: all of a row's piece at once, into L1.
template <class Block>
void prefetch_piece(const Block* row, int blocks) {
    if (!row) return;
    const char* p = reinterpret_cast<const char*>(row);
    for (std::size_t o = 0; o < std::size_t(blocks) * sizeof(Block); o += 64) __builtin_prefetch(p + o, 0, 3);
}

inline void require_quant_view(const MatrixView& W) {
    require(W.layout == Layout::out_major && W.cols % kQuantBlock == 0 && W.ld % kQuantBlock == 0, "quantized product",
            std::string(to_string(W.dtype)) + " weights must be output-major with whole 32-element input blocks (" +
                std::to_string(W.cols) + " inputs); a transposed product (training) needs F16 or F32 weights");
}

}  // namespace detail

namespace detail {

// The matvec with the zmm row kernel (Zmm, only when compiled with AVX-512 VNNI and BW) or the one-block-
// at-a-time one (simd/quant_dot.hpp); bench/quant_kernels.cpp times both side by side.
template <bool Zmm>
void quant_matvec(float* y, const MatrixView& W, const float* x, ThreadPool* pool, const MatrixView* E, const float* z,
                  std::size_t parallel_from) {
    require_quant_view(W);
    if (pool && std::size_t(W.rows) * W.cols < parallel_from) pool = nullptr;
    // dot8 / dot4: a row's dot product with the quantized x, for Q8_0 / Q4_0 rows.
    auto run = [&](auto dot8, auto dot4) {
        auto rows = [&](int r0, int r1) {
            if (W.dtype == DType::q8_0) quant_rows<BlockQ8_0>(y, W, dot8, r0, r1, E, z);
            else quant_rows<BlockQ4_0>(y, W, dot4, r0, r1, E, z);
        };
        if (pool && pool->size() > 1) pool->parallel_for(W.rows, rows, 16);
        else rows(0, W.rows);
    };
    // The quantized activations are thread_local: the pool's threads read the caller's copy, through the
    // pointers the lambdas capture.
    if constexpr (Zmm) {
#if ELASTILM_QMATVEC_VNNI
        thread_local std::vector<qvnni_matvec::ActGroupQ8> x8;
        thread_local std::vector<qvnni_matvec::ActGroupQ4> x4;
        if (W.dtype == DType::q8_0) qvnni_matvec::quantize_activations<BlockQ8_0>(x8, x, W.cols);
        else qvnni_matvec::quantize_activations<BlockQ4_0>(x4, x, W.cols);
        const qvnni_matvec::ActGroupQ8* xb8 = x8.data();
        const qvnni_matvec::ActGroupQ4* xb4 = x4.data();
        run([xb8](const BlockQ8_0* w, int n, const BlockQ8_0* later) { return qvnni_matvec::dot_row(w, xb8, n, later); },
            [xb4](const BlockQ4_0* w, int n, const BlockQ4_0* later) { return qvnni_matvec::dot_row(w, xb4, n, later); });
#else
        static_assert(!Zmm, "the zmm kernel needs -march with AVX-512 VNNI and BW");
#endif
    } else {
        thread_local std::vector<ActBlock> xq;
        xq.resize(std::size_t(W.cols / kQuantBlock));
        quantize_activations(xq.data(), x, W.cols);
        const ActBlock* xb = xq.data();
        run([xb](const BlockQ8_0* w, int n, const BlockQ8_0* later) {
                prefetch_piece(later, n);
                return simd::dot_blocks(w, xb, n);
            },
            [xb](const BlockQ4_0* w, int n, const BlockQ4_0* later) {
                prefetch_piece(later, n);
                return simd::dot_blocks(w, xb, n);
            });
    }
}

}  // namespace detail

// y[i] = Σ_j W(i, j) · x[j] (+ Σ_k E(i, k) · z[k] when E is given: f16, out_major, W's rows).
inline void quant_matvec(float* y, const MatrixView& W, const float* x, ThreadPool* pool = nullptr, const MatrixView* E = nullptr,
                         const float* z = nullptr, std::size_t parallel_from = std::size_t(1) << 16) {
    detail::quant_matvec<bool(ELASTILM_QMATVEC_VNNI)>(y, W, x, pool, E, z, parallel_from);
}

}  // namespace elastilm
