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
#include <cstring>
#include <string_view>

#include <immintrin.h>

#include "elastilm/simd/f16.hpp"

namespace elastilm::simd::f16v {

inline constexpr int lanes = 32;  // fp16 lanes per vector
inline constexpr std::string_view instruction = "fp16 (AVX512-FP16 vfmadd231ph)";  // as reports name it
using vec = __m512h;

inline vec zero() { return _mm512_setzero_ph(); }
inline vec load(const f16_bits* p) { return _mm512_loadu_ph(p); }
inline void store(f16_bits* p, vec v) { _mm512_storeu_ph(p, v); }
// Inputs per broadcast: a weight operand is the pair W(i, k), W(i, k + 1) repeated over the vector, and
// activations are packed to match — lane 2j + q holds token j's input k + q. A 32-bit broadcast from
// memory (`vpbroadcastd`) is a load-port uop only, where a 16-bit one (`vpbroadcastw`) also takes a
// shuffle uop on port 5, one of the two ports the FMAs use. Each lane then sums only every other input;
// the two lanes of a token are added once, at the end.
inline constexpr int depth = 2;

// The `depth` halves at p, repeated over the vector.
inline vec broadcast(const f16_bits* p) {
    std::uint32_t pair;
    std::memcpy(&pair, p, sizeof pair);
    return _mm512_castsi512_ph(_mm512_set1_epi32(int(pair)));
}

// acc + a·b in fp16, per lane.
inline vec fma(vec acc, vec a, vec b) { return _mm512_fmadd_ph(a, b, acc); }

// y[0 .. 32) += acc widened to fp32: a short fp16 run folded into fp32 sums. Seven uops on the two ports
// the FMAs use (an extract, two widenings of two uops each, two adds), once per RUN FMAs of an
// accumulator. One micro-kernel alone, operands in cache (bench/kernels.cpp gemm_f16_microkernel), runs at
// 78–80 % of vfmadd231ph's peak; folding every 1024 steps instead of 32 (a throwaway build, side by side)
// made it ~1.25× faster. Widening from memory (store, then `vcvtph2ps zmm, m256`) measured slower.
inline void fold(float* y, vec acc) {
    const __m512i bits = _mm512_castph_si512(acc);
    const __m512 lo = _mm512_cvtph_ps(_mm512_castsi512_si256(bits));
    const __m512 hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(bits, 1));
    _mm512_storeu_ps(y, _mm512_add_ps(_mm512_loadu_ps(y), lo));
    _mm512_storeu_ps(y + 16, _mm512_add_ps(_mm512_loadu_ps(y + 16), hi));
}

// dst[r·depth + q] = src[q][r] for r < width ≤ 16 (zero for r ≥ n): `depth` rows of an input-major W
// (its inputs k, k + 1 over outputs i0 ..) turned into the micro-kernel's weight pairs, in three instructions.
inline void interleave(f16_bits* dst, const f16_bits* const* src, int n, int width) {
    const auto mask = [](int m) { return __mmask16((1u << m) - 1u); };
    const __m512i a = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask(n), src[0]));
    const __m512i b = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask(n), src[1]));
    _mm512_mask_storeu_epi32(dst, mask(width), _mm512_or_si512(a, _mm512_slli_epi32(b, 16)));
}

// dst[s·ldd + j·depth + q] = src[j·lds + s·depth + q] for s, j < 16, q < depth: 16 tokens' pairs of
// inputs turned into 16 steps' rows of tokens, as a 16×16 transpose of 32-bit words (64 shuffles where
// scalar copies took ~3 cycles a word).
inline void transpose16(f16_bits* dst, std::size_t ldd, const f16_bits* src, std::size_t lds) {
    __m512i r[16], t[16], u[16];
    for (int j = 0; j < 16; ++j) r[j] = _mm512_loadu_si512(src + j * lds);
    for (int g = 0; g < 4; ++g) {
        t[4 * g + 0] = _mm512_unpacklo_epi32(r[4 * g], r[4 * g + 1]);
        t[4 * g + 1] = _mm512_unpackhi_epi32(r[4 * g], r[4 * g + 1]);
        t[4 * g + 2] = _mm512_unpacklo_epi32(r[4 * g + 2], r[4 * g + 3]);
        t[4 * g + 3] = _mm512_unpackhi_epi32(r[4 * g + 2], r[4 * g + 3]);
        u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g + 0], t[4 * g + 2]);  // in each 128-bit lane L: rows 4g .. 4g+3 of column 4L
        u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g + 0], t[4 * g + 2]);  // … of column 4L + 1
        u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    for (int m = 0; m < 4; ++m) {  // column 4L + m gathers lane L of u[m], u[4 + m], u[8 + m], u[12 + m]
        const __m512i va = _mm512_shuffle_i32x4(u[m], u[4 + m], 0x88), vb = _mm512_shuffle_i32x4(u[m], u[4 + m], 0xdd);
        const __m512i wa = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0x88), wb = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0xdd);
        _mm512_storeu_si512(dst + (m + 0) * ldd, _mm512_shuffle_i32x4(va, wa, 0x88));
        _mm512_storeu_si512(dst + (m + 8) * ldd, _mm512_shuffle_i32x4(va, wa, 0xdd));
        _mm512_storeu_si512(dst + (m + 4) * ldd, _mm512_shuffle_i32x4(vb, wb, 0x88));
        _mm512_storeu_si512(dst + (m + 12) * ldd, _mm512_shuffle_i32x4(vb, wb, 0xdd));
    }
}

// dst[0 .. n) = fp16(src[0 .. n)), rounded to nearest even; returns max |src| (NaN counts as infinite)
// so the caller can tell whether fp16 sums of these values could overflow.
inline float convert(f16_bits* dst, const float* src, int n) {
    constexpr int round = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    __m512 mx = _mm512_setzero_ps();
    bool nan = false;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(src + i);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) != 0;  // vmaxps would drop a NaN in its second operand
        mx = _mm512_max_ps(mx, _mm512_abs_ps(v));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtps_ph(v, round));
    }
    if (i < n) {
        const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
        const __m512 v = _mm512_maskz_loadu_ps(m, src + i);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) != 0;
        mx = _mm512_max_ps(mx, _mm512_abs_ps(v));
        _mm256_mask_storeu_epi16(dst + i, m, _mm512_cvtps_ph(v, round));
    }
    return nan ? INFINITY : _mm512_reduce_max_ps(mx);
}

}  // namespace elastilm::simd::f16v

#endif
