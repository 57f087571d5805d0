// Integer block dot products on AArch64: SDOT (vdotq_s32, 4 int8 products per int32 lane) when compiled
// with the dot-product extension (-march=armv8.2-a+dotprod), else widening multiplies (vmull_s8) with
// pairwise accumulation — exact either way (a pair of int8 products fits int16).
#pragma once

#include <cstdint>

#include <arm_neon.h>

namespace elastilm::simd::qarch {

inline constexpr const char* kName =
#if defined(__ARM_FEATURE_DOTPROD)
    "neon+sdot";
#else
    "neon";
#endif

struct Acc {
    float32x4_t v;
};
struct W32 {
    int8x16_t lo, hi;  // elements 0..15, 16..31
};

inline Acc zero() { return {vdupq_n_f32(0.0f)}; }
inline Acc add(Acc a, Acc b) { return {vaddq_f32(a.v, b.v)}; }
inline float sum(Acc a) { return vaddvq_f32(a.v); }

inline W32 load_q8(const std::int8_t* q) { return {vld1q_s8(q), vld1q_s8(q + 16)}; }
// Nibbles: elements 0..15 in the low halves of the 16 bytes, 16..31 in the high halves; minus 8.
inline W32 load_q4(const std::uint8_t* qs) {
    const uint8x16_t b = vld1q_u8(qs);
    const int8x16_t eight = vdupq_n_s8(8);
    return {vsubq_s8(vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0f))), eight), vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(b, 4)), eight)};
}

// Σ w·x of one block, spread over 4 int32 lanes.
inline int32x4_t dot(W32 w, const std::int8_t* x) {
    const int8x16_t x0 = vld1q_s8(x), x1 = vld1q_s8(x + 16);
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w.lo, x0), w.hi, x1);
#else
    const int16x8_t a = vmlal_s8(vmull_s8(vget_low_s8(w.lo), vget_low_s8(x0)), vget_high_s8(w.lo), vget_high_s8(x0));
    const int16x8_t b = vmlal_s8(vmull_s8(vget_low_s8(w.hi), vget_low_s8(x1)), vget_high_s8(w.hi), vget_high_s8(x1));
    return vpadalq_s16(vpaddlq_s16(a), b);
#endif
}

// acc += scale · Σ w·x
inline Acc madd(Acc acc, W32 w, const std::int8_t* x, float scale) { return {vfmaq_n_f32(acc.v, vcvtq_f32_s32(dot(w, x)), scale)}; }

}  // namespace elastilm::simd::qarch
