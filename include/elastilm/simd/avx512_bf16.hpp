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
inline void convert(std::uint16_t* dst, const f16_bits* src, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 f = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), (__m256i)_mm512_cvtneps_pbh(f));
    }
    if (i < n) {
        const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
        const __m512 f = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i));
        _mm256_mask_storeu_epi16(dst + i, m, (__m256i)_mm512_cvtneps_pbh(f));
    }
}

// The pairs (a[i], b[i]) for i < 16, from 16 fp16 values of element k (a) and of element k + 1 (b).
inline pairs interleave(const f16_bits* a, const f16_bits* b) {
    const __m512 fa = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a)));
    const __m512 fb = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)));
    const __m512i ab = (__m512i)_mm512_cvtne2ps_pbh(fb, fa);  // bf16 a0 … a15 | b0 … b15
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                           23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(order, ab);
}

}  // namespace elastilm::simd::bf16

#endif
