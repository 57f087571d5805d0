// The few AVX-512 operations the packed quantized GEMM (simd/quant_gemm_packed.hpp) is written in, one
// name each. A vector holds 16 lanes: 16 int32 dot products, or 16 fp32 values, one per weight row.
// Needs AVX-512 VNNI (vpdpbusd) and AVX512BW/F; only included when the compiler targets both.
#pragma once

#include <cstdint>
#include <cstring>

#include <immintrin.h>

namespace elastilm::simd::qgemm_arch {

inline constexpr int kLanes = 16;
inline constexpr const char* kName = "avx512vnni packed (vpdpbusd zmm, u8 activations × s8 weights)";

using I32 = __m512i;
using F32 = __m512;

inline I32 zero_i() { return _mm512_setzero_si512(); }
inline F32 zero_f() { return _mm512_setzero_ps(); }

// 64 packed weight bytes: 16 rows × 4 consecutive k.
inline I32 load_w(const std::int8_t* p) { return _mm512_loadu_si512(p); }
// 4 consecutive activation bytes of one token, repeated in every lane (folds into an embedded broadcast).
inline I32 broadcast4(const std::uint8_t* p) {
    std::int32_t v;
    std::memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}
// acc[lane] += Σ_{j<4} x[j] · w[lane][j], x unsigned, w signed: vpdpbusd.
inline I32 dot4(I32 acc, I32 x_u8, I32 w_s8) { return _mm512_dpbusd_epi32(acc, x_u8, w_s8); }

// Packing: 4 bytes from each of 16 rows at base + offsets[lane]; lanes not in `live` read nothing, give 0.
using Mask = __mmask16;
inline Mask first_lanes(int n) { return n >= kLanes ? Mask(0xffff) : Mask((1u << n) - 1); }
inline I32 lane_offsets(int stride) { return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(stride)); }
inline I32 gather4(const void* base, I32 offsets, Mask live) { return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, offsets, base, 1); }
// Each byte's nibble at bit `shift` (0 or 4), minus 8: Q4_0's weights as int8.
inline I32 nibbles_minus8(I32 v, int shift) {
    return _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi32(v, shift), _mm512_set1_epi8(0x0f)), _mm512_set1_epi8(8));
}
// Each byte's sign bit flipped: interleaved Q8_0's stored w + 128 back to w.
inline I32 flip_sign_bits(I32 v) { return _mm512_xor_si512(v, _mm512_set1_epi8(char(0x80))); }
// acc[lane] += 128 · Σ of the lane's 4 signed bytes (vpdpbusd with 128 as the unsigned operand).
inline I32 add_128_sum(I32 acc, I32 w_s8) { return _mm512_dpbusd_epi32(acc, _mm512_set1_epi8(char(0x80)), w_s8); }
// The fp16 in each lane's low 16 bits, as fp32.
inline F32 f16_low_to_float(I32 v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }
inline void store_w(std::int8_t* p, I32 v) { _mm512_storeu_si512(p, v); }
inline F32 mul(F32 a, F32 b) { return _mm512_mul_ps(a, b); }

// Activations: max |x| over 32 floats, and 32 bytes round(x · inv) + 128 (round to nearest even, as
// std::nearbyint in the default rounding mode, so the bytes equal quantize_activations' plus 128).
inline float abs_max32(const float* x) {
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x)), _mm512_abs_ps(_mm512_loadu_ps(x + 16))));
}
inline void quantize32_biased(std::uint8_t* q, const float* x, float inv, int bias) {
    const __m512 s = _mm512_set1_ps(inv);
    const __m512i b = _mm512_set1_epi32(bias);
    const __m512i lo = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x), s)), b);
    const __m512i hi = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16), s)), b);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtepi32_epi8(lo));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtepi32_epi8(hi));
}

inline F32 to_float(I32 v) { return _mm512_cvtepi32_ps(v); }
inline F32 load(const float* p) { return _mm512_loadu_ps(p); }
inline F32 broadcast(float v) { return _mm512_set1_ps(v); }
inline F32 fma(F32 a, F32 b, F32 c) { return _mm512_fmadd_ps(a, b, c); }     // a·b + c
inline F32 fmsub(F32 a, F32 b, F32 c) { return _mm512_fmsub_ps(a, b, c); }   // a·b − c
inline void store(float* p, F32 v) { _mm512_storeu_ps(p, v); }
// The first n (< 16) lanes only: the rows past the matrix's end are not ours to write.
inline void store_first(float* p, F32 v, int n) { _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1), v); }

}  // namespace elastilm::simd::qgemm_arch
