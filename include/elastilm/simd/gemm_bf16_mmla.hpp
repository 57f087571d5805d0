// Y = X·Wᵀ for prefill with ARM's BFMMLA (simd/arch/bf16_mmla_neon.hpp), for F16 weights: the 2×2-tile
// matrix instruction takes two weight rows' 4 consecutive inputs in one register and two tokens' in
// another, so both operands are packed once into that order — rows (and tokens) interleaved in pairs,
// 4 inputs at a time:
//
//   X → Xᵀ tiles of NT tokens: [group of 4 k][token pair][part][2 × 4 bf16]      (once per call, split by tiles)
//   each thread takes a contiguous share of the MR-row blocks, a group of blocks at a time:
//     pack W(group) as [block][group of 4 k][row pair][part][2 × 4 bf16]         (the group stays in L2)
//     for each token tile: for each block: micro-kernel over all K               (MR/2 × NT/2 tiles in registers)
//
// Per 4 inputs the micro-kernel loads MR/2 weight and NT/2 token registers per part and issues one
// BFMMLA per (row pair, token pair, product of parts): register tile 8 rows × 8 tokens = 16 fp32x4
// accumulators, + 8 weight + 4 token (8 with split x) operand registers of 32.
//
// Rounding (the "parts"): BFMMLA rounds both operands to bf16, 8 significant bits. An F16 weight has 11,
// so w = w_hi + w_lo with both bf16 is exact; an fp32 activation x = x_hi + x_lo keeps 16. With WP, XP
// ∈ {1, 2} parts of W and X, the kernel sums the products w_hi·x_hi, w_lo·x_hi, w_hi·x_lo that exist (never
// w_lo·x_lo: ≤ 2⁻¹⁶ relative). Measured max |logit − reference| on tiny-gqa-15M's 14- and 61-token
// prompts under qemu (tests/model/reduced_precision_test.cpp, bound 2e-2): plain bfmmla (WP = XP = 1)
// 0.0185 and 0.0340, over the bound; W split (WP = 2) 0.0127 and 0.0144. So W is split: F16 weights
// then enter exactly, x is rounded once, as the fp16 path rounds it (there to 11 bits, here to 8), and
// the two BFMMLA per tile give fp16's `vfmaq_f16` multiply-adds per instruction, accumulated in fp32.
#pragma once

#include "elastilm/simd/arch/bf16_mmla_neon.hpp"

#if defined(ELASTILM_GEMM_BF16_MMLA)

#include <algorithm>
#include <cstring>
#include <vector>

#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/simd/f16.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm::gemm_bf16_mmla {

using simd::bfmmla::bf16_bits;
inline constexpr std::string_view instruction = simd::bfmmla::instruction;
inline constexpr int G = 4;    // inputs per BFMMLA operand row
inline constexpr int MR = 8;   // rows per micro-tile (4 row pairs)
inline constexpr int NT = 8;   // tokens per tile (4 token pairs)
inline constexpr int E = 2 * G;  // bf16 values per operand register: two rows (or tokens) of G inputs
// Parts of W and X (1: rounded to bf16; 2: hi + lo). W split, x rounded: the file comment says why;
// tests/model/reduced_precision_test.cpp prints the measured logit error.
inline constexpr int kWParts = 2;
inline constexpr int kXParts = 1;
// W a thread packs and keeps while it passes over every token tile (ARM cores' L2: 0.5–2 MB).
inline constexpr std::size_t kGroupBytes = std::size_t(256) << 10;

