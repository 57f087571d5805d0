// Int8 matrix multiply-accumulate on AArch64 with I8MM (-march=armv8.6-a or +i8mm): SMMLA (vmmlaq_s32)
// takes a 2×8 int8 matrix A and a 2×8 int8 matrix B, each one 16-byte register holding its two rows of 8
// one after the other, and adds A·Bᵀ — a 2×2 int32 tile, [a0·b0, a0·b1, a1·b0, a1·b1] — to an int32x4
// accumulator: 32 products per instruction where SDOT gives 16, and no horizontal sum at the end.
//
// So a block of 32 k for two weight rows (or two tokens) is fed as four registers, register g holding
// elements 8g..8g+7 of the first row, then of the second: the two rows' 8-byte groups interleaved.
// Four SMMLA over them give the whole block's 2 rows × 2 tokens; the tile is then scaled per (row, token)
// by d_w·d_x and accumulated in fp32, as every other kernel does (simd/quant_dot.hpp).
#pragma once

#include <cstdint>

#include <arm_neon.h>

#include "elastilm/simd/arch/quant_dot_neon.hpp"

namespace elastilm::simd::qmmla {

// A block of 32 k of two rows, as SMMLA reads it: g[i] = (row 0 [8i, 8i+8), row 1 [8i, 8i+8)).
struct Pair32 {
    int8x16_t g[4];
};

// A 2×2 fp32 tile (row r, token t) at lane 2r + t.
struct Tile {
    float32x4_t v;
};

// Two 16-byte runs a = (a[0..8), a[8..16)), b = likewise, into (a[0..8), b[0..8)) and (a[8..16), b[8..16)).
inline void zip8(int8x16_t& lo, int8x16_t& hi, int8x16_t a, int8x16_t b) {
    const int64x2_t a64 = vreinterpretq_s64_s8(a), b64 = vreinterpretq_s64_s8(b);
    lo = vreinterpretq_s8_s64(vzip1q_s64(a64, b64));
    hi = vreinterpretq_s8_s64(vzip2q_s64(a64, b64));
}

// Two weight blocks already in registers (qarch::load_q8 / load_q4: elements 0..15, 16..31).
inline Pair32 interleave(qarch::W32 r0, qarch::W32 r1) {
    Pair32 p;
    zip8(p.g[0], p.g[1], r0.lo, r1.lo);
    zip8(p.g[2], p.g[3], r0.hi, r1.hi);
    return p;
}

// Two tokens' activation blocks already interleaved in memory (64 bytes, in Pair32's order).
inline Pair32 load_pair(const std::int8_t* q) { return {{vld1q_s8(q), vld1q_s8(q + 16), vld1q_s8(q + 32), vld1q_s8(q + 48)}}; }

inline Tile zero() { return {vdupq_n_f32(0.0f)}; }

// The tile's scales d_w[r]·d_x[t] in its lane order: rows = (d_w[0], d_w[0], d_w[1], d_w[1]), dx = d_x[0..2).
inline float32x4_t row_scales(float dw0, float dw1) { return vcombine_f32(vdup_n_f32(dw0), vdup_n_f32(dw1)); }
inline float32x4_t scales(float32x4_t rows, const float* dx) {
    const float32x2_t x = vld1_f32(dx);
    return vmulq_f32(rows, vcombine_f32(x, x));
}

// acc += scale ∘ (W·Xᵀ) over one block: W two weight rows, X two tokens, 32 k — four SMMLA, exact in int32
// (|Σ| ≤ 32·128·128 = 2¹⁹).
inline Tile madd(Tile acc, const Pair32& w, const Pair32& x, float32x4_t scale) {
    int32x4_t s = vmmlaq_s32(vdupq_n_s32(0), w.g[0], x.g[0]);
    s = vmmlaq_s32(s, w.g[1], x.g[1]);
    s = vmmlaq_s32(s, w.g[2], x.g[2]);
    s = vmmlaq_s32(s, w.g[3], x.g[3]);
    return {vfmaq_f32(acc.v, vcvtq_f32_s32(s), scale)};
}

inline void store(float out[4], Tile t) { vst1q_f32(out, t.v); }

}  // namespace elastilm::simd::qmmla
