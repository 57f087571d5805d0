// Y = X·Wᵀ for prefill in fp16 arithmetic, for F16 weights: NEON `vfmaq_f16` (ARMv8.2-A +fp16, 8 lanes)
// or AVX512-FP16 `vfmadd231ph` (Sapphire Rapids, 32 lanes), both behind simd::f16v.
//
// Vectors run over tokens and weights are broadcast, D = f16v::depth inputs at a time (x86: 2, NEON: 1):
// the micro-kernel computes a tile Yᵀ[MR rows][NT tokens] as
//   for each step of D inputs k .. k+D:
//     x_v = Xᵀ tile at k, vector v                        (NV loads; lane D·j + q = token j, input k + q)
//     c[r][v] += (W(i0 + r, k .. k+D) repeated) · x_v      (MR broadcasts, NV·MR FMAs)
// so out_major W — every file format's layout — is read where it lies and never packed: its D inputs
// per row are adjacent. Only X is packed, once per call, into fp16 tiles shared by both threads.
// in_major W (and odd K on x86) is packed per group of rows into the same order first.
//
//   pack X → fp16 tiles of NT tokens                       (split over the threads by tiles)
//   each thread takes a contiguous share of the MR-row blocks; within it, groups of rows:
//     for each token tile:                                 (its Xᵀ tile, K·NT halves, stays in L2)
//       for each block of the group: micro-kernel over all K (the group's rows of W stay in L2)
//
// Accuracy: fp16 keeps 11 bits and its sums overflow at 65504, so the micro-kernel accumulates only RUN
// consecutive steps in fp16, then folds that partial sum into fp32 totals (the rounding error of a run
// stays small and relative to the run, not to the whole dot product). A tile's fp32 totals stay in L1 for
// the whole of K and reach Y once, through a staging buffer that Y receives whole rows from. Activations larger than kMaxX could overflow a run; such a call —
// or one whose result is not finite — returns false and the caller computes it in fp32.
#pragma once

#include "elastilm/simd/avx512_fp16.hpp"
#include "elastilm/simd/neon_f16.hpp"

#if defined(ELASTILM_GEMM_F16)

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>
#include <vector>

#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm::gemm_f16 {

inline constexpr int S = simd::f16v::lanes;
inline constexpr int D = simd::f16v::depth;  // inputs per broadcast
inline constexpr int NV = 2;                 // vectors of tokens per tile
inline constexpr int NT = NV * S / D;        // tokens per tile
inline constexpr int MR = 12;                // rows per micro-tile: MR·NV = 24 accumulators + NV activations of 32 registers
static_assert(MR <= 16, "f16v::interleave packs at most 16 rows");
// Products summed in fp16 per lane before folding into fp32. A fold of S lanes costs seven uops on the
// FMA ports (an extract, two widenings, two fp32 adds), 7/RUN per FMA. RUN = 32 (NEON: 16) meets the 2e-2
// logit bound: max |logit − reference| 0.0148 on docs-95M, 0.0128 on tiny-gqa-15M
// (tests/model/reduced_precision_test.cpp). Folding half as often measured 0.0209–0.0210 on docs-95M's
// 96-token prompt, over the bound, both as runs of 64 and as pairs of runs of 32 added in fp16 first.
inline constexpr int RUN = S == 32 ? 32 : 16;
inline constexpr float kMaxX = 32768.0f / RUN;  // |x| above this could overflow a run of fp16 sums (|w| ≲ 2)
// W a thread keeps in L2 while it passes over every token tile (half of Sapphire Rapids' 2 MB L2, the
// other half for the Xᵀ tile).
inline constexpr std::size_t kGroupBytes = std::size_t(1) << 20;