// Yᵀ tile: Y[t, r] = Σ_k W(r, k) · X[t, k] for t < tokens, r < rows, over `groups` groups of G inputs,
// from a packed W block and a packed Xᵀ tile; TP = token pairs computed (the tile's tail left out).
template <int WP, int XP, int TP>
void micro_kernel(float* Y, std::size_t ldy, int tokens, int rows, const bf16_bits* w, const bf16_bits* x, int groups) {
    using namespace simd::bfmmla;
    constexpr int RP = MR / 2;
    tile c[RP][TP];
    for (int r = 0; r < RP; ++r)
        for (int j = 0; j < TP; ++j) c[r][j] = zero();
    for (int g = 0; g < groups; ++g) {
        const bf16_bits* wg = w + std::size_t(g) * RP * WP * E;
        const bf16_bits* xg = x + std::size_t(g) * (NT / 2) * XP * E;
        vec xv[TP][XP];
        for (int j = 0; j < TP; ++j)
            for (int q = 0; q < XP; ++q) xv[j][q] = load(xg + (j * XP + q) * E);
        for (int r = 0; r < RP; ++r) {
            vec wv[WP];
            for (int q = 0; q < WP; ++q) wv[q] = load(wg + (r * WP + q) * E);
            for (int j = 0; j < TP; ++j) {
                // The small terms first, then hi·hi: the accumulator sees them in any order at fp32 precision.
                if constexpr (WP == 2) c[r][j] = mmla(c[r][j], wv[1], xv[j][0]);
                if constexpr (XP == 2) c[r][j] = mmla(c[r][j], wv[0], xv[j][1]);
                c[r][j] = mmla(c[r][j], wv[0], xv[j][0]);
            }
        }
    }
    // Tile (r, j) holds rows 2r, 2r+1 × tokens 2j, 2j+1 at lanes 2·(row − 2r) + (token − 2j).
    for (int r = 0; r < MR / 2; ++r)
        for (int j = 0; j < TP; ++j) {
            float v[4];
            store(v, c[r][j]);
            for (int i = 0; i < 2; ++i)
                for (int t = 0; t < 2; ++t)
                    if (2 * r + i < rows && 2 * j + t < tokens) Y[std::size_t(2 * j + t) * ldy + 2 * r + i] = v[2 * i + t];
        }
}

// Packs rows i0 .. i0+MR of W (zero past W.rows and K) as [g][row pair][part][2 × G]: `dst` holds
// groups·MR·WP·G values.
template <int WP>
void pack_block(bf16_bits* dst, const MatrixView& W, int i0, int groups) {
    const auto* data = static_cast<const f16_bits*>(W.data);
    const int K = W.cols, rows = std::min(MR, W.rows - i0), kp = groups * G;
    std::fill(dst, dst + std::size_t(groups) * MR * WP * G, bf16_bits(0));
    // element (row r, input k, part q) of the block
    auto at = [&](int r, int k, int q) -> bf16_bits& {
        return dst[((std::size_t(k / G) * (MR / 2) + r / 2) * WP + q) * E + (r % 2) * G + k % G];
    };
    thread_local std::vector<bf16_bits> hi, lo;
    if (W.layout == Layout::out_major) {  // a row's inputs are contiguous: split the row, then copy its groups
        hi.resize(kp);
        lo.resize(kp);
        for (int r = 0; r < rows; ++r) {
            simd::bfmmla::split(hi.data(), WP == 2 ? lo.data() : nullptr, data + W.offset(i0 + r, 0), K);
            for (int g = 0; g < groups; ++g)
                for (int q = 0; q < WP; ++q) {
                    const bf16_bits* src = (q == 0 ? hi.data() : lo.data()) + g * G;
                    const int n = std::min(G, K - g * G);
                    std::memcpy(&at(r, g * G, q), src, n * sizeof(bf16_bits));
                }
        }
    } else {  // in_major: an input's rows are contiguous: split the block's column, then scatter it
        hi.resize(MR);
        lo.resize(MR);
        for (int k = 0; k < K; ++k) {
            simd::bfmmla::split(hi.data(), WP == 2 ? lo.data() : nullptr, data + W.offset(i0, k), rows);
            for (int r = 0; r < rows; ++r) {
                at(r, k, 0) = hi[r];
                if constexpr (WP == 2) at(r, k, 1) = lo[r];
            }
        }
    }
}

