// The decode dot product of one Q8_0 / Q4_0 weight row with the activations, on x86 with AVX-512 VNNI:
// several blocks side by side in one 512-bit vector, the activations laid out once per matvec so that
// the weight bytes are used exactly as they sit in the GGUF blocks.
//
//   y = Σ_b d_w[b] · d_x[b] · Σ_k w[b][k] · x[b][k]
//
// vpdpbusd multiplies unsigned by signed bytes, 4 per int32 lane. The weights go on the unsigned side
// with a constant added, whose effect depends on the activations alone:
//   Q8_0: w + 128 ∈ [0, 255] (flip the sign bit): Σ (w + 128)·x = Σ w·x + 128·Σ x
//   Q4_0: the stored nibble w + 8 ∈ [0, 15] as it is: Σ (w + 8)·x = Σ w·x + 8·Σ x
// so each lane's accumulator starts at −128·Σx (−8·Σx) over the activation bytes that lane multiplies,
// computed once per matvec while quantizing x. The integer dot product per lane is then exact — no
// sign trick (there is no 512-bit vpsignb), no float correction that could cancel.
//
// Layout per group of 16 blocks (G = one vector of 16 scales):
//   Q8_0: pair p of blocks (2p, 2p+1) fills one vector: 32 + 32 weight bytes (lanes 0..7: block 2p).
//         Activations: the pair's 64 bytes in block order, and the 16 lanes' start values.
//   Q4_0: quad q of blocks (4q..4q+3) fills one vector with their 4 × 16 nibble bytes (lanes 4j..4j+3:
//         block 4q+j). The low nibbles are elements 0..15 of each block, the high nibbles 16..31, so the
//         activations are stored as the 4 × 16 elements 0..15 then the 4 × 16 elements 16..31: two
//         vpdpbusd, one per nibble half, and no shuffle of the weights.
// Scales: the 16 fp16 weight scales (34 / 18 bytes apart in GGUF's layout) in one gather, converted,
// times the 16 activation scales: s[b]. Each vector of lane dot products is converted to fp32 and
// accumulated as acc += dot · s[block of lane] (a permute of s), and the row's lanes are summed once.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "elastilm/simd/arch/quant_dot_avx512.hpp"
#include "elastilm/simd/decode_prefetch.hpp"
#include "elastilm/simd/quant_blocks.hpp"

