// Integer block dot products on x86 (AVX2; AVX-512 VNNI / AVX-VNNI when compiled for them).
// One block: 32 int8 weights w and 32 int8 activations x. maddubs multiplies unsigned by signed bytes,
// so the sign moves onto x: Σ w·x = Σ |w| · (x·sign w). |w| ≤ 128 and |x| ≤ 127 keep every pair sum
// of maddubs within int16 (2·128·127 = 32512). VNNI's vpdpbusd does maddubs + madd in one instruction.
#pragma once

#include <cstdint>

#include <immintrin.h>

namespace elastilm::simd::qarch {

inline constexpr const char* kName =
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__))
    "avx2+avx512vnni";
#elif defined(__AVXVNNI__)
    "avx2+avxvnni";
#else
    "avx2";
#endif

struct Acc {
    __m256 v;
};
struct W32 {
    __m256i magnitude;  // |w|, read as unsigned
    __m256i sign;       // w, whose sign goes onto x
};

inline Acc zero() { return {_mm256_setzero_ps()}; }
inline Acc add(Acc a, Acc b) { return {_mm256_add_ps(a.v, b.v)}; }
inline float sum(Acc a) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

inline W32 from_signed(__m256i w) { return {_mm256_abs_epi8(w), w}; }
inline W32 load_q8(const std::int8_t* q) { return from_signed(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q))); }
// Nibbles: elements 0..15 in the low halves of the 16 bytes, 16..31 in the high halves; minus 8.
inline W32 load_q4(const std::uint8_t* qs) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i mask = _mm_set1_epi8(0x0f);
    const __m256i w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), mask), _mm_and_si128(b, mask));
    return from_signed(_mm256_sub_epi8(w, _mm256_set1_epi8(8)));
}

// Σ w·x of one block, spread over 8 int32 lanes.
inline __m256i dot(W32 w, const std::int8_t* x) {
    const __m256i sx = _mm256_sign_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)), w.sign);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w.magnitude, sx);
#elif defined(__AVXVNNI__)
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), w.magnitude, sx);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w.magnitude, sx), _mm256_set1_epi16(1));
#endif
}

// acc += scale · Σ w·x
inline Acc madd(Acc acc, W32 w, const std::int8_t* x, float scale) {
    return {_mm256_fmadd_ps(_mm256_cvtepi32_ps(dot(w, x)), _mm256_set1_ps(scale), acc.v)};
}

}  // namespace elastilm::simd::qarch
