// BF16 matrix multiply-accumulate on AArch64 (-march=armv8.6-a, or +bf16): BFMMLA (`vbfmmlaq_f32`) takes
// a 2×4 bf16 matrix A and a 2×4 bf16 matrix B, each one 16-byte register holding its two rows of 4 one
// after the other, and adds A·Bᵀ — a 2×2 fp32 tile, [a0·b0, a0·b1, a1·b0, a1·b1] — to a float32x4
// accumulator: 16 multiply-adds per instruction, twice `vfmaq_f16`'s 8 and four times an fp32 FMA's.
// The products of bf16 values are exact in fp32 and summed at fp32 precision (the architecture's BFMMLA
// rounds its four-term sums to odd and flushes denormals: errors of ~2⁻²⁴ relative), so the rounding that
// matters is the operands' to bf16 (8 significant bits), which `split` makes up for where the caller wants.
//
// The only place these intrinsics appear; compiled only when -march offers BF16 vector arithmetic.
#pragma once

#if defined(__ARM_FEATURE_BF16_VECTOR_ARITHMETIC) && defined(__aarch64__)
#define ELASTILM_GEMM_BF16_MMLA 1

#include <cstdint>
#include <string_view>

#include <arm_neon.h>

namespace elastilm::simd::bfmmla {

inline constexpr std::string_view instruction = "bf16 (NEON bfmmla)";  // as reports name it

using bf16_bits = std::uint16_t;
using f16_bits = std::uint16_t;  // IEEE binary16, as simd/f16.hpp (a layer above this one) names it
using vec = bfloat16x8_t;   // two rows of 4 bf16 values, as BFMMLA reads an operand
using tile = float32x4_t;   // a 2×2 fp32 tile, (row i, column j) at lane 2i + j

inline tile zero() { return vdupq_n_f32(0.0f); }
inline vec load(const bf16_bits* p) { return vreinterpretq_bf16_u16(vld1q_u16(p)); }
inline void store(float out[4], tile t) { vst1q_f32(out, t); }

// acc + A·Bᵀ: a's rows (a[0..4), a[4..8)) against b's rows (b[0..4), b[4..8)).
inline tile mmla(tile acc, vec a, vec b) { return vbfmmlaq_f32(acc, a, b); }

namespace detail {
inline float32x4_t widen(const float* p) { return vld1q_f32(p); }
inline float32x4_t widen(const f16_bits* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

// Four values rounded to bf16 (BFCVTN: nearest even), and optionally what that rounding lost, rounded
// again: v − hi is exact in fp32 (hi is v's nearest bf16), so hi + lo holds 16 of v's significant bits —
// all 11 of an fp16 value's, which makes an F16 weight's split exact.
inline void split4(bf16_bits* hi, bf16_bits* lo, float32x4_t v) {
    const bfloat16x4_t h = vcvt_bf16_f32(v);
    vst1_u16(hi, vreinterpret_u16_bf16(h));
    if (lo) {
        const float32x4_t back = vreinterpretq_f32_u32(vshll_n_u16(vreinterpret_u16_bf16(h), 16));  // bf16 → fp32 is exact
        vst1_u16(lo, vreinterpret_u16_bf16(vcvt_bf16_f32(vsubq_f32(v, back))));
    }
}
}  // namespace detail

// hi[0 .. n) = bf16(src[0 .. n)); when lo is not null, lo[0 .. n) = bf16(src − hi) (see detail::split4).
// A non-finite x gives a NaN lo (inf − inf): the products that use it then say so.
template <class T>
void split(bf16_bits* hi, bf16_bits* lo, const T* src, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) detail::split4(hi + i, lo ? lo + i : nullptr, detail::widen(src + i));
    if (i < n) {  // the tail through the same vector rounding, padded with zeros
        T in[4] = {};
        bf16_bits h[4], l[4];
        for (int j = 0; i + j < n; ++j) in[j] = src[i + j];
        detail::split4(h, lo ? l : nullptr, detail::widen(in));
        for (int j = 0; i + j < n; ++j) {
            hi[i + j] = h[j];
            if (lo) lo[i + j] = l[j];
        }
    }
}

}  // namespace elastilm::simd::bfmmla

#endif
