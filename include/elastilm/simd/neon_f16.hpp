// NEON FP16 arithmetic (ARMv8.2-A +fp16): fp16 fused multiply-add on 8 lanes (`vfmaq_f16`), widening of
// fp16 partial sums into fp32, and fp32 → fp16 narrowing. The only place these intrinsics appear;
// compiled only when -march offers FP16 vector arithmetic.
#pragma once

#if defined(__ARM_FEATURE_FP16_VECTOR_ARITHMETIC) && defined(__aarch64__)
#define ELASTILM_GEMM_F16 1

#include <bit>
#include <cmath>
#include <cstddef>
#include <string_view>

#include <arm_neon.h>

#include "elastilm/simd/f16.hpp"

namespace elastilm::simd::f16v {

inline constexpr int lanes = 8;  // fp16 lanes per vector
inline constexpr std::string_view instruction = "fp16 (NEON vfmaq_f16)";  // as reports name it
using vec = float16x8_t;

inline vec zero() { return vdupq_n_f16(0); }
inline vec load(const f16_bits* p) { return vreinterpretq_f16_u16(vld1q_u16(p)); }
inline void store(f16_bits* p, vec v) { vst1q_u16(p, vreinterpretq_u16_f16(v)); }

// Inputs per broadcast (see avx512_fp16.hpp): one, NEON broadcasts a half from memory for free (`ld1r`).
inline constexpr int depth = 1;

// *p in every lane.
inline vec broadcast(const f16_bits* p) { return vreinterpretq_f16_u16(vld1q_dup_u16(p)); }

// acc + a·b in fp16, per lane.
inline vec fma(vec acc, vec a, vec b) { return vfmaq_f16(acc, a, b); }

// y[0 .. 8) += acc widened to fp32: a short fp16 run folded into fp32 sums.
inline void fold(float* y, vec acc) {
    vst1q_f32(y, vaddq_f32(vld1q_f32(y), vcvt_f32_f16(vget_low_f16(acc))));
    vst1q_f32(y + 4, vaddq_f32(vld1q_f32(y + 4), vcvt_high_f32_f16(acc)));
}

// dst[r] = src[0][r] for r < width (zero for r ≥ n), as avx512_fp16.hpp's with depth 1.
inline void interleave(f16_bits* dst, const f16_bits* const* src, int n, int width) {
    for (int r = 0; r < width; ++r) dst[r] = r < n ? src[0][r] : f16_bits(0);
}

// dst[s·ldd + j] = src[j·lds + s] for s, j < 16 (as avx512_fp16.hpp's, with depth 1).
inline void transpose16(f16_bits* dst, std::size_t ldd, const f16_bits* src, std::size_t lds) {
    for (int s = 0; s < 16; ++s)
        for (int j = 0; j < 16; ++j) dst[s * ldd + j] = src[j * lds + s];
}

// dst[0 .. n) = fp16(src[0 .. n)); returns max |src| (NaN counts as infinite) so the caller can tell
// whether fp16 sums of these values could overflow.
inline float convert(f16_bits* dst, const float* src, int n) {
    float32x4_t mx = vdupq_n_f32(0);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(src + i);
        mx = vmaxq_f32(mx, vabsq_f32(v));  // vmaxq propagates NaN
        vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(v)));
    }
    float m = vmaxvq_f32(mx);
    for (; i < n; ++i) {
        const float a = std::fabs(src[i]);
        m = a > m || std::isnan(a) ? a : m;
        dst[i] = std::bit_cast<f16_bits>(__fp16(src[i]));
    }
    return std::isnan(m) ? INFINITY : m;
}

}  // namespace elastilm::simd::f16v

#endif