namespace elastilm::qvnni_matvec {

namespace qa = simd::qvnni;

inline constexpr int kGroup = 16;  // blocks per group: one vector of scales

// 16 blocks of activations as the Q8_0 kernel reads them.
struct alignas(64) ActGroupQ8 {
    std::int8_t x[kGroup / 2][64];      // pair p: block 2p's 32 bytes, then block 2p+1's
    std::int32_t c[kGroup / 2][16];     // pair p: each lane's start value, −128 · Σ of its 4 bytes of x
    float d[kGroup];                    // activation scales
};
// 16 blocks of activations as the Q4_0 kernel reads them.
struct alignas(64) ActGroupQ4 {
    std::int8_t lo[kGroup / 4][64];     // quad q: elements 0..15 of blocks 4q, 4q+1, 4q+2, 4q+3
    std::int8_t hi[kGroup / 4][64];     // quad q: elements 16..31 of the same blocks
    std::int32_t c[kGroup / 4][16];     // −8 · Σ of each lane's 4 bytes of lo and 4 bytes of hi
    float d[kGroup];
    float d_lanes[kGroup / 4][16];      // quad q: lane l holds block 4q + l / 4's scale (dot_row_quads)
};

template <class Block>
using ActGroup = std::conditional_t<std::is_same_v<Block, BlockQ8_0>, ActGroupQ8, ActGroupQ4>;

// One block of 32 activations: d = max|x| / 127, q = round(x / d) — the bytes and scale of
// quantize_activations (simd/quant_dot.hpp), which the tests check.
inline float quantize_block(qa::Bytes16& first16, qa::Bytes16& last16, const float* x) {
    const float d = qa::abs_max32(x) / 127.0f, inv = d > 0 ? 1.0f / d : 0.0f;
    first16 = qa::quantize16(x, inv);
    last16 = qa::quantize16(x + 16, inv);
    return d;
}

// x[0..n) (n a multiple of 32) into ceil(n / 512) groups; blocks past n/32 are zeros (scale 0 and start
// values 0, so a partial group's padding adds nothing).
template <class Block>
void quantize_activations(std::vector<ActGroup<Block>>& out, const float* x, int n) {
    const int blocks = n / kQuantBlock;
    out.resize(std::size_t((blocks + kGroup - 1) / kGroup));
    for (std::size_t g = 0; g < out.size(); ++g) {
        ActGroup<Block>& a = out[g];
        for (int j = 0; j < kGroup; ++j) {
            const int b = int(g) * kGroup + j;
            qa::Bytes16 first16 = qa::zero16(), last16 = qa::zero16();
            a.d[j] = b < blocks ? quantize_block(first16, last16, x + std::size_t(b) * kQuantBlock) : 0.0f;
            if constexpr (std::is_same_v<Block, BlockQ8_0>) {
                qa::store16(a.x[j / 2] + 32 * (j % 2), first16);
                qa::store16(a.x[j / 2] + 32 * (j % 2) + 16, last16);
            } else {
                qa::store16(a.lo[j / 4] + 16 * (j % 4), first16);
                qa::store16(a.hi[j / 4] + 16 * (j % 4), last16);
            }
        }
        if constexpr (std::is_same_v<Block, BlockQ8_0>) {
            for (int p = 0; p < kGroup / 2; ++p) qa::store_i32(a.c[p], qa::minus_k_sum4(qa::load_bytes(a.x[p]), 128));
        } else {
            for (int q = 0; q < kGroup / 4; ++q)
                qa::store_i32(a.c[q], qa::add(qa::minus_k_sum4(qa::load_bytes(a.lo[q]), 8), qa::minus_k_sum4(qa::load_bytes(a.hi[q]), 8)));
            for (int l = 0; l < kGroup * 4; ++l) a.d_lanes[l / 16][l % 16] = a.d[l / 4];
        }
    }
}

// The lane dot products of pair p (Q8_0) or quad q (Q4_0) of a group whose first block is w, with its
// first n blocks live (n ≥ 1; n ≥ 2 resp. 4 read both / all four, fewer read only the live ones).
inline qa::I32 piece_dots(const BlockQ8_0* w, const ActGroupQ8& a, int p, int n) {
    const qa::Bytes wb = n >= 2 ? qa::load_2x32(w[2 * p].q, w[2 * p + 1].q) : qa::load_1x32(w[2 * p].q);
    return qa::dot(qa::load_i32(a.c[p]), qa::plus_128(wb), qa::load_bytes(a.x[p]));
}
// Quad q's lane dot products, given its four blocks' nibble bytes (block j in bytes 16j..16j+15).
inline qa::I32 quad_dots(qa::Bytes nibbles, const ActGroupQ4& a, int q) {
    return qa::dot(qa::dot(qa::load_i32(a.c[q]), qa::low_nibbles(nibbles), qa::load_bytes(a.lo[q])), qa::high_nibbles(nibbles),
                   qa::load_bytes(a.hi[q]));
}
// The first n (< 4) of four Q4_0 blocks' nibble bytes, zeros after; nothing past them is read.
inline qa::Bytes first_nibbles(const BlockQ4_0* w, int n) {
    const void* p[3] = {w[0].qs, n > 1 ? w[1].qs : nullptr, n > 2 ? w[2].qs : nullptr};
    return qa::load_first_x16(p, n);
}
inline qa::I32 piece_dots(const BlockQ4_0* w, const ActGroupQ4& a, int q, int n) {
    const BlockQ4_0* b = w + 4 * q;
    return quad_dots(n >= 4 ? qa::load_4x16(b[0].qs, b[1].qs, b[2].qs, b[3].qs) : first_nibbles(b, n), a, q);
}

#if defined(__AVX512VBMI__)
// A Q4_0 row's dot product a quad (4 blocks, 72 bytes) at a time, where the CPU has byte permutes
// (AVX512-VBMI): each quad's scales come with its nibbles (qa::load_quad_q4), and its lanes are scaled by
// its own 4 weight scales times the activations' (ActGroupQ4::d_lanes) — no gather of a group's 16
// scales and no permute to spread them. Why: on a Zen 5 VM the gather and the spread were what held the
// zmm kernel below the memory's rate (in cache, 2 threads streamed less than the read loop when the
// memory was fast), and from memory this kernel streams closer to the read loop; figures in the README,
// "Quantized weights". A variant that also took the nibbles out of two overlapping 64-byte loads was
// faster in cache and much slower from memory (see qa::load_quad_q4), so the nibbles stay 16-byte loads.
template <PrefetchHint H>
inline float dot_row_quads(const BlockQ4_0* w, const ActGroupQ4* a, int blocks, const BlockQ4_0* later) {
    qa::F32 acc0 = qa::zero(), acc1 = qa::zero();  // two chains hide the FMA latency
    auto add_quad = [&](qa::F32& acc, qa::Bytes nibbles, qa::F32 scales, const ActGroupQ4& g, int q) {
        acc = qa::fma(qa::to_float(quad_dots(nibbles, g, q)), qa::mul(scales, qa::load(g.d_lanes[q])), acc);
    };
    for (int g0 = 0; g0 < blocks; g0 += kGroup, w += kGroup, ++a) {
        const int n = std::min(kGroup, blocks - g0), whole = n / 4;
        if (later) qa::prefetch<H == PrefetchHint::non_temporal>(later + g0, n * int(sizeof(BlockQ4_0)));
        int q = 0;
        for (; q + 1 < whole; q += 2) {
            const qa::Quad w0 = qa::load_quad_q4(w + 4 * q), w1 = qa::load_quad_q4(w + 4 * q + 4);
            add_quad(acc0, w0.nibbles, w0.scales, *a, q);
            add_quad(acc1, w1.nibbles, w1.scales, *a, q + 1);
        }
        if (q < whole) {
            const qa::Quad w0 = qa::load_quad_q4(w + 4 * q);
            add_quad(acc0, w0.nibbles, w0.scales, *a, q++);
        }
        if (const int rest = n - 4 * whole; rest > 0)  // a row's last 1–3 blocks
            add_quad(acc1, first_nibbles(w + 4 * q, rest), qa::quad_scales_first(&w[4 * q].d, int(sizeof(BlockQ4_0)), rest), *a, q);
    }
    return qa::sum(qa::add(acc0, acc1));
}
#endif

// Σ_b d_w[b] · d_x[b] · Σ_k w[b][k] · x[b][k] over a row's first `blocks` blocks; meanwhile the same
// blocks of a later row (`later`, unless nullptr) are prefetched with hint H, a group at a time. Why: in
// an experiment on Sapphire Rapids (bench/quant_kernels.cpp's decode_pass with only the prefetch
// varied: TinyLlama's 22 layers, 2 threads, 4 KB pages) this kernel streamed ~17 GB/s with the whole
// row prefetched into L1 at its start (the one-block kernel's way), ~19 GB/s a group at a time into
// L1, 22–23 GB/s a group at a time into L2 (on huge pages ~26, ~27, ~28 GB/s). Which hint: see
// simd/decode_prefetch.hpp.
template <class Block, PrefetchHint H = PrefetchHint::cached>
float dot_row(const Block* w, const ActGroup<Block>* a, int blocks, const Block* later = nullptr) {
#if defined(__AVX512VBMI__)
    if constexpr (std::is_same_v<Block, BlockQ4_0>) return dot_row_quads<H>(w, a, blocks, later);
#endif
    constexpr int per = std::is_same_v<Block, BlockQ8_0> ? 2 : 4;  // blocks per vector
    constexpr int shift = per == 2 ? 3 : 2;                        // log2 of the lanes per block
    qa::F32 acc0 = qa::zero(), acc1 = qa::zero();                  // two chains hide the FMA latency
    // A gather has a long latency (~25 cycles by llvm-mca's model), so each group's scales are gathered
    // one group ahead.
    qa::F32 d_next = qa::scales16(&w->d, int(sizeof(Block)), std::min(kGroup, blocks));
    for (int g0 = 0; g0 < blocks; g0 += kGroup, w += kGroup, ++a) {
        const int n = std::min(kGroup, blocks - g0);
        if (later) qa::prefetch<H == PrefetchHint::non_temporal>(later + g0, n * int(sizeof(Block)));
        const qa::F32 s = qa::mul(d_next, qa::load(a->d));
        if (g0 + kGroup < blocks) d_next = qa::scales16(&w[kGroup].d, int(sizeof(Block)), std::min(kGroup, blocks - g0 - kGroup));
        if (n == kGroup) {
#pragma GCC unroll 8
            for (int p = 0; p < kGroup / per; p += 2) {
                acc0 = qa::fma(qa::to_float(piece_dots(w, *a, p, per)), qa::spread(s, qa::block_of_lane(per * p, shift)), acc0);
                acc1 = qa::fma(qa::to_float(piece_dots(w, *a, p + 1, per)), qa::spread(s, qa::block_of_lane(per * (p + 1), shift)), acc1);
            }
        } else {
            for (int p = 0; per * p < n; ++p)
                acc0 = qa::fma(qa::to_float(piece_dots(w, *a, p, std::min(per, n - per * p))),
                               qa::spread(s, qa::block_of_lane(per * p, shift)), acc0);
        }
    }
    return qa::sum(qa::add(acc0, acc1));
}

}  // namespace elastilm::qvnni_matvec
