// Y = X·Wᵀ for prefill with W in a block format: n tokens at once, compute-bound.
//
//   quantize X per block of 32 (as decode does)
//   for each chunk of TC tokens:                          (their activation blocks stay in L2)
//     for each tile of NR weight rows (split across threads):   (NR rows of blocks stay in L1)
//       for each MR tokens: micro-kernel over all input blocks
//
// The micro-kernel is register-tiled: per input block it unpacks NR weight blocks once and multiplies
// each with MR token blocks, NR·MR integer dot products into NR·MR vector accumulators.
//
// On x86 with AVX-512 VNNI and BW the GEMM instead packs weight panels and feeds vpdpbusd unsigned
// activations (simd/quant_gemm_packed.hpp), ~6× faster on Sapphire Rapids (README, quantized speed); this
// tiled kernel stays for AVX2, NEON and scalar. On ARM with I8MM (__ARM_FEATURE_MATMUL_INT8) the
// micro-kernel is micro_kernel_mmla: SMMLA multiplies 2 weight rows by 2 tokens over 8 k at once
// (simd/arch/quant_mmla_neon.hpp), so each chunk's tokens are first interleaved in pairs (pair_tokens)
// and each 2-row tile walks them a pair at a time.
#pragma once

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/simd/quant_matvec.hpp"
#include "elastilm/tensor.hpp"

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define ELASTILM_QGEMM_PACKED 1
#include "elastilm/simd/quant_gemm_packed.hpp"
#else
#define ELASTILM_QGEMM_PACKED 0
#endif

#if defined(__ARM_FEATURE_MATMUL_INT8)
#define ELASTILM_QGEMM_MMLA 1
#include "elastilm/simd/arch/quant_mmla_neon.hpp"
#else
#define ELASTILM_QGEMM_MMLA 0
#endif

