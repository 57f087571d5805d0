// The AVX2 operations the interleaved Q8_0 / Q4_0 decode kernel (simd/quant_matvec_interleaved.hpp) is
// written in, under the names simd/arch/quant_dot_avx512.hpp gives them for AVX-512 VNNI. An interleaved
// half is 16 blocks, block j in int32 lane j; AVX2 holds it in two 256-bit registers (blocks 0–7, 8–15),
// so each type here is a pair. Needs AVX2, FMA and F16C (x86-64-v3).
//
// There is no vpdpbusd: a 4-byte dot product is maddubs (u8 × s8 → pairs summed into int16) then madd
// with ones (pairs of int16 → int32). maddubs saturates an int16, which decides the two formulations:
//   Q8_0: the stored bytes are w + 128 (the layout is vpdpbusd's), and 2 · 255 · 127 would saturate; so
//         the sign bit is flipped back to w and its sign moved onto x (Σ |w| · x·sign w, as
//         simd/arch/quant_dot_x86.hpp's one-block kernel does): 2 · 128 · 127 fits. No start value.
//   Q4_0: nibbles (0..15) times x: a pair is at most 2 · 15 · 127 = 3810, so the int16 sums of a half's
//         4 vectors of low and of high nibbles together stay within 8 · 3810 = 30480 < 32767, and one
//         madd per half turns them into int32 (then + c = −8 · Σ x, the nibbles' offset).
// Why this kernel on AVX2 at all: the one-block kernel spends ~14 vector instructions per Q4_0 block
// (unpacking 16 bytes, a scale broadcast and a float multiply-add per block) and streamed 49 % of the
// read loop on an Emerald Rapids VM (Q8_0: 67 %); this one, 16 blocks per conversion and multiply-add,
// 87 % and 91 % (experiments outside the repo; README, "Quantized weights", session 36).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include <immintrin.h>

namespace elastilm::simd::qavx2 {

inline constexpr const char* kName = "avx2 (16 blocks per half, maddubs + madd)";

struct Bytes {  // 64 bytes: lanes 0–7 in lo, 8–15 in hi
    __m256i lo, hi;
};
using I32 = Bytes;  // 16 int32 lanes
struct F32 {
    __m256 lo, hi;
};
using Bytes16 = __m128i;  // one block's 16 elements

// ---- Weights -------------------------------------------------------------------------------------
inline Bytes load_bytes(const void* p) {
    const auto* v = static_cast<const __m256i*>(p);
    return {_mm256_loadu_si256(v), _mm256_loadu_si256(v + 1)};
}
// The first n (a multiple of 4, ≤ 64) of 64 bytes at p, zeros after; only those n are read (a masked
// load, which does not fault on the lanes it leaves out). An interleaved row's shorter last group packs
// its vectors to 4 bytes per block.
inline Bytes load_first_bytes(const void* p, int n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i live = _mm256_set1_epi32(n / 4);
    const auto* i = static_cast<const int*>(p);
    return {_mm256_maskload_epi32(i, _mm256_cmpgt_epi32(live, lane)),
            _mm256_maskload_epi32(i + 8, _mm256_cmpgt_epi32(live, _mm256_add_epi32(lane, _mm256_set1_epi32(8))))};
}
// The 16 fp16 scales at p (an interleaved half's), as fp32; the first n only (the rest 0, not read).
inline F32 scales_at(const void* p) {
    const auto* v = static_cast<const __m128i*>(p);
    return {_mm256_cvtph_ps(_mm_loadu_si128(v)), _mm256_cvtph_ps(_mm_loadu_si128(v + 1))};
}
inline F32 scales_first(const void* p, int n) {
    alignas(32) std::uint16_t words[16] = {};
    std::memcpy(words, p, 2 * std::size_t(n));
    return scales_at(words);
}

// ---- The integer dot products of one half -------------------------------------------------------
inline I32 zero_i32() { return {_mm256_setzero_si256(), _mm256_setzero_si256()}; }
inline I32 load_i32(const std::int32_t* p) { return load_bytes(p); }
inline I32 add(I32 a, I32 b) { return {_mm256_add_epi32(a.lo, b.lo), _mm256_add_epi32(a.hi, b.hi)}; }

namespace detail {
// Σ_{j<4} |w|·(x·sign w) per int32 lane, w the signed bytes.
inline __m256i dot4_signed(__m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1));
}
inline __m256i signed_q8(__m256i stored) { return _mm256_xor_si256(stored, _mm256_set1_epi8(char(0x80))); }
}  // namespace detail

