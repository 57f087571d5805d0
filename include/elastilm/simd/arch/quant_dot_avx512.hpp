// The AVX-512 operations the decode matvec on Q8_0 / Q4_0 blocks (simd/quant_matvec_vnni.hpp) is
// written in, one name each. A vector holds 64 bytes: several weight blocks side by side, and their
// integer dot products as 16 int32 lanes (4 bytes each). Needs AVX-512 VNNI (vpdpbusd) and AVX512BW/F;
// only included when the compiler targets both.
#pragma once

#include <cstdint>
#include <cstring>

#include <immintrin.h>

namespace elastilm::simd::qvnni {

inline constexpr const char* kName = "avx512vnni zmm (blocks side by side, unsigned weights × signed activations)";

using Bytes = __m512i;  // 64 bytes
using I32 = __m512i;    // 16 int32 lanes
using F32 = __m512;     // 16 fp32 lanes
using Bytes16 = __m128i;  // one block's 16 elements

// ---- Weights -------------------------------------------------------------------------------------
// Two Q8_0 blocks' 32 quants (a, b): a in bytes 0..31, b in 32..63. The blocks sit 34 bytes apart,
// so this is a 256-bit load and a 256-bit insert, not one 512-bit load.
inline Bytes load_2x32(const void* a, const void* b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(static_cast<const __m256i*>(a))),
                              _mm256_loadu_si256(static_cast<const __m256i*>(b)), 1);
}
// Four Q4_0 blocks' 16 nibble bytes (p0..p3), block j in bytes 16j..16j+15.
inline Bytes load_4x16(const void* p0, const void* p1, const void* p2, const void* p3) {
    const __m256i lo = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(static_cast<const __m128i*>(p0))),
                                               _mm_loadu_si128(static_cast<const __m128i*>(p1)), 1);
    const __m256i hi = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(static_cast<const __m128i*>(p2))),
                                               _mm_loadu_si128(static_cast<const __m128i*>(p3)), 1);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
// A row's last, partial group: one Q8_0 block's 32 quants in bytes 0..31, zeros above; the first n
// (< 4) of four Q4_0 blocks' nibble bytes, zeros after. Nothing past the live blocks is read.
inline Bytes load_1x32(const void* a) { return _mm512_zextsi256_si512(_mm256_loadu_si256(static_cast<const __m256i*>(a))); }
inline Bytes load_first_x16(const void* const* p, int n) {
    alignas(64) std::uint8_t buf[64] = {};
    for (int j = 0; j < n; ++j) _mm_store_si128(reinterpret_cast<__m128i*>(buf + 16 * j), _mm_loadu_si128(static_cast<const __m128i*>(p[j])));
    return _mm512_load_si512(buf);
}
#if defined(__AVX512VBMI__)
// Four whole Q4_0 blocks (18 bytes each, 72 in all) from the first one's address: their nibble bytes by
// four 16-byte loads (block j in bytes 16j..16j+15, as load_4x16), and their fp16 scales, each repeated
// for the 4 int32 lanes that hold its block's dot products, by one 64-byte load and one byte permute
// (vpermb) — no gather. The nibbles do not come out of two overlapping 64-byte loads and a two-source
// permute as well, though that is fewer instructions and ran faster with the blocks in cache: each such
// load straddles two cache lines, and streaming from memory that build read far less (see
// qvnni_matvec::dot_row_quads).
struct Quad {
    Bytes nibbles;
    F32 scales;  // lane l: block l / 4's d
};
namespace detail {
struct QuadScaleIndex {
    alignas(64) std::uint8_t bytes[64];
    // Byte 2l + i of the result (l < 16 words, i < 2): byte i of block l / 4's d, 18 · (l / 4) + i.
    constexpr QuadScaleIndex() : bytes{} {
        for (int b = 0; b < 32; ++b) bytes[b] = std::uint8_t(18 * (b / 8) + b % 2);
    }
};
inline constexpr QuadScaleIndex kQuadScaleIndex{};
}  // namespace detail
inline Quad load_quad_q4(const void* first) {
    const char* p = static_cast<const char*>(first);
    const __m512i head = _mm512_loadu_si512(p);  // bytes 0..63: all four scales (at 0, 18, 36, 54)
    const __m512i words = _mm512_permutexvar_epi8(_mm512_load_si512(detail::kQuadScaleIndex.bytes), head);
    return {load_4x16(p + 2, p + 20, p + 38, p + 56), _mm512_cvtph_ps(_mm512_castsi512_si256(words))};
}
#endif
// The first n (≤ 64) of 64 bytes at p, zeros after: a masked load, which reads (and may fault on) only
// those n. An interleaved row's shorter last group packs its vectors to 4 bytes per block.
inline Bytes load_first_bytes(const void* p, int n) {
    const __mmask64 live = n >= 64 ? ~__mmask64(0) : (__mmask64(1) << n) - 1;
    return _mm512_maskz_loadu_epi8(live, p);
}
// The 16 fp16 scales at p (an interleaved half's), as fp32; the first n only (the rest 0, not read).
inline F32 scales_at(const void* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(static_cast<const __m256i*>(p))); }
inline F32 scales_first(const void* p, int n) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(__mmask16((1u << n) - 1), p)); }
// w + 128 as unsigned bytes: flipping the sign bit of a two's-complement byte adds 128 (mod 256).
inline Bytes plus_128(Bytes w) { return _mm512_xor_si512(w, _mm512_set1_epi8(char(0x80))); }
// Q4_0's nibbles as bytes 0..15: the low halves (elements 0..15 of each block), the high halves (16..31).
inline Bytes low_nibbles(Bytes v) { return _mm512_and_si512(v, _mm512_set1_epi8(0x0f)); }
inline Bytes high_nibbles(Bytes v) { return _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0f)); }
// The high nibbles left in place: 16 × each, one instruction instead of two; a dot product of them is
// 16 × the one of the nibbles, which sixteenths() undoes exactly (it is a multiple of 16).
inline Bytes high_nibbles_times16(Bytes v) { return _mm512_and_si512(v, _mm512_set1_epi8(char(0xf0))); }
inline __m512i sixteenths(__m512i v) { return _mm512_srai_epi32(v, 4); }
inline __m512i zero_i32() { return _mm512_setzero_si512(); }