namespace elastilm {

namespace qgemm {

inline constexpr int NR = 2;    // weight rows per tile
inline constexpr int MR = 4;    // tokens per tile: NR·MR accumulators + NR unpacked blocks fit 16 registers
inline constexpr int TC = 64;   // tokens per chunk

// Y[m][r] = Σ_b W[r] · X[m] for r < R (≤ NR) rows and M (≤ MR) tokens.
template <class Block, int R, int M>
void micro_kernel(float* Y, std::size_t ldy, const Block* const* w, const ActBlock* const* x, int blocks) {
    std::array<std::array<simd::qarch::Acc, M>, R> acc;
    for (auto& row : acc) row.fill(simd::qarch::zero());
    for (int b = 0; b < blocks; ++b) {
        simd::qarch::W32 wb[R];
        float dw[R];
        for (int r = 0; r < R; ++r) {
            wb[r] = simd::load_block(w[r][b]);
            dw[r] = simd::to_float(w[r][b].d);
        }
        for (int m = 0; m < M; ++m) {
            const ActBlock& xb = x[m][b];
            for (int r = 0; r < R; ++r) acc[r][m] = simd::qarch::madd(acc[r][m], wb[r], xb.q, dw[r] * xb.d);
        }
    }
    for (int m = 0; m < M; ++m)
        for (int r = 0; r < R; ++r) Y[m * ldy + r] = simd::qarch::sum(acc[r][m]);
}

// Walks tiles [tile0, tile1) of W against tokens [t0, t1) in groups of MR: run(w, R, r0, m0, M) with w
// the tile's R row pointers (R < NR and M < MR at the tails). Both micro-kernel families walk the same.
// Interleaved rows (a --no-mmap copy on a build whose decode kernel reads that order) are read as GGUF
// blocks: each tile's rows, only the blocks W's slice uses, are moved back into this thread's buffer
// once per chunk of TC tokens, whose products then reuse them.
template <class Block, class Run>
void for_each_tile(const MatrixView& W, int t0, int t1, int tile0, int tile1, Run&& run) {
    const std::size_t row_blocks = W.ld / kQuantBlock, blocks = std::size_t(W.cols / kQuantBlock);
    const auto* base = static_cast<const Block*>(W.data);
    const bool interleaved_rows = W.order == BlockOrder::interleaved;
    thread_local std::vector<Block> gguf;
    if (interleaved_rows) gguf.resize(std::size_t(NR) * blocks);
    for (int tile = tile0; tile < tile1; ++tile) {
        const int r0 = tile * NR, R = std::min(NR, W.rows - r0);
        const Block* w[NR];
        for (int r = 0; r < R; ++r) {
            if (!interleaved_rows) {
                w[r] = base + std::size_t(r0 + r) * row_blocks;
                continue;
            }
            interleaved::gguf_prefix(reinterpret_cast<std::byte*>(gguf.data() + std::size_t(r) * blocks), W, r0 + r);
            w[r] = gguf.data() + std::size_t(r) * blocks;
        }
        for (int m0 = t0; m0 < t1; m0 += MR) run(static_cast<const Block* const*>(w), R, r0, m0, std::min(MR, t1 - m0));
    }
}

#if ELASTILM_QGEMM_MMLA
// Two tokens' blocks as SMMLA's second operand: q[16g, 16g + 8) holds the first token's elements
// [8g, 8g + 8), q[16g + 8, 16g + 16) the second's. Interleaved once per chunk of tokens, not once per
// weight tile: every tile of the chunk then loads a pair with four plain loads.
struct ActPair {
    float d[2];
    std::int8_t q[2 * kQuantBlock];
};

// Tokens [t0, t1) of xq (t · blocks + b) as pairs (t0, t0 + 1), (t0 + 2, t0 + 3), …: out[p · blocks + b].
// An odd last token is paired with itself (its duplicate's products are computed and never stored).
inline void pair_tokens(ActPair* out, const ActBlock* xq, int blocks, int t0, int t1) {
    for (int p = 0; t0 + 2 * p < t1; ++p) {
        const int a = t0 + 2 * p, b = std::min(a + 1, t1 - 1);
        for (int k = 0; k < blocks; ++k) {
            const ActBlock &x0 = xq[std::size_t(a) * blocks + k], &x1 = xq[std::size_t(b) * blocks + k];
            ActPair& o = out[std::size_t(p) * blocks + k];
            o.d[0] = x0.d;
            o.d[1] = x1.d;
            for (int g = 0; g < kQuantBlock / 8; ++g) {
                std::copy_n(x0.q + 8 * g, 8, o.q + 16 * g);
                std::copy_n(x1.q + 8 * g, 8, o.q + 16 * g + 8);
            }
        }
    }
}

// The same tile with SMMLA: per input block the two weight rows are interleaved once (8 k of row 0, 8 k
// of row 1, …: the 2×8 operand SMMLA wants), then against each pair of tokens (interleaved the same way
// by pair_tokens) four SMMLA give the block's 2×2 (row, token) integer products, scaled by d_w·d_x into
// an fp32 tile. Tails reuse the full-width instruction: a single row is paired with itself, and only
// the real (row, token) lanes are stored. x: the tile's first pair; pair p at x + p · blocks.
template <class Block, int R, int M>
void micro_kernel_mmla(float* Y, std::size_t ldy, const Block* const* w, const ActPair* x, int blocks) {
    constexpr int P = (M + 1) / 2;  // token pairs
    std::array<simd::qmmla::Tile, P> acc;
    acc.fill(simd::qmmla::zero());
    const Block* w0 = w[0];
    const Block* w1 = w[R - 1];
    for (int b = 0; b < blocks; ++b) {
        const simd::qmmla::Pair32 wp = simd::qmmla::interleave(simd::load_block(w0[b]), simd::load_block(w1[b]));
        const float32x4_t dw = simd::qmmla::row_scales(simd::to_float(w0[b].d), simd::to_float(w1[b].d));
        for (int p = 0; p < P; ++p) {
            const ActPair& xp = x[std::size_t(p) * blocks + b];
            acc[p] = simd::qmmla::madd(acc[p], wp, simd::qmmla::load_pair(xp.q), simd::qmmla::scales(dw, xp.d));
        }
    }
    for (int p = 0; p < P; ++p) {
        float tile[4];
        simd::qmmla::store(tile, acc[p]);
        for (int t = 0; t < 2 && 2 * p + t < M; ++t)
            for (int r = 0; r < R; ++r) Y[std::size_t(2 * p + t) * ldy + r] = tile[2 * r + t];
    }
}

template <class Block>
using MmlaKernel = void (*)(float*, std::size_t, const Block* const*, const ActPair*, int);

template <class Block>
inline constexpr auto mmla_kernels = []<std::size_t... I>(std::index_sequence<I...>) {
    return std::array<MmlaKernel<Block>, NR * MR>{&micro_kernel_mmla<Block, int(I) / MR + 1, int(I) % MR + 1>...};
}(std::make_index_sequence<NR * MR>{});

// Tiles [tile0, tile1) against the chunk's token pairs (xp: pair_tokens of tokens [t0, t1)).
template <class Block>
void tiles_mmla(float* Y, int ldy, const MatrixView& W, const ActPair* xp, int t0, int t1, int tile0, int tile1) {
    static_assert(MR % 2 == 0 && TC % 2 == 0, "a tile's tokens start on a pair");
    const int blocks = W.cols / kQuantBlock;
    for_each_tile<Block>(W, t0, t1, tile0, tile1, [&](const Block* const* w, int R, int r0, int m0, int M) {
        mmla_kernels<Block>[(R - 1) * MR + M - 1](Y + std::size_t(m0) * ldy + r0, std::size_t(ldy), w,
                                                  xp + std::size_t((m0 - t0) / 2) * blocks, blocks);
    });
}
#endif

// Which micro-kernel the tiles run: the integer dot products of simd/arch/quant_dot_*.hpp, or SMMLA.
enum class Micro { dot, mmla };
inline constexpr Micro kMicro = ELASTILM_QGEMM_MMLA ? Micro::mmla : Micro::dot;
inline constexpr const char* kName = ELASTILM_QGEMM_PACKED ? "packed AVX-512 VNNI (quant_gemm_packed.hpp)"
                                     : ELASTILM_QGEMM_MMLA ? "tiled, smmla 2x2 (i8mm)"
                                                           : "tiled, integer dot products";

template <class Block>
using MicroKernel = void (*)(float*, std::size_t, const Block* const*, const ActBlock* const*, int);

// kernels[R - 1][M - 1] = micro_kernel<Block, R, M>, for the row and token tails.
template <class Block>
inline constexpr auto kernels = []<std::size_t... I>(std::index_sequence<I...>) {
    return std::array<MicroKernel<Block>, NR * MR>{&micro_kernel<Block, int(I) / MR + 1, int(I) % MR + 1>...};
}(std::make_index_sequence<NR * MR>{});

template <class Block>
void tiles(float* Y, int ldy, const MatrixView& W, const ActBlock* xq, int t0, int t1, int tile0, int tile1) {
    const int blocks = W.cols / kQuantBlock;
    for_each_tile<Block>(W, t0, t1, tile0, tile1, [&](const Block* const* w, int R, int r0, int m0, int M) {
        const ActBlock* x[MR];
        for (int m = 0; m < M; ++m) x[m] = xq + std::size_t(m0 + m) * blocks;
        kernels<Block>[(R - 1) * MR + M - 1](Y + std::size_t(m0) * ldy + r0, std::size_t(ldy), w, x, blocks);
    });
}

// The tiled GEMM from activations already quantized per block (xq[t · W.cols/32 + b]); K = Micro::dot
// forces the dot-product micro-kernel (tests compare the two where both exist).
template <Micro K = kMicro>
void matmul_tiled(float* Y, int ldy, const MatrixView& W, const ActBlock* xb, int n, ThreadPool* pool = nullptr) {
    const int n_tiles = (W.rows + NR - 1) / NR;
    auto split = [&](auto&& run) {
        if (pool && pool->size() > 1 && n_tiles > 1) pool->parallel_for(n_tiles, run, 8);
        else run(0, n_tiles);
    };
    for (int t0 = 0; t0 < n; t0 += TC) {
        const int t1 = std::min(n, t0 + TC);
#if ELASTILM_QGEMM_MMLA
        if constexpr (K == Micro::mmla) {
            thread_local std::vector<ActPair> pairs;
            const int blocks = W.cols / kQuantBlock;
            pairs.resize(std::size_t((t1 - t0 + 1) / 2) * blocks);
            pair_tokens(pairs.data(), xb, blocks, t0, t1);
            const ActPair* xp = pairs.data();  // the pool's threads read the caller's thread_local copy
            split([&, xp](int a, int b) {
                if (W.dtype == DType::q8_0) tiles_mmla<BlockQ8_0>(Y, ldy, W, xp, t0, t1, a, b);
                else tiles_mmla<BlockQ4_0>(Y, ldy, W, xp, t0, t1, a, b);
            });
            continue;
        }
#endif
        split([&](int a, int b) {
            if (W.dtype == DType::q8_0) tiles<BlockQ8_0>(Y, ldy, W, xb, t0, t1, a, b);
            else tiles<BlockQ4_0>(Y, ldy, W, xb, t0, t1, a, b);
        });
    }
}

}  // namespace qgemm

// Y[t, i] = Σ_j W(i, j) · X[t, j] for t < n, i < W.rows, j < W.cols; W Q8_0 or Q4_0 (out_major).
inline void quant_matmul(float* Y, int ldy, const MatrixView& W, const float* X, int ldx, int n, ThreadPool* pool = nullptr) {
    detail::require_quant_view(W);
#if ELASTILM_QGEMM_PACKED
    qgemm_packed::matmul(Y, ldy, W, X, ldx, n, pool);
#else
    const int blocks = W.cols / kQuantBlock;
    thread_local std::vector<ActBlock> xq;
    xq.resize(std::size_t(n) * blocks);
    for (int t = 0; t < n; ++t) quantize_activations(xq.data() + std::size_t(t) * blocks, X + std::size_t(t) * ldx, W.cols);
    qgemm::matmul_tiled(Y, ldy, W, xq.data(), n, pool);  // thread_local xq: the pool's threads read the caller's copy
#endif
}

}  // namespace elastilm