// Q8_0: two chains (even and odd vectors) of int32 sums; the stored w + 128 goes back to w.
struct Q8Acc {
    I32 even, odd;
};
inline Q8Acc q8_start(const std::int32_t*) { return {zero_i32(), zero_i32()}; }  // w itself: no offset to undo
inline Q8Acc q8_step(Q8Acc a, int v, Bytes stored, Bytes x) {
    I32& c = v % 2 ? a.odd : a.even;
    c = add(c, I32{detail::dot4_signed(detail::signed_q8(stored.lo), x.lo), detail::dot4_signed(detail::signed_q8(stored.hi), x.hi)});
    return a;
}
inline I32 q8_finish(Q8Acc a, const std::int32_t*) { return add(a.even, a.odd); }

// Q4_0: int16 sums of nibble · x, low and high nibbles apart; at most 4 steps per half (see the top).
struct Q4Acc {
    __m256i low[2], high[2];
};
inline Q4Acc q4_start(const std::int32_t*) {
    const __m256i z = _mm256_setzero_si256();
    return {{z, z}, {z, z}};
}
inline Q4Acc q4_step(Q4Acc a, Bytes nibbles, Bytes x_low, Bytes x_high) {
    const __m256i mask = _mm256_set1_epi8(0x0f);
    const __m256i n[2] = {nibbles.lo, nibbles.hi}, xl[2] = {x_low.lo, x_low.hi}, xh[2] = {x_high.lo, x_high.hi};
    for (int p = 0; p < 2; ++p) {
        a.low[p] = _mm256_add_epi16(a.low[p], _mm256_maddubs_epi16(_mm256_and_si256(n[p], mask), xl[p]));
        a.high[p] = _mm256_add_epi16(a.high[p], _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(n[p], 4), mask), xh[p]));
    }
    return a;
}
inline I32 q4_finish(Q4Acc a, const std::int32_t* c) {
    const __m256i ones = _mm256_set1_epi16(1);
    const I32 start = load_i32(c);  // −8 · Σ x
    return {_mm256_add_epi32(_mm256_madd_epi16(_mm256_add_epi16(a.low[0], a.high[0]), ones), start.lo),
            _mm256_add_epi32(_mm256_madd_epi16(_mm256_add_epi16(a.low[1], a.high[1]), ones), start.hi)};
}

// ---- Activations ---------------------------------------------------------------------------------
// max |x| over 32 floats.
inline float abs_max32(const float* x) {
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m = _mm256_and_ps(_mm256_loadu_ps(x), magnitude);
    for (int i = 8; i < 32; i += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + i), magnitude));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}
// 16 bytes round(x[k] · inv), k < 16, rounded to nearest even as std::nearbyint in the default mode
// (|x · inv| ≤ 127, so the packs never saturate).
inline Bytes16 quantize16(const float* x, float inv) {
    const __m256 s = _mm256_set1_ps(inv);
    const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), s));
    const __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), s));
    const __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xd8);  // a then b, as int16
    return _mm_packs_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
}
inline void store16(void* p, Bytes16 v) { _mm_storeu_si128(static_cast<__m128i*>(p), v); }
// Lane j = the 4 bytes at p + 32·j (j < 16): the same 4 elements of 16 consecutive 32-byte blocks.
inline Bytes gather_blocks4(const void* p) {
    const __m256i offsets = _mm256_setr_epi32(0, 32, 64, 96, 128, 160, 192, 224);
    const auto* base = static_cast<const int*>(p);
    return {_mm256_i32gather_epi32(base, offsets, 1), _mm256_i32gather_epi32(base + 64, offsets, 1)};
}
inline void store_bytes(void* p, Bytes v) {
    auto* out = static_cast<__m256i*>(p);
    _mm256_storeu_si256(out, v.lo);
    _mm256_storeu_si256(out + 1, v.hi);
}
// −k · Σ_{j<4} x[4·lane + j] for signed bytes x, k ≤ 128: maddubs's pairs k·(x₀ + x₁) stay within
// ±128 · 254 = ±32512 (|x| ≤ 127), so nothing saturates.
inline I32 minus_k_sum4(Bytes x, int k) {
    const __m256i kk = _mm256_set1_epi8(char(k)), ones = _mm256_set1_epi16(1), z = _mm256_setzero_si256();
    auto part = [&](__m256i v) { return _mm256_sub_epi32(z, _mm256_madd_epi16(_mm256_maddubs_epi16(kk, v), ones)); };
    return {part(x.lo), part(x.hi)};
}
inline void store_i32(std::int32_t* p, I32 v) { store_bytes(p, v); }

// A hint to bring bytes [p, p + n) in, a cache line at a time: into L2 (prefetcht1) or non-temporal
// (prefetchnta); simd/decode_prefetch.hpp says which the CPU gets.
template <bool NonTemporal>
inline void prefetch(const void* p, int n) {
    constexpr auto hint = NonTemporal ? _MM_HINT_NTA : _MM_HINT_T1;
    for (int o = 0; o < n; o += 64) _mm_prefetch(static_cast<const char*>(p) + o, hint);
}