// Yᵀ tile: Y[t, r] = Σ_k W(r, k) · X[t, k] for t < tokens, r < rows, over `steps` steps of D inputs,
// where W(r, k .. k+D) sits at w[r] + (k / D)·wstep and the tile's packed activations at xt.
template <int V>
void micro_kernel(float* Y, std::size_t ldy, int tokens, int rows, const f16_bits* const* w, std::size_t wstep, const f16_bits* xt,
                  int steps) {
    using namespace simd::f16v;
    alignas(64) float total[MR][V * S] = {};
    for (int s0 = 0; s0 < steps; s0 += RUN) {
        const int s1 = std::min(steps, s0 + RUN);
        vec c[MR][V];
        for (int r = 0; r < MR; ++r)
            for (int v = 0; v < V; ++v) c[r][v] = zero();
        auto step = [&](int s) {
            vec x[V];
            for (int v = 0; v < V; ++v) x[v] = load(xt + std::size_t(s) * NT * D + v * S);
            const std::size_t o = std::size_t(s) * wstep;
            for (int r = 0; r < MR; ++r) {
                const vec b = broadcast(w[r] + o);
                for (int v = 0; v < V; ++v) c[r][v] = fma(c[r][v], b, x[v]);
            }
        };
        // Whole runs unrolled by 8 and the per-run work below by row: a loop exit every RUN steps and the
        // accumulators spilled to the stack for a rolled fold cost ~3 % each (measured on one micro-kernel).
        if (s1 - s0 == RUN) {
#pragma GCC unroll 8
            for (int s = s0; s < s0 + RUN; ++s) step(s);
        } else
            for (int s = s0; s < s1; ++s) step(s);
#pragma GCC unroll 12
        for (int r = 0; r < MR; ++r)
            for (int v = 0; v < V; ++v) fold(total[r] + v * S, c[r][v]);
    }
    for (int r = 0; r < rows; ++r)
        for (int t = 0; t < tokens; ++t) {
            float y = 0;
            for (int q = 0; q < D; ++q) y += total[r][t * D + q];
            Y[std::size_t(t) * ldy + r] = y;
        }
}

