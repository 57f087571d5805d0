// AVX512-FP16 arithmetic (Sapphire Rapids and later): fp16 fused multiply-add on 32 lanes
// (`vfmadd231ph`), widening of fp16 partial sums into fp32, and fp32 → fp16 narrowing — the same
// `simd::f16v` interface as neon_f16.hpp, so gemm_f16.hpp serves both arches. The only place these
// intrinsics appear; compiled only when -march offers AVX512-FP16 (not Zen 4, which has only AVX-512 BF16).
#pragma once

#if defined(__AVX512FP16__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define ELASTILM_GEMM_F16 1

#include <bit>
#include <cmath>
#include <cstdint>
#include <string_view>

#include <immintrin.h>

#include "elastilm/simd/f16.hpp"

namespace elastilm::simd::f16v {

inline constexpr int lanes = 32;  // fp16 lanes per vector
inline constexpr std::string_view instruction = "fp16 (AVX512-FP16 vfmadd231ph)";  // as reports name it
using vec = __m512h;
// An activation as fma() broadcasts it: its fp16 bits twice, so that the broadcast is a 32-bit one — a
// plain load on x86 — where a 16-bit broadcast (`vpbroadcastw`) would also take a shuffle-port uop, the
// port the FMAs need.
using scalar = std::uint32_t;

inline vec zero() { return _mm512_setzero_ph(); }
inline vec load(const f16_bits* p) { return _mm512_loadu_ph(p); }
inline void store(f16_bits* p, vec v) { _mm512_storeu_ph(p, v); }

// acc[i] += x·w[i] in fp16 (x broadcast).
inline vec fma(vec acc, scalar x, vec w) { return _mm512_fmadd_ph(w, _mm512_castsi512_ph(_mm512_set1_epi32(int(x))), acc); }

// y[0 .. 32) += acc widened to fp32: a short fp16 run folded into fp32 sums.
inline void fold(float* y, vec acc) {
    const __m512i bits = _mm512_castph_si512(acc);
    const __m512 lo = _mm512_cvtph_ps(_mm512_castsi512_si256(bits));
    const __m512 hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(bits, 1));
    _mm512_storeu_ps(y, _mm512_add_ps(_mm512_loadu_ps(y), lo));
    _mm512_storeu_ps(y + 16, _mm512_add_ps(_mm512_loadu_ps(y + 16), hi));
}

// dst[0 .. n) = fp16(src[0 .. n)) as scalars, rounded to nearest even; returns max |src| (NaN counts as
// infinite) so the caller can tell whether fp16 sums of these values could overflow.
inline float convert(scalar* dst, const float* src, int n) {
    // Each fp16 into both halves of its 32-bit word.
    const auto twice = [](__m256i h) { const __m512i w = _mm512_cvtepu16_epi32(h); return _mm512_or_si512(w, _mm512_slli_epi32(w, 16)); };
    constexpr int round = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    __m512 mx = _mm512_setzero_ps();
    bool nan = false;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(src + i);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) != 0;  // vmaxps would drop a NaN in its second operand
        mx = _mm512_max_ps(mx, _mm512_abs_ps(v));
        _mm512_storeu_si512(dst + i, twice(_mm512_cvtps_ph(v, round)));
    }
    if (i < n) {
        const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
        const __m512 v = _mm512_maskz_loadu_ps(m, src + i);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) != 0;
        mx = _mm512_max_ps(mx, _mm512_abs_ps(v));
        _mm512_mask_storeu_epi32(dst + i, m, twice(_mm512_cvtps_ph(v, round)));
    }
    return nan ? INFINITY : _mm512_reduce_max_ps(mx);
}

}  // namespace elastilm::simd::f16v

#endif