// ---- Moving rows between the orders (simd/quant_interleaved.hpp) ------------------------------------
// One half of a group: its V vectors (V = 8: Q8_0, 4: Q4_0), vector v holding dword v of each of its 16
// blocks, against the 16 blocks' V dwords each, `stride` bytes apart (GGUF's blocks, from their first
// quant byte); every dword xor `flip` on the way (Q8_0's sign bits). A transpose of dwords, 8 blocks at a
// time, and its own inverse: `to_blocks` says which way. Why: the loader moves every quantized layer of a
// --no-mmap copy once, and the tiled prefill GEMM moves each tile's rows back once per chunk of tokens;
// 4 bytes at a time, that cost the GEMM 3–10 % (bench/quant_kernels.cpp matmul/…/interleaved rows).
namespace detail {
inline void transpose8x8(__m256i r[8]) {
    __m256i t[8], s[8];
    for (int i = 0; i < 8; i += 2) t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]), t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    for (int i = 0; i < 8; i += 4)
        for (int k = 0; k < 2; ++k)
            s[i + 2 * k] = _mm256_unpacklo_epi64(t[i + k], t[i + 2 + k]), s[i + 2 * k + 1] = _mm256_unpackhi_epi64(t[i + k], t[i + 2 + k]);
    // s[c] (c < 4): column c of rows 0–3 | column c + 4 of them; s[4 + c] the same of rows 4–7.
    for (int c = 0; c < 4; ++c)
        r[c] = _mm256_permute2x128_si256(s[c], s[4 + c], 0x20), r[c + 4] = _mm256_permute2x128_si256(s[c], s[4 + c], 0x31);
}
// Per 128-bit lane, rows 0–3 (4 dwords each) to columns: lane 0 of r[c] = column c of the lane-0 rows.
inline void transpose4x4_lanes(__m256i r[4]) {
    const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    r[0] = _mm256_unpacklo_epi64(t0, t2), r[1] = _mm256_unpackhi_epi64(t0, t2);
    r[2] = _mm256_unpacklo_epi64(t1, t3), r[3] = _mm256_unpackhi_epi64(t1, t3);
}
}  // namespace detail

// to_blocks: src is the half and dst the first block's first quant byte; else the other way round.
template <int V>
inline void move_half(std::byte* dst, const std::byte* src, int stride, std::uint32_t flip, bool to_blocks) {
    static_assert(V == 8 || V == 4, "Q8_0 or Q4_0");
    const __m256i x = _mm256_set1_epi32(int(flip));
    for (int p = 0; p < 2; ++p) {  // blocks 8p..8p+7: dwords 8p.. of each vector
        auto vec_in = [&](int v) { return reinterpret_cast<const __m256i*>(src + 64 * v + 32 * p); };
        auto vec_out = [&](int v) { return reinterpret_cast<__m256i*>(dst + 64 * v + 32 * p); };
        auto block_in = [&](int k) { return src + std::size_t(8 * p + k) * std::size_t(stride); };
        auto block_out = [&](int k) { return dst + std::size_t(8 * p + k) * std::size_t(stride); };
        __m256i r[V];
        if constexpr (V == 8) {
            for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_si256(to_blocks ? vec_in(k) : reinterpret_cast<const __m256i*>(block_in(k)));
            detail::transpose8x8(r);
            for (int k = 0; k < 8; ++k)
                _mm256_storeu_si256(to_blocks ? reinterpret_cast<__m256i*>(block_out(k)) : vec_out(k), _mm256_xor_si256(r[k], x));
        } else {
            // Lane 0 holds blocks 8p..8p+3, lane 1 blocks 8p+4..8p+7: blocks k and k + 4 share a register.
            for (int k = 0; k < 4; ++k)
                r[k] = to_blocks ? _mm256_loadu_si256(vec_in(k))
                                 : _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(block_in(4 + k)),
                                                       reinterpret_cast<const __m128i*>(block_in(k)));
            detail::transpose4x4_lanes(r);
            for (int k = 0; k < 4; ++k) {
                const __m256i o = _mm256_xor_si256(r[k], x);
                if (to_blocks)
                    _mm256_storeu2_m128i(reinterpret_cast<__m128i*>(block_out(4 + k)), reinterpret_cast<__m128i*>(block_out(k)), o);
                else _mm256_storeu_si256(vec_out(k), o);
            }
        }
    }
}

// ---- fp32 --------------------------------------------------------------------------------------
inline F32 zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline F32 load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline F32 mul(F32 a, F32 b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
inline F32 add(F32 a, F32 b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
inline F32 to_float(I32 v) { return {_mm256_cvtepi32_ps(v.lo), _mm256_cvtepi32_ps(v.hi)}; }
inline F32 fma(F32 a, F32 b, F32 c) { return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)}; }  // a·b + c
inline float sum(F32 v) {
    const __m256 s = _mm256_add_ps(v.lo, v.hi);
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    const __m128 t = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

}  // namespace elastilm::simd::qavx2
