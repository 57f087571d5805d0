// Y = X·Wᵀ for prefill in bf16 with fp32 accumulation (AVX-512 BF16, `vdpbf16ps`), for F16 weights.
// The structure of matmul.hpp's fp32 GEMM, with both operands packed once into the instruction's format:
//
//   X → bf16 pairs, row-major [token][k/2]                    (once per call, split over the threads)
//   for each block of KC inputs:
//     for each panel of NR outputs (split across threads):
//       pack W(panel, k-block) as pairs, split hi + lo, [k/2][hi NR | lo NR]   (32 KB, stays in L1)
//       for each MR tokens: micro-kernel                      (MR × NR fp32 accumulators in registers)
//
// Per pair of inputs the micro-kernel loads NR weight pairs twice (hi and lo: four vectors) and, per
// token, broadcasts one x pair and issues four `vdpbf16ps`, two per output vector. A caller that lets W
// be rounded (GemmWeights::may_round) gets panels of hi alone: two loads, two `vdpbf16ps`.
//
// Accuracy: rounding BOTH operands to bf16 (8 significant bits, one dot per pair) missed the 2e-2 logit
// bound: 0.022–0.035 (tests/model/reduced_precision_test.cpp). Rounding one operand at a time in the
// fp32 GEMM (a scratch experiment) showed w's rounding to be the larger part, in the layers and in the LM
// head alike, and x's the smaller. So W is split exactly, w = hi + lo (avx512_bf16.hpp, split):
// the only rounding left is x's to bf16 (≤ 2⁻⁸ relative) and the fp32 sums; the logits then land at
// 0.0116–0.0154. The split is done once per packed panel; the price is twice the dots per useful flop.
// X kept whole instead (x_hi + x_lo against rounded w, as many dots) would leave the larger error.
// Not every matrix needs the split: with it dropped for one kind of matrix at a time (Zen 5, the same
// tests plus docs-tlm-15M, an experiment build), rounding the FFN's gate and up projections costs the
// least — max |logit − ref| 0.0126–0.0167 on tiny-gqa-15M and docs-95M (0.0116–0.0154 split everywhere) — and
// they are half of a LLaMA layer's flops, so the model passes GemmWeights::may_round for those two only
// (model/block.hpp), and GemmPrecision::reduced runs the other matrices in fp32 (simd/matmul.hpp): TinyLlama's
// pp512 rose from 181 to ~230 tok/s on Zen 5 (README, "Prefill precision").
#pragma once

#include "elastilm/simd/avx512_bf16.hpp"

