// The sums of 16 AVX-512 vectors' lanes as one vector (lane j = Σ of r[j]'s 16 lanes): 31 shuffles and
// 15 adds, where 16 horizontal adds take 64 of each. xsimd 8.1's `haddp` for AVX-512 returns these sums
// with lanes 2–5 and 10–13 out of order, so this architecture gets its own; simd/lane_sums.hpp hides it.
// Each step halves the lanes of every row and doubles the rows per vector: 16 rows of 16 lanes, then
// 8 vectors of [row i's 8 | row i + 8's 8], 4 of four rows' 4, 1 of sixteen rows' 1 (in the 128-bit
// quarters' order 0–3, 8–11, 4–7, 12–15, which the last shuffle puts right).
#pragma once

#include <immintrin.h>

namespace elastilm::simd::avx512 {

inline __m512 lane_sums(const __m512 (&r)[16]) {
    __m512 half[8], quarter[4];
    for (int i = 0; i < 8; ++i)  // [r_i lanes 0–7 + 8–15 | r_{i+8} the same], in 128-bit quarters q0+q2, q1+q3
        half[i] = _mm512_add_ps(_mm512_shuffle_f32x4(r[i], r[i + 8], _MM_SHUFFLE(1, 0, 1, 0)),
                                _mm512_shuffle_f32x4(r[i], r[i + 8], _MM_SHUFFLE(3, 2, 3, 2)));
    for (int i = 0; i < 4; ++i)  // quarters: rows i, i + 8, i + 4, i + 12, four partial sums each
        quarter[i] = _mm512_add_ps(_mm512_shuffle_f32x4(half[i], half[i + 4], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_f32x4(half[i], half[i + 4], _MM_SHUFFLE(3, 1, 3, 1)));
    // Within each quarter, the four rows' four partial sums → one sum each (a 4×4 transpose-add).
    const __m512 u0 = _mm512_add_ps(_mm512_unpacklo_ps(quarter[0], quarter[1]), _mm512_unpackhi_ps(quarter[0], quarter[1]));
    const __m512 u1 = _mm512_add_ps(_mm512_unpacklo_ps(quarter[2], quarter[3]), _mm512_unpackhi_ps(quarter[2], quarter[3]));
    const __m512 sums =
        _mm512_add_ps(_mm512_shuffle_ps(u0, u1, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(u0, u1, _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm512_shuffle_f32x4(sums, sums, _MM_SHUFFLE(3, 1, 2, 0));  // quarters (0–3, 8–11, 4–7, 12–15) → rows in order
}

}  // namespace elastilm::simd::avx512