// Y[t, i] = Σ_j W(i, j) · X[t, j] for t < n, i < W.rows, j < W.cols; W is F16 (either layout). Any n ≥ 1
// (matmul.hpp sends one or two tokens to matvec). WP, XP: parts of W and X (file comment).
template <int WP = kWParts, int XP = kXParts>
void matmul(float* Y, int ldy, const MatrixView& W, const float* X, int ldx, int n, ThreadPool* pool) {
    static_assert((WP == 1 || WP == 2) && (XP == 1 || XP == 2));
    const int K = W.cols, groups = (K + G - 1) / G, tiles = (n + NT - 1) / NT;
    const std::size_t tile_size = std::size_t(groups) * (NT / 2) * XP * E;  // values of a packed Xᵀ tile
    thread_local std::vector<bf16_bits> packed_x;
    packed_x.resize(std::size_t(tiles) * tile_size);
    bf16_bits* const packed = packed_x.data();  // the caller's buffer, shared with the workers
    const bool threaded = pool && pool->size() > 1;

    // Xᵀ tile p: token p·NT + j, input k, part q at [k / G][j / 2][q][(j % 2)·G + k % G]; zero past n and K.
    auto pack = [&](int p0, int p1) {
        const int kp = groups * G;
        thread_local std::vector<bf16_bits> hi, lo;
        hi.assign(kp, 0);
        lo.assign(kp, 0);
        for (int p = p0; p < p1; ++p) {
            bf16_bits* tile = packed + std::size_t(p) * tile_size;
            for (int j = 0; j < NT; ++j) {
                const int t = p * NT + j;
                if (t < n) simd::bfmmla::split(hi.data(), XP == 2 ? lo.data() : nullptr, X + std::size_t(t) * ldx, K);
                else std::fill(hi.begin(), hi.end(), 0), std::fill(lo.begin(), lo.end(), 0);
                for (int g = 0; g < groups; ++g)
                    for (int q = 0; q < XP; ++q)
                        std::memcpy(tile + ((std::size_t(g) * (NT / 2) + j / 2) * XP + q) * E + (j % 2) * G,
                                    (q == 0 ? hi.data() : lo.data()) + g * G, G * sizeof(bf16_bits));
            }
        }
    };
    if (threaded && tiles > 1) pool->parallel_for(tiles, pack);
    else pack(0, tiles);

    const int blocks = (W.rows + MR - 1) / MR;
    const std::size_t block_size = std::size_t(groups) * MR * WP * G;  // values of a packed W block
    const int max_group = std::max<int>(1, int(kGroupBytes / (block_size * sizeof(bf16_bits))));
    auto run = [&](int b0, int b1) {
        const int n_groups = (b1 - b0 + max_group - 1) / max_group, group = (b1 - b0 + n_groups - 1) / n_groups;  // equal groups
        thread_local std::vector<bf16_bits> wpack;
        wpack.resize(std::size_t(group) * block_size);
        for (int g0 = b0; g0 < b1; g0 += group) {
            const int g1 = std::min(b1, g0 + group);
            for (int b = g0; b < g1; ++b) pack_block<WP>(wpack.data() + std::size_t(b - g0) * block_size, W, b * MR, groups);
            for (int p = 0; p < tiles; ++p) {
                const int t0 = p * NT, tokens = std::min(NT, n - t0);
                const bf16_bits* xt = packed + std::size_t(p) * tile_size;
                for (int b = g0; b < g1; ++b) {
                    const int i0 = b * MR, rows = std::min(MR, W.rows - i0);
                    float* y = Y + std::size_t(t0) * ldy + i0;
                    const bf16_bits* wb = wpack.data() + std::size_t(b - g0) * block_size;
                    switch ((tokens + 1) / 2) {  // token pairs: a short last tile computes only its own
                        case 1: micro_kernel<WP, XP, 1>(y, ldy, tokens, rows, wb, xt, groups); break;
                        case 2: micro_kernel<WP, XP, 2>(y, ldy, tokens, rows, wb, xt, groups); break;
                        case 3: micro_kernel<WP, XP, 3>(y, ldy, tokens, rows, wb, xt, groups); break;
                        default: micro_kernel<WP, XP, 4>(y, ldy, tokens, rows, wb, xt, groups); break;
                    }
                }
            }
        }
    };
    if (threaded && blocks > 1) pool->parallel_for(blocks, run);
    else run(0, blocks);
}

}  // namespace elastilm::gemm_bf16_mmla

#endif