#if defined(ELASTILM_GEMM_BF16)

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/simd/precision.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm::gemm_bf16 {

using simd::bf16::pair_bits;
inline constexpr int S = simd::bf16::lanes;
inline constexpr int NR = 2 * S;   // outputs per panel
inline constexpr int MR = 12;      // tokens per micro-tile: 2·MR accumulators + 4 weights + 1 x of 32 registers
inline constexpr int KC = 256;     // inputs per block (even): a packed panel is KC/2 · 2·NR · 4 = 32 KB (512: out of L1, no faster)
inline constexpr int KP = KC / 2;  // pairs per block

// Packs W(i0 .. i0+NR, k0 .. k0+kc) as pairs in `parts` (1 or 2) parts, PS = parts·NR words per pair of
// inputs: panel[kk·PS + i] = hi of (W(i, k0+2kk), W(i, k0+2kk+1)), and with 2 parts panel[kk·PS + NR + i]
// their lo; rows past W.rows and the element past an odd kc are zero.
inline void pack_panel(pair_bits* panel, const MatrixView& W, int i0, int k0, int kc, int parts) {
    const int PS = parts * NR;
    const auto* data = static_cast<const f16_bits*>(W.data);
    const int rows = std::min(NR, W.rows - i0), kp = (kc + 1) / 2;
    if (W.layout == Layout::out_major) {
        // A row's consecutive bf16 values are already its pairs: split the row, then transpose words.
        alignas(64) pair_bits hi[KP], lo[KP];
        for (int i = 0; i < rows; ++i) {
            hi[kp - 1] = lo[kp - 1] = 0;
            simd::bf16::convert_split(reinterpret_cast<std::uint16_t*>(hi), reinterpret_cast<std::uint16_t*>(lo), data + W.offset(i0 + i, k0), kc);
            for (int kk = 0; kk < kp; ++kk) {
                panel[kk * PS + i] = hi[kk];
                if (parts == 2) panel[kk * PS + NR + i] = lo[kk];
            }
        }
        for (int kk = 0; kk < kp; ++kk)
            for (int part = 0; part < parts; ++part) std::fill(panel + kk * PS + part * NR + rows, panel + kk * PS + (part + 1) * NR, 0);
        return;
    }
    // in_major: inputs k and k+1 are two contiguous columns over the panel's rows; interleave them.
    alignas(64) f16_bits a[NR], b[NR];
    auto put = [&](pair_bits* dst, const f16_bits* ca, const f16_bits* cb) {
        for (int h = 0; h < NR; h += S) {
            const simd::bf16::split_pairs p = simd::bf16::interleave_split(ca + h, cb + h);
            simd::bf16::store(dst + h, p.hi);
            if (parts == 2) simd::bf16::store(dst + NR + h, p.lo);
        }
    };
    for (int kk = 0; kk < kp; ++kk) {
        const int k = k0 + 2 * kk;
        const f16_bits* ca = data + W.offset(i0, k);
        const f16_bits* cb = 2 * kk + 1 < kc ? ca + W.ld : nullptr;
        if (rows == NR && cb) {
            put(panel + kk * PS, ca, cb);
            continue;
        }
        std::fill(a, a + NR, f16_bits(0));
        std::fill(b, b + NR, f16_bits(0));
        std::copy_n(ca, rows, a);
        if (cb) std::copy_n(cb, rows, b);
        put(panel + kk * PS, a, b);
    }
}

// Y[0..M, 0..cols) (+)= Xp[0..M, 0..kp) · panel of `Parts` parts; `accumulate` false on the first k-block.
template <int M, int Parts>
void micro_kernel(float* Y, std::size_t ldy, int cols, const pair_bits* Xp, std::size_t ldp, const pair_bits* panel, int kp,
                  bool accumulate) {
    using namespace simd::bf16;
    constexpr int PS = Parts * NR;
    acc c[M][2];
    for (int m = 0; m < M; ++m) c[m][0] = c[m][1] = zero();
    for (int kk = 0; kk < kp; ++kk) {
        const pair_bits* w = panel + kk * PS;
        const pairs h0 = load(w), h1 = load(w + S);
        if constexpr (Parts == 2) {
            const pairs l0 = load(w + NR), l1 = load(w + NR + S);
            for (int m = 0; m < M; ++m) {
                const pair_bits x = Xp[m * ldp + kk];
                c[m][0] = dot(dot(c[m][0], x, l0), x, h0);
                c[m][1] = dot(dot(c[m][1], x, l1), x, h1);
            }
        } else {
            for (int m = 0; m < M; ++m) {
                const pair_bits x = Xp[m * ldp + kk];
                c[m][0] = dot(c[m][0], x, h0);
                c[m][1] = dot(c[m][1], x, h1);
            }
        }
    }
    for (int m = 0; m < M; ++m) {
        float* y = Y + m * ldy;
        if (cols == NR) {
            if (accumulate) {
                c[m][0] = add(c[m][0], load_acc(y));
                c[m][1] = add(c[m][1], load_acc(y + S));
            }
            store(y, c[m][0]);
            store(y + S, c[m][1]);
        } else {
            alignas(64) float tmp[NR];
            store(tmp, c[m][0]);
            store(tmp + S, c[m][1]);
            for (int i = 0; i < cols; ++i) y[i] = accumulate ? y[i] + tmp[i] : tmp[i];
        }
    }
}

using MicroKernel = void (*)(float*, std::size_t, int, const pair_bits*, std::size_t, const pair_bits*, int, bool);

template <int Parts>
inline constexpr auto kernels = []<std::size_t... I>(std::index_sequence<I...>) {
    return std::array<MicroKernel, MR>{&micro_kernel<int(I) + 1, Parts>...};
}(std::make_index_sequence<MR>{});

// Y[t, i] = Σ_j W(i, j) · X[t, j] for t < n, i < W.rows, j < W.cols; W is F16 (either layout).
// `weights`: GemmWeights::exact splits each weight into hi + lo (two dots per pair of inputs), may_round
// packs hi alone (one dot: twice the speed, w rounded to bf16 as well as x).
inline void matmul(float* Y, int ldy, const MatrixView& W, const float* X, int ldx, int n, ThreadPool* pool,
                   GemmWeights weights = GemmWeights::exact) {
    const int parts = weights == GemmWeights::exact ? 2 : 1;
    const auto& kernel = parts == 2 ? kernels<2> : kernels<1>;  // by the tile's token count
    const int K = W.cols;
    const std::size_t ldp = std::size_t(K + 1) / 2;  // pairs per packed token row
    thread_local std::vector<pair_bits> packed_x;
    packed_x.resize(ldp * n);
    pair_bits* Xp = packed_x.data();
    const bool threaded = pool && pool->size() > 1;
    auto pack_x = [&](int t0, int t1) {
        for (int t = t0; t < t1; ++t) {
            pair_bits* row = Xp + std::size_t(t) * ldp;
            row[ldp - 1] = 0;  // the high half of an odd K's last pair
            simd::bf16::convert(reinterpret_cast<std::uint16_t*>(row), X + std::size_t(t) * ldx, K);
        }
    };
    if (threaded && n >= 16) pool->parallel_for(n, pack_x);
    else pack_x(0, n);

    const int panels = (W.rows + NR - 1) / NR;
    for (int k0 = 0; k0 < K; k0 += KC) {
        const int kc = std::min(KC, K - k0), kp = (kc + 1) / 2;
        auto run = [&](int p0, int p1) {
            alignas(64) static thread_local pair_bits panel[KP * 2 * NR];
            for (int p = p0; p < p1; ++p) {
                const int i0 = p * NR, cols = std::min(NR, W.rows - i0);
                pack_panel(panel, W, i0, k0, kc, parts);
                for (int t0 = 0; t0 < n; t0 += MR) {
                    const int m = std::min(MR, n - t0);
                    kernel[m - 1](Y + std::size_t(t0) * ldy + i0, std::size_t(ldy), cols, Xp + std::size_t(t0) * ldp + k0 / 2, ldp, panel,
                                  kp, k0 > 0);
                }
            }
        };
        if (threaded && panels > 1) pool->parallel_for(panels, run);
        else run(0, panels);
    }
}

}  // namespace elastilm::gemm_bf16

#endif
