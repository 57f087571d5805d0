// Y = X·Wᵀ for prefill: n tokens at once, compute-bound. A cache-blocked GEMM:
//
//   for each block of KC inputs:                       (X[:, k-block] stays in L2)
//     for each panel of NR outputs (split across threads):
//       pack W(panel, k-block) as fp32, input-major     (KC × NR floats, in L1; fp16 widened once)
//       for each MR tokens: micro-kernel                (MR × NR accumulators in registers)
//
// The micro-kernel is an outer product: per input k it loads NR weights (two SIMD batches), broadcasts
// one x per token and issues 2·MR FMAs, so the FMA units — not loads — bound it.
#pragma once

#include <algorithm>
#include <array>
#include <string_view>
#include <utility>
#include <vector>

#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/simd/f16_widen.hpp"
#include "elastilm/simd/gemm_bf16.hpp"
#include "elastilm/simd/gemm_bf16_mmla.hpp"
#include "elastilm/simd/gemm_f16.hpp"
#include "elastilm/simd/matvec.hpp"
#include "elastilm/simd/precision.hpp"
#include "elastilm/simd/quant_matmul.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm {

namespace gemm {

using simd::fbatch;
inline constexpr int S = simd::lanes;
inline constexpr int NR = 2 * S;                // outputs per panel
inline constexpr int MR = S == 8 ? 6 : 8;       // tokens per micro-tile: 2·MR accumulators + 3 fit the registers
inline constexpr int KC = S == 16 ? 384 : 512;  // inputs per block: a packed panel is KC·NR·4 bytes (32–48 KB)

// Packs W(i0 .. i0+NR, k0 .. k0+kc) into panel[k][i] as fp32; rows past W.rows are zero.
template <class T>
void pack_panel(float* panel, const MatrixView& W, int i0, int k0, int kc) {
    const T* data = static_cast<const T*>(W.data);
    const int rows = std::min(NR, W.rows - i0);
    if (W.layout == Layout::out_major) {
        for (int i = 0; i < rows; ++i) {
            const T* src = data + W.offset(i0 + i, k0);
            for (int k = 0; k < kc; ++k) panel[k * NR + i] = simd::to_float(src[k]);
        }
        for (int i = rows; i < NR; ++i)
            for (int k = 0; k < kc; ++k) panel[k * NR + i] = 0.0f;
    } else {
        for (int k = 0; k < kc; ++k) {
            const T* src = data + W.offset(i0, k0 + k);
            float* dst = panel + k * NR;
            if (rows == NR) {
                simd::load(src).store_unaligned(dst);
                simd::load(src + S).store_unaligned(dst + S);
            } else {
                for (int i = 0; i < rows; ++i) dst[i] = simd::to_float(src[i]);
                for (int i = rows; i < NR; ++i) dst[i] = 0.0f;
            }
        }
    }
}

// Y[0..M, 0..cols) (+)= X[0..M, 0..kc) · panel; `accumulate` false on the first k-block.
template <int M>
void micro_kernel(float* Y, std::size_t ldy, int cols, const float* X, std::size_t ldx, const float* panel, int kc, bool accumulate) {
    fbatch acc[M][2];
    for (int m = 0; m < M; ++m) acc[m][0] = acc[m][1] = fbatch(0.0f);
    for (int k = 0; k < kc; ++k) {
        const fbatch w0 = fbatch::load_unaligned(panel + k * NR);
        const fbatch w1 = fbatch::load_unaligned(panel + k * NR + S);
        for (int m = 0; m < M; ++m) {
            const fbatch xb(X[m * ldx + k]);
            acc[m][0] = xsimd::fma(xb, w0, acc[m][0]);
            acc[m][1] = xsimd::fma(xb, w1, acc[m][1]);
        }
    }
    for (int m = 0; m < M; ++m) {
        float* y = Y + m * ldy;
        if (cols == NR) {
            if (accumulate) {
                (acc[m][0] + fbatch::load_unaligned(y)).store_unaligned(y);
                (acc[m][1] + fbatch::load_unaligned(y + S)).store_unaligned(y + S);
            } else {
                acc[m][0].store_unaligned(y);
                acc[m][1].store_unaligned(y + S);
            }
        } else {
            alignas(64) float tmp[NR];
            acc[m][0].store_aligned(tmp);
            acc[m][1].store_aligned(tmp + S);
            for (int i = 0; i < cols; ++i) y[i] = accumulate ? y[i] + tmp[i] : tmp[i];
        }
    }
}

using MicroKernel = void (*)(float*, std::size_t, int, const float*, std::size_t, const float*, int, bool);

// micro_kernel<1> … micro_kernel<MR>, for the token tail.
inline constexpr auto kernels = []<std::size_t... I>(std::index_sequence<I...>) {
    return std::array<MicroKernel, MR>{&micro_kernel<int(I) + 1>...};
}(std::make_index_sequence<MR>{});

}  // namespace gemm

