// y = W·x for decode with W in a block format (Q8_0 / Q4_0, out_major, blocks along the inputs):
// x is quantized once per call (simd/quant_dot.hpp), then rows are split across the pool as in the fp16
// matvec, each row one sequential stream of whole blocks. A ratio's slice is a prefix of each row's
// blocks (W.cols a multiple of 32), so the same kernel serves every width.
#pragma once

#include <algorithm>
#include <vector>

#include "elastilm/error.hpp"
#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/simd/quant_dot.hpp"
#include "elastilm/tensor.hpp"

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
// skipped bytes), which covers both cases. An ordinary hint, not a non-temporal one: see simd/matvec.hpp.
inline constexpr std::size_t kQuantPrefetchAhead = 2048;

template <class Block>
void quant_rows(float* y, const MatrixView& W, const ActBlock* xq, int r0, int r1, const MatrixView* E, const float* z) {
    const int blocks = W.cols / kQuantBlock;
    const std::size_t row_blocks = W.ld / kQuantBlock;
    const auto* base = static_cast<const Block*>(W.data);
    const std::size_t piece = std::size_t(blocks) * sizeof(Block);
    const int ahead = int(std::max<std::size_t>(1, (kQuantPrefetchAhead + piece - 1) / piece));
    for (int r = r0; r < r1; ++r) {
        if (r + ahead < r1) {
            const char* p = reinterpret_cast<const char*>(base + std::size_t(r + ahead) * row_blocks);
            for (std::size_t o = 0; o < piece; o += 64) __builtin_prefetch(p + o, 0, 3);
        }
        float sum = simd::dot_blocks(base + std::size_t(r) * row_blocks, xq, blocks);
        if (E) sum += extra_dot(static_cast<const f16_bits*>(E->data) + std::size_t(r) * E->ld, z, E->cols);
        y[r] = sum;
    }
}

inline void require_quant_view(const MatrixView& W) {
    require(W.layout == Layout::out_major && W.cols % kQuantBlock == 0 && W.ld % kQuantBlock == 0, "quantized product",
            std::string(to_string(W.dtype)) + " weights must be output-major with whole 32-element input blocks (" +
                std::to_string(W.cols) + " inputs); a transposed product (training) needs F16 or F32 weights");
}

}  // namespace detail

// Quantizes x[0..W.cols) into `xq` (W.cols / 32 blocks).
inline void quantize_input(std::vector<ActBlock>& xq, const MatrixView& W, const float* x) {
    xq.resize(std::size_t(W.cols / kQuantBlock));
    quantize_activations(xq.data(), x, W.cols);
}

// y[i] = Σ_j W(i, j) · x[j] (+ Σ_k E(i, k) · z[k] when E is given: f16, out_major, W's rows).
inline void quant_matvec(float* y, const MatrixView& W, const float* x, ThreadPool* pool = nullptr, const MatrixView* E = nullptr,
                         const float* z = nullptr, std::size_t parallel_from = std::size_t(1) << 16) {
    detail::require_quant_view(W);
    thread_local std::vector<ActBlock> xq;
    quantize_input(xq, W, x);
    const ActBlock* xb = xq.data();  // thread_local: the pool's threads must read the caller's copy
    if (pool && std::size_t(W.rows) * W.cols < parallel_from) pool = nullptr;
    auto rows = [&](int r0, int r1) {
        if (W.dtype == DType::q8_0) detail::quant_rows<BlockQ8_0>(y, W, xb, r0, r1, E, z);
        else detail::quant_rows<BlockQ4_0>(y, W, xb, r0, r1, E, z);
    };
    if (pool && pool->size() > 1) pool->parallel_for(W.rows, rows, 16);
    else rows(0, W.rows);
}

}  // namespace elastilm