// acc[lane] += Σ_{j<4} u[4·lane + j] · s[4·lane + j], u unsigned and s signed bytes: vpdpbusd.
inline I32 dot(I32 acc, Bytes u, Bytes s) { return _mm512_dpbusd_epi32(acc, u, s); }

// The fp16 scales of the first n (≤ 16) of 16 blocks whose first bytes are `stride` bytes apart from
// `first`, as fp32; lanes ≥ n are 0 and read nothing. One gather instead of 16 scalar loads.
inline F32 scales16(const void* first, int stride, int n) {
    // From a general register every time (kmovw), not kxnorw: a gather clears its mask register when it
    // completes, so a mask made from the old one could wait for the previous gather (a precaution; in
    // cache it measured no faster or slower).
    unsigned bits = n >= 16 ? 0xffffu : (1u << n) - 1;
    __asm__("" : "+r"(bits));  // keeps the compiler from folding the constant into kxnorw
    const __mmask16 live = _cvtu32_mask16(bits);
    const __m512i offsets = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(stride));
    const __m512i words = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, offsets, first, 1);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(words));  // each lane's low 16 bits: the block's d
}
// The fp16 scales of the first n (< 4) of four blocks `stride` bytes apart from `first`, each in its
// block's 4 lanes; the other lanes 0. Nothing past the n blocks is read.
inline F32 quad_scales_first(const void* first, int stride, int n) {
    alignas(32) std::uint16_t words[16] = {};
    for (int l = 0; l < 4 * n; ++l) std::memcpy(&words[l], static_cast<const char*>(first) + stride * (l / 4), 2);
    return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(words)));
}
// Lane l of the result is s[index[l]]: one block's scale copied to the lanes holding its dot product.
inline F32 spread(F32 s, I32 index) { return _mm512_permutexvar_ps(index, s); }
// The index for spread: lane l ↦ block first + l / 2^shift (2^shift lanes per block).
inline I32 block_of_lane(int first, int shift) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_add_epi32(_mm512_set1_epi32(first), _mm512_srli_epi32(lane, unsigned(shift)));
}