// Y[t, i] = Σ_j W(i, j) · X[t, j] for t < n, i < W.rows, j < W.cols; W is F16 (either layout).
// Returns false, having written nothing meaningful to Y, when fp16 arithmetic cannot be trusted with
// these activations (see the file comment); the caller then runs the fp32 GEMM.
inline bool matmul(float* Y, int ldy, const MatrixView& W, const float* X, int ldx, int n, ThreadPool* pool) {
    const int K = W.cols, steps = (K + D - 1) / D, tiles = (n + NT - 1) / NT;
    const std::size_t tile_size = std::size_t(steps) * NT * D;  // halves
    thread_local std::vector<f16_bits> packed_x;
    packed_x.resize(std::size_t(tiles) * tile_size);
    f16_bits* const packed = packed_x.data();  // the caller's buffer, shared with the workers
    const bool threaded = pool && pool->size() > 1;

    // Xᵀ tiles: token p·NT + j, input s·D + q at packed[p·tile_size + (s·NT + j)·D + q]; zero past n and K.
    std::atomic<bool> in_range{true};
    auto pack = [&](int p0, int p1) {
        const std::size_t row_size = std::size_t(steps) * D;
        thread_local std::vector<f16_bits> rows;  // a tile's tokens converted, [j][k], zero past K
        rows.assign(NT * row_size, f16_bits(0));
        float mx = 0;
        for (int p = p0; p < p1; ++p) {
            for (int j = 0; j < NT; ++j) {
                f16_bits* row = rows.data() + j * row_size;
                const int t = p * NT + j;
                if (t < n) mx = std::max(mx, simd::f16v::convert(row, X + std::size_t(t) * ldx, K));
                else std::fill(row, row + row_size, f16_bits(0));
            }
            // Transposed in blocks of 16 steps × 16 tokens; the last steps one by one.
            f16_bits* tile = packed + std::size_t(p) * tile_size;
            int s0 = 0;
            for (; s0 + 16 <= steps; s0 += 16)
                for (int j0 = 0; j0 < NT; j0 += 16)
                    simd::f16v::transpose16(tile + (std::size_t(s0) * NT + j0) * D, std::size_t(NT) * D, rows.data() + j0 * row_size + std::size_t(s0) * D, row_size);
            for (int s = s0; s < steps; ++s)
                for (int j = 0; j < NT; ++j)
                    std::memcpy(tile + (std::size_t(s) * NT + j) * D, rows.data() + j * row_size + std::size_t(s) * D, D * sizeof(f16_bits));
        }
        if (!(mx <= kMaxX)) in_range.store(false, std::memory_order_relaxed);
    };
    if (threaded && tiles > 1) pool->parallel_for(tiles, pack);
    else pack(0, tiles);
    if (!in_range.load()) return false;

    const auto* data = static_cast<const f16_bits*>(W.data);
    // out_major rows with whole steps are read in place; anything else is packed per group of rows as
    // [block][step][r][q] (zero past K).
    const bool in_place = W.layout == Layout::out_major && K % D == 0;
    const int blocks = (W.rows + MR - 1) / MR;
    const std::size_t block_size = std::size_t(steps) * MR * D;  // halves of a packed block
    const int max_group = std::max<int>(1, int(kGroupBytes / (block_size * sizeof(f16_bits))));
    std::atomic<bool> finite{true};
    auto run = [&](int b0, int b1) {
        const int groups = (b1 - b0 + max_group - 1) / max_group, group = (b1 - b0 + groups - 1) / groups;  // equal groups
        thread_local std::vector<f16_bits> wpack;
        if (!in_place) wpack.resize(std::size_t(group) * block_size);
        // A token tile's outputs for the group's rows, [token][row]: the micro-kernels' transposed
        // scattered stores land here, in L1/L2, and Y gets whole contiguous rows — scattered straight
        // into Y (4 MB at TinyLlama's shapes, far from cache) they cost ~14 % of the GEMM's time.
        const std::size_t ls = std::size_t(group) * MR;
        thread_local std::vector<float> stage;
        stage.resize(NT * ls);
        std::uint32_t bad = 0;
        for (int g0 = b0; g0 < b1; g0 += group) {
            const int g1 = std::min(b1, g0 + group), gi0 = g0 * MR, grows = std::min(W.rows, g1 * MR) - gi0;
            if (!in_place && W.layout == Layout::in_major) {
                // D inputs' rows of the group's outputs, interleaved block by block. Input by input: each
                // input's row of outputs is contiguous here, and the rows are prefetched a few steps ahead
                // (4 KB and more apart, too far for the hardware's prefetchers).
                static constexpr f16_bits zeros[16] = {};
                constexpr int ahead = 8;
                for (int s = 0; s < steps; ++s) {
                    for (int q = 0; q < D; ++q)
                        if (const int k = (s + ahead) * D + q; k < K)
                            for (int i = 0; i < grows; i += 32) __builtin_prefetch(data + W.offset(gi0 + i, k));
                    for (int b = g0; b < g1; ++b) {
                        const int i0 = b * MR, rows = std::min(MR, W.rows - i0);
                        const f16_bits* src[D];
                        for (int q = 0; q < D; ++q) src[q] = s * D + q < K ? data + W.offset(i0, s * D + q) : zeros;
                        simd::f16v::interleave(wpack.data() + std::size_t(b - g0) * block_size + std::size_t(s) * MR * D, src, rows, MR);
                    }
                }
            } else if (!in_place) {  // out_major with odd K (x86): rare, element by element
                for (int b = g0; b < g1; ++b) {
                    f16_bits* dst = wpack.data() + std::size_t(b - g0) * block_size;
                    const int i0 = b * MR, rows = std::min(MR, W.rows - i0);
                    for (int r = 0; r < MR; ++r)
                        for (int k = 0; k < steps * D; ++k)
                            dst[(std::size_t(k / D) * MR + r) * D + k % D] = k < K && r < rows ? data[W.offset(i0 + r, k)] : f16_bits(0);
                }
            }
            for (int p = 0; p < tiles; ++p) {
                const int t0 = p * NT, tokens = std::min(NT, n - t0);
                const f16_bits* xt = packed + std::size_t(p) * tile_size;
                for (int b = g0; b < g1; ++b) {
                    const int i0 = b * MR, rows = std::min(MR, W.rows - i0);
                    const f16_bits* w[MR];
                    for (int r = 0; r < MR; ++r)  // rows past the end: the last row again (computed, not written)
                        w[r] = in_place ? data + W.offset(i0 + std::min(r, rows - 1), 0) : wpack.data() + std::size_t(b - g0) * block_size + r * D;
                    const std::size_t wstep = in_place ? D : MR * D;
                    float* y = stage.data() + (i0 - gi0);
                    if (tokens > NT / NV) micro_kernel<NV>(y, ls, tokens, rows, w, wstep, xt, steps);
                    else micro_kernel<1>(y, ls, tokens, rows, w, wstep, xt, steps);
                }
                for (int t = 0; t < tokens; ++t) {
                    const float* src = stage.data() + std::size_t(t) * ls;
                    float* dst = Y + std::size_t(t0 + t) * ldy + gi0;
                    for (int i = 0; i < grows; ++i) {
                        bad |= (std::bit_cast<std::uint32_t>(src[i]) & 0x7f800000u) == 0x7f800000u;  // inf or NaN
                        dst[i] = src[i];
                    }
                }
            }
        }
        if (bad) finite.store(false, std::memory_order_relaxed);
    };
    if (threaded && blocks > 1) pool->parallel_for(blocks, run);
    else run(0, blocks);
    return finite.load();
}

}  // namespace elastilm::gemm_f16

#endif
