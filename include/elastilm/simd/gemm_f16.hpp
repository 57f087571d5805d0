// Y = X·Wᵀ for prefill in fp16 arithmetic, for F16 weights: NEON `vfmaq_f16` (ARMv8.2-A +fp16, 8 lanes)
// or AVX512-FP16 `vfmadd231ph` (Sapphire Rapids, 32 lanes), both behind simd::f16v.
// The structure of matmul.hpp's fp32 GEMM with both operands packed as fp16:
//
//   X → f16v::scalar, row-major [token][k]                    (once per call, split over the threads)
//   for each block of KC inputs:
//     for each panel of NR outputs (split across threads):
//       pack W(panel, k-block) as fp16, [k][NR]               (KC × NR halves: 16 KB NEON, 128 KB x86)
//       for each MR tokens: micro-kernel                      (fp16 run sums and fp32 totals in registers)
//
// Accuracy: fp16 keeps 11 bits and its sums overflow at 65504, so the micro-kernel accumulates only RUN
// consecutive inputs in fp16, then folds that partial sum into fp32 (the rounding error of a run stays
// small and relative to the run, not to the whole dot product). Activations larger than kMaxX could
// overflow a run; such a call — or one whose result is not finite — returns false and the caller
// computes it in fp32.
#pragma once

#include "elastilm/simd/avx512_fp16.hpp"
#include "elastilm/simd/neon_f16.hpp"

#if defined(ELASTILM_GEMM_F16)

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <utility>
#include <vector>

#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm::gemm_f16 {

inline constexpr int S = simd::f16v::lanes;
inline constexpr int NR = 2 * S;                // outputs per panel
inline constexpr int MR = 4;                    // tokens per micro-tile: 2·MR fp16 + 4·MR fp32 accumulators fit 32 registers
inline constexpr int KC = S == 32 ? 1024 : 512;  // inputs per block: a packed panel is KC · NR · 2 = 128 KB (L2) / 16 KB (L1)
// Inputs summed in fp16 before folding into fp32. A fold costs a widening and an fp32 add per 16 outputs,
// on the ports the FMAs use: on AVX512-FP16, RUN = 32 ran TinyLlama's 512-token GEMMs ~7–15 % faster
// than 16 (bench/kernels.cpp matmul_fp16 against fp32 side by side, loaded machine) and still meets the
// 2e-2 logit bound: max |logit − reference| 0.0139 (RUN = 16: 0.0101) on tiny-gqa-15M and docs-95M
// (tests/model/reduced_precision_test.cpp). NEON keeps 16 (its measured 0.0098; not re-tuned).
inline constexpr int RUN = S == 32 ? 32 : 16;
inline constexpr float kMaxX = 32768.0f / RUN;  // |x| above this could overflow a run of fp16 sums (|w| ≲ 2)

// Packs W(i0 .. i0+NR, k0 .. k0+kc) as panel[k][i]; rows past W.rows are zero.
inline void pack_panel(f16_bits* panel, const MatrixView& W, int i0, int k0, int kc) {
    const auto* data = static_cast<const f16_bits*>(W.data);
    const int rows = std::min(NR, W.rows - i0);
    if (W.layout == Layout::out_major) {
        for (int i = 0; i < rows; ++i) {
            const f16_bits* src = data + W.offset(i0 + i, k0);
            for (int k = 0; k < kc; ++k) panel[k * NR + i] = src[k];
        }
        for (int k = 0; k < kc; ++k)
            for (int i = rows; i < NR; ++i) panel[k * NR + i] = 0;
        return;
    }
    for (int k = 0; k < kc; ++k) {
        const f16_bits* src = data + W.offset(i0, k0 + k);
        std::copy_n(src, rows, panel + k * NR);
        std::fill(panel + k * NR + rows, panel + (k + 1) * NR, f16_bits(0));
    }
}

