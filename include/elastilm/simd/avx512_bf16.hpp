// AVX-512 BF16: the dot product of bf16 pairs accumulated in fp32 (`vdpbf16ps`), and the conversions
// that feed it. The only place these intrinsics appear; compiled only when -march offers them (Cooper
// Lake, Sapphire Rapids, Zen 4 …), so the portable x86-64-v3 build never sees this file's body.
//
// A "pair" is two bf16 values in one 32-bit word, element k in the low half and k + 1 in the high half:
// dot(acc, x, w) adds x.lo·w[i].lo + x.hi·w[i].hi to each of the 16 fp32 lanes acc[i].
#pragma once

#if defined(__AVX512BF16__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define ELASTILM_GEMM_BF16 1

#include <cstdint>

#include <immintrin.h>

#include "elastilm/simd/f16.hpp"

namespace elastilm::simd::bf16 {

using pair_bits = std::uint32_t;
inline constexpr int lanes = 16;  // fp32 accumulators per vector = weight pairs per vector

using acc = __m512;
using pairs = __m512i;

inline acc zero() { return _mm512_setzero_ps(); }
inline acc load_acc(const float* p) { return _mm512_loadu_ps(p); }
inline void store(float* p, acc a) { _mm512_storeu_ps(p, a); }
inline acc add(acc a, acc b) { return _mm512_add_ps(a, b); }
inline pairs load(const pair_bits* p) { return _mm512_loadu_si512(p); }
inline void store(pair_bits* p, pairs v) { _mm512_storeu_si512(p, v); }

// acc[i] += x.lo·w[i].lo + x.hi·w[i].hi (the x pair broadcast to every lane).
inline acc dot(acc a, pair_bits x, pairs w) {
    return _mm512_dpbf16_ps(a, (__m512bh)_mm512_set1_epi32(int(x)), (__m512bh)w);
}

// dst[0 .. n) = bf16(src[0 .. n)), rounded to nearest even.
inline void convert(std::uint16_t* dst, const float* src, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    if (i < n) {
        const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
        _mm256_mask_storeu_epi16(dst + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i)));
    }
}
// An F16 weight as the exact sum of two bf16 values, hi = bf16(w) (nearest even) and lo = w − hi: fp16
// keeps 11 significant bits, hi the top 8, and the remainder — a multiple of w's last fp16 bit no larger
// than half of hi's last bit — fits in the 3 bits left (bf16 has fp32's exponents, so even fp16
// subnormals split exactly). A dot against (hi, lo) therefore sees w unrounded.
struct split_bits {
    __m256i hi, lo;  // 16 bf16 values each
};
inline split_bits split(__m512 w) {
    const __m256i hi = (__m256i)_mm512_cvtneps_pbh(w);
    const __m512 hi_f = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(hi), 16));
    return {hi, (__m256i)_mm512_cvtneps_pbh(_mm512_sub_ps(w, hi_f))};
}

// hi[0 .. n) + lo[0 .. n) = src[0 .. n) exactly (see split).
inline void convert_split(std::uint16_t* hi, std::uint16_t* lo, const f16_bits* src, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const split_bits s = split(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi + i), s.hi);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo + i), s.lo);
    }
    if (i < n) {
        const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
        const split_bits s = split(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i)));
        _mm256_mask_storeu_epi16(hi + i, m, s.hi);
        _mm256_mask_storeu_epi16(lo + i, m, s.lo);
    }
}

// The pairs (a[i], b[i]) for i < 16, split as above: hi holds (hi(a[i]), hi(b[i])), lo the remainders;
// from 16 fp16 values of element k (a) and of element k + 1 (b).
struct split_pairs {
    pairs hi, lo;
};
inline split_pairs interleave_split(const f16_bits* a, const f16_bits* b) {
    const split_bits sa = split(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a))));
    const split_bits sb = split(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b))));
    // a0 b0 a1 b1 …: the 16-bit words of a and b interleaved, a low.
    auto zip = [](__m256i lo_half, __m256i hi_half) {
        return _mm512_or_si512(_mm512_cvtepu16_epi32(lo_half), _mm512_slli_epi32(_mm512_cvtepu16_epi32(hi_half), 16));
    };
    return {zip(sa.hi, sb.hi), zip(sa.lo, sb.lo)};
}

}  // namespace elastilm::simd::bf16

#endif