// The reduced-precision GEMM `GemmPrecision::reduced` runs for F16 weights in this build (precision.hpp).
// With both AVX512-FP16 and AVX-512 BF16 (Sapphire Rapids), fp16: both meet the accuracy bound, fp16 is
// far faster:
//   accuracy  max |logit − reference| (tiny-gqa-15M, docs-95M; bound 2e-2): fp16 0.0128–0.0148, bf16
//             0.0126–0.0167 with W split exactly into hi + lo except in the gate and up projections
//             (GemmWeights; tests/model/reduced_precision_test.cpp); perplexity within 0.02 % of fp32 for both;
//   speed     on that core `vdpbf16ps` peaked at ~1/4 of `vfmadd231ph`'s flops, half the fp32 FMA's
//             (bench/roofline.hpp, then with 12 chains), and the exact-W bf16 GEMM issues two per useful
//             pair of products; the fp16 GEMM runs TinyLlama's 512-token GEMMs at 64–66 % of its
//             instruction's peak on 2 threads (bench/kernels.cpp matmul_fp16, README "Prefill precision").
// With AVX-512 BF16 alone (Zen 4, Zen 5) bf16 it is, for the matrices that may round W (GemmWeights); see
// gemm_precision_for below for the others.
inline constexpr GemmPrecision reduced_gemm_precision =
#if defined(ELASTILM_GEMM_F16)
    GemmPrecision::fp16;
#elif defined(ELASTILM_GEMM_BF16)
    GemmPrecision::bf16;
#elif defined(ELASTILM_GEMM_BF16_MMLA)  // ARM with +bf16 but no +fp16 arithmetic; with both, fp16 (not timed: qemu only)
    GemmPrecision::bf16;
#else
    GemmPrecision::fp32;
#endif

// The instruction behind each precision in this build ("" when the build has none).
constexpr std::string_view gemm_instruction(GemmPrecision p) {
    if (p == GemmPrecision::reduced) p = reduced_gemm_precision;
#if defined(ELASTILM_GEMM_BF16)
    if (p == GemmPrecision::bf16) return "bf16 (AVX-512 BF16 vdpbf16ps)";
#endif
#if defined(ELASTILM_GEMM_F16)
    if (p == GemmPrecision::fp16) return simd::f16v::instruction;
#endif
#if defined(ELASTILM_GEMM_BF16_MMLA)
    if (p == GemmPrecision::bf16) return gemm_bf16_mmla::instruction;
#endif
    return "";
}
inline constexpr std::string_view reduced_gemm = gemm_instruction(GemmPrecision::reduced);