// Y[0..M, 0..cols) (+)= Xh[0..M, 0..kc) · panel; `accumulate` false on the first k-block.
template <int M>
void micro_kernel(float* Y, std::size_t ldy, int cols, const simd::f16v::scalar* Xh, std::size_t ldx, const f16_bits* panel, int kc,
                  bool accumulate) {
    using namespace simd::f16v;
    alignas(16) float sum[M][NR] = {};
    for (int r0 = 0; r0 < kc; r0 += RUN) {
        const int r1 = std::min(kc, r0 + RUN);
        vec c[M][2];
        for (int m = 0; m < M; ++m) c[m][0] = c[m][1] = zero();
        for (int k = r0; k < r1; ++k) {
            const vec w0 = load(panel + k * NR), w1 = load(panel + k * NR + S);
            for (int m = 0; m < M; ++m) {
                const simd::f16v::scalar x = Xh[m * ldx + k];
                c[m][0] = fma(c[m][0], x, w0);
                c[m][1] = fma(c[m][1], x, w1);
            }
        }
        for (int m = 0; m < M; ++m) {
            fold(sum[m], c[m][0]);
            fold(sum[m] + S, c[m][1]);
        }
    }
    for (int m = 0; m < M; ++m) {
        float* y = Y + m * ldy;
        for (int i = 0; i < cols; ++i) y[i] = accumulate ? y[i] + sum[m][i] : sum[m][i];
    }
}

using MicroKernel = void (*)(float*, std::size_t, int, const simd::f16v::scalar*, std::size_t, const f16_bits*, int, bool);

inline constexpr auto kernels = []<std::size_t... I>(std::index_sequence<I...>) {
    return std::array<MicroKernel, MR>{&micro_kernel<int(I) + 1>...};
}(std::make_index_sequence<MR>{});

// Y[t, i] = Σ_j W(i, j) · X[t, j] for t < n, i < W.rows, j < W.cols; W is F16 (either layout).
// Returns false, having written nothing meaningful to Y, when fp16 arithmetic cannot be trusted with
// these activations (see the file comment); the caller then runs the fp32 GEMM.
inline bool matmul(float* Y, int ldy, const MatrixView& W, const float* X, int ldx, int n, ThreadPool* pool) {
    const int K = W.cols;
    thread_local std::vector<simd::f16v::scalar> packed_x;
    packed_x.resize(std::size_t(K) * n);
    simd::f16v::scalar* Xh = packed_x.data();
    const bool threaded = pool && pool->size() > 1;
    std::atomic<bool> in_range{true};
    auto pack_x = [&](int t0, int t1) {
        float mx = 0;
        for (int t = t0; t < t1; ++t) mx = std::max(mx, simd::f16v::convert(Xh + std::size_t(t) * K, X + std::size_t(t) * ldx, K));
        if (!(mx <= kMaxX)) in_range.store(false, std::memory_order_relaxed);
    };
    if (threaded && n >= 16) pool->parallel_for(n, pack_x);
    else pack_x(0, n);
    if (!in_range.load()) return false;

    const int panels = (W.rows + NR - 1) / NR;
    std::atomic<bool> finite{true};
    for (int k0 = 0; k0 < K; k0 += KC) {
        const int kc = std::min(KC, K - k0);
        const bool last = k0 + KC >= K;
        auto run = [&](int p0, int p1) {
            alignas(64) static thread_local f16_bits panel[KC * NR];
            for (int p = p0; p < p1; ++p) {
                const int i0 = p * NR, cols = std::min(NR, W.rows - i0);
                pack_panel(panel, W, i0, k0, kc);
                for (int t0 = 0; t0 < n; t0 += MR) {
                    const int m = std::min(MR, n - t0);
                    float* y = Y + std::size_t(t0) * ldy + i0;
                    kernels[m - 1](y, std::size_t(ldy), cols, Xh + std::size_t(t0) * K + k0, std::size_t(K), panel, kc, k0 > 0);
                    if (last)
                        for (int r = 0; r < m; ++r)
                            for (int i = 0; i < cols; ++i)
                                if (!std::isfinite(y[std::size_t(r) * ldy + i])) finite.store(false, std::memory_order_relaxed);
                }
            }
        };
        if (threaded && panels > 1) pool->parallel_for(panels, run);
        else run(0, panels);
    }
    return finite.load();
}

}  // namespace elastilm::gemm_f16

#endif
