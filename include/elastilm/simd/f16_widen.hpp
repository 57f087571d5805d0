// Loading fp16 weights (and fp16 KV-cache entries) as fp32 SIMD batches, and narrowing fp32 to fp16 for
// the cache: the one place these intrinsics appear. F16C / AVX-512 convert 8 / 16 halves per
// instruction on x86, `vcvt_f32_f16` / `vcvt_f16_f32` 4 on ARM; other targets take a scalar path.
#pragma once

#include <algorithm>
#include <array>
#include <bit>

#include <xsimd/xsimd.hpp>

#include "elastilm/simd/f16.hpp"

#if defined(__F16C__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(__ARM_NEON) || defined(__aarch64__)
#include <arm_neon.h>
#endif

namespace elastilm::simd {

using arch = xsimd::default_arch;
using fbatch = xsimd::batch<float, arch>;
inline constexpr int lanes = int(fbatch::size);

namespace detail {
// Widening for a given lane count; a template so only the branch for this target is instantiated.
template <int Lanes>
fbatch load_f16(const f16_bits* p) {
#if defined(__AVX512F__)
    if constexpr (Lanes == 16) return fbatch(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
#endif
#if defined(__F16C__)
    if constexpr (Lanes == 8) return fbatch(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#endif
#if defined(__aarch64__)
    if constexpr (Lanes == 4) return fbatch(vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))));
#endif
    alignas(64) std::array<float, Lanes> tmp;
    for (int i = 0; i < Lanes; ++i) tmp[i] = f16_to_f32(p[i]);
    return fbatch::load_aligned(tmp.data());
}
}  // namespace detail

// `lanes` consecutive fp16 values at `p` (any alignment), widened to fp32.
inline fbatch load_f16(const f16_bits* p) { return detail::load_f16<lanes>(p); }

inline fbatch load(const float* p) { return fbatch::load_unaligned(p); }
inline fbatch load(const f16_bits* p) { return load_f16(p); }

// The first `count` (< lanes) values at `p`, the other lanes zero: a short tail as one batch.
template <class T>
fbatch load_partial(const T* p, int count) {
    alignas(64) std::array<T, lanes> tmp{};
    std::copy_n(p, count, tmp.data());
    return load(tmp.data());
}

inline float to_float(float v) { return v; }
inline float to_float(f16_bits v) {
#if defined(__F16C__)
    return _cvtsh_ss(v);
#elif defined(__aarch64__)
    return static_cast<float>(std::bit_cast<__fp16>(v));
#else
    return f16_to_f32(v);
#endif
}

// dst[0 .. n) = fp16(src[0 .. n)), round to nearest even: what the fp16 KV cache stores.
inline void store_f16(f16_bits* dst, const float* src, int n) {
    int i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
#if defined(__aarch64__)
    for (; i + 4 <= n; i += 4) vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
#endif
    for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

}  // namespace elastilm::simd