// Whether `reduced` runs the matrices that must stay exact through the fp32 GEMM: where the reduced GEMM
// is x86 bf16. Split into hi + lo such a matrix costs two `vdpbf16ps` per pair of inputs, which on Zen 5
// (where the instruction peaks at twice the fp32 FMA's flops) was no faster than the fp32 GEMM — 0.85–1.03×
// its GFLOP/s on TinyLlama's shapes — and rounds x besides; with those matrices in fp32 the logits moved
// 0.0068–0.0165 from the references, against 0.0126–0.0282 split (README, "Prefill precision").
inline constexpr bool reduced_keeps_exact_weights_fp32 =
#if defined(ELASTILM_GEMM_BF16)
    reduced_gemm_precision == GemmPrecision::bf16;
#else
    false;
#endif

// The precision a product runs at: the setting, with `reduced` resolved for this build and for `weights`.
inline GemmPrecision gemm_precision_for(GemmWeights weights) {
    const GemmPrecision set = gemm_precision();
    if (set != GemmPrecision::reduced) return set;
    if (reduced_keeps_exact_weights_fp32 && weights == GemmWeights::exact) return GemmPrecision::fp32;
    return reduced_gemm_precision;
}

// Y[t, i] = Σ_j W(i, j) · X[t, j] for t < n, i < W.rows, j < W.cols.
// X is row-major with leading dimension ldx (>= W.cols); Y row-major with ldy (>= W.rows).
// As in every kernel and op: the output first (with its leading dimension), then the inputs, then options.
// `weights` (precision.hpp): whether a reduced GEMM may round W instead of splitting it.
inline void matmul(float* Y, int ldy, const MatrixView& W, const float* X, int ldx, int n, ThreadPool* pool = nullptr,
                   GemmWeights weights = GemmWeights::exact) {
    using namespace gemm;
    if (n <= 2) {  // a GEMM's packing does not pay for one or two tokens
        for (int t = 0; t < n; ++t) matvec(Y + std::size_t(t) * ldy, W, X + std::size_t(t) * ldx, pool);
        return;
    }
    if (is_quantized(W.dtype)) return quant_matmul(Y, ldy, W, X, ldx, n, pool);  // simd/quant_matmul.hpp
    if (W.dtype == DType::f16) {
        const GemmPrecision p = gemm_precision_for(weights);
#if defined(ELASTILM_GEMM_BF16)
        if (p == GemmPrecision::bf16) return gemm_bf16::matmul(Y, ldy, W, X, ldx, n, pool, weights);
#endif
#if defined(ELASTILM_GEMM_BF16_MMLA)
        if (p == GemmPrecision::bf16) return gemm_bf16_mmla::matmul(Y, ldy, W, X, ldx, n, pool);
#endif
#if defined(ELASTILM_GEMM_F16)
        if (p == GemmPrecision::fp16 && gemm_f16::matmul(Y, ldy, W, X, ldx, n, pool)) return;  // else: |x| too large for fp16
#endif
        (void)p;
    }
    const int panels = (W.rows + NR - 1) / NR;
    for (int k0 = 0; k0 < W.cols; k0 += KC) {
        const int kc = std::min(KC, W.cols - k0);
        auto run = [&](int p0, int p1) {
            alignas(64) static thread_local float panel[KC * NR];
            for (int p = p0; p < p1; ++p) {
                const int i0 = p * NR, cols = std::min(NR, W.rows - i0);
                if (W.dtype == DType::f16) pack_panel<f16_bits>(panel, W, i0, k0, kc);
                else pack_panel<float>(panel, W, i0, k0, kc);
                for (int t0 = 0; t0 < n; t0 += MR) {
                    const int m = std::min(MR, n - t0);
                    kernels[m - 1](Y + std::size_t(t0) * ldy + i0, std::size_t(ldy), cols, X + std::size_t(t0) * ldx + k0, std::size_t(ldx),
                                   panel, kc, k0 > 0);
                }
            }
        };
        if (pool && pool->size() > 1 && panels > 1) pool->parallel_for(panels, run);
        else run(0, panels);
    }
}

}  // namespace elastilm