// ---- Activations ---------------------------------------------------------------------------------
// max |x| over 32 floats.
inline float abs_max32(const float* x) {
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x)), _mm512_abs_ps(_mm512_loadu_ps(x + 16))));
}
// 16 bytes round(x[k] · inv), k < 16, rounded to nearest even as std::nearbyint in the default mode.
inline Bytes16 zero16() { return _mm_setzero_si128(); }
inline Bytes16 quantize16(const float* x, float inv) {
    return _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x), _mm512_set1_ps(inv))));
}
inline void store16(void* p, Bytes16 v) { _mm_storeu_si128(static_cast<__m128i*>(p), v); }
inline Bytes load_bytes(const void* p) { return _mm512_loadu_si512(p); }
// Lane j = the 4 bytes at p + 32·j (j < 16): the same 4 elements of 16 consecutive 32-byte blocks, one
// gather (from L1: the activations just quantized).
inline Bytes gather_blocks4(const void* p) {
    const __m512i offsets =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(32));
    return _mm512_i32gather_epi32(offsets, p, 1);
}
inline void store_bytes(void* p, Bytes v) { _mm512_storeu_si512(p, v); }
// −k · Σ_{j<4} x[4·lane + j] for signed bytes x: the lane's share of the correction for weights +k.
inline I32 minus_k_sum4(Bytes x, int k) {
    return _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(char(k)), x));
}
inline I32 add(I32 a, I32 b) { return _mm512_add_epi32(a, b); }
inline void store_i32(std::int32_t* p, I32 v) { _mm512_storeu_si512(p, v); }
inline I32 load_i32(const std::int32_t* p) { return _mm512_loadu_si512(p); }

// The interleaved kernel's chains (simd/quant_matvec_interleaved.hpp), one vpdpbusd per vector; c is
// each lane's start value, −128 · Σ x (Q8_0, stored w + 128) or −8 · Σ x (Q4_0's nibbles w + 8).
// Q8_0: two chains, the even and the odd vectors, so that each vpdpbusd's latency hides behind another.
struct Q8Acc {
    I32 even, odd;
};
inline Q8Acc q8_start(const std::int32_t* c) { return {load_i32(c), zero_i32()}; }
inline Q8Acc q8_step(Q8Acc a, int v, Bytes stored, Bytes x) {
    I32& chain = v % 2 ? a.odd : a.even;
    chain = dot(chain, stored, x);
    return a;
}
inline I32 q8_finish(Q8Acc a, const std::int32_t*) { return add(a.even, a.odd); }
// Q4_0: the low nibbles' chain, and the high nibbles' in place (16 × each), divided by 16 at the end.
struct Q4Acc {
    I32 low, high16;
};
inline Q4Acc q4_start(const std::int32_t* c) { return {load_i32(c), zero_i32()}; }
inline Q4Acc q4_step(Q4Acc a, Bytes nibbles, Bytes x_low, Bytes x_high) {
    return {dot(a.low, low_nibbles(nibbles), x_low), dot(a.high16, high_nibbles_times16(nibbles), x_high)};
}
inline I32 q4_finish(Q4Acc a, const std::int32_t*) { return add(a.low, sixteenths(a.high16)); }

// A hint to bring bytes [p, p + n) in, a cache line at a time: into L2 (prefetcht1) or non-temporal
// (prefetchnta); simd/decode_prefetch.hpp says which the CPU gets.
template <bool NonTemporal>
inline void prefetch(const void* p, int n) {
    constexpr auto hint = NonTemporal ? _MM_HINT_NTA : _MM_HINT_T1;
    for (int o = 0; o < n; o += 64) _mm_prefetch(static_cast<const char*>(p) + o, hint);
}

// ---- fp32 --------------------------------------------------------------------------------------
inline F32 zero() { return _mm512_setzero_ps(); }
inline F32 load(const float* p) { return _mm512_loadu_ps(p); }
inline F32 mul(F32 a, F32 b) { return _mm512_mul_ps(a, b); }
inline F32 add(F32 a, F32 b) { return _mm512_add_ps(a, b); }
inline F32 to_float(I32 v) { return _mm512_cvtepi32_ps(v); }
inline F32 fma(F32 a, F32 b, F32 c) { return _mm512_fmadd_ps(a, b, c); }  // a·b + c
inline float sum(F32 v) { return _mm512_reduce_add_ps(v); }

}  // namespace elastilm::simd::qvnni
