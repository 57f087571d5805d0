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
        }
    }
}

// The lane dot products of pair p (Q8_0) or quad q (Q4_0) of a group whose first block is w, with its
// first n blocks live (n ≥ 1; n ≥ 2 resp. 4 read both / all four, fewer read only the live ones).
inline qa::I32 piece_dots(const BlockQ8_0* w, const ActGroupQ8& a, int p, int n) {
    const qa::Bytes wb = n >= 2 ? qa::load_2x32(w[2 * p].q, w[2 * p + 1].q) : qa::load_1x32(w[2 * p].q);
    return qa::dot(qa::load_i32(a.c[p]), qa::plus_128(wb), qa::load_bytes(a.x[p]));
}
inline qa::I32 piece_dots(const BlockQ4_0* w, const ActGroupQ4& a, int q, int n) {
    qa::Bytes wb;
    if (n >= 4) {
        wb = qa::load_4x16(w[4 * q].qs, w[4 * q + 1].qs, w[4 * q + 2].qs, w[4 * q + 3].qs);
    } else {
        const void* p[3] = {w[4 * q].qs, n > 1 ? w[4 * q + 1].qs : nullptr, n > 2 ? w[4 * q + 2].qs : nullptr};
        wb = qa::load_first_x16(p, n);
    }
    return qa::dot(qa::dot(qa::load_i32(a.c[q]), qa::low_nibbles(wb), qa::load_bytes(a.lo[q])), qa::high_nibbles(wb),
                   qa::load_bytes(a.hi[q]));
}

// Σ_b d_w[b] · d_x[b] · Σ_k w[b][k] · x[b][k] over a row's first `blocks` blocks; meanwhile the same
// blocks of a later row (`later`, unless nullptr) are prefetched into L2, a group at a time. Why: in
// an experiment on Sapphire Rapids (bench/quant_kernels.cpp's decode_pass with only the prefetch
// varied: TinyLlama's 22 layers, 2 threads, 4 KB pages) this kernel streamed ~17 GB/s with the whole
// row prefetched into L1 at its start (the one-block kernel's way), ~19 GB/s a group at a time into
// L1, 22–23 GB/s a group at a time into L2 (on huge pages ~26, ~27, ~28 GB/s).
template <class Block>
float dot_row(const Block* w, const ActGroup<Block>* a, int blocks, const Block* later = nullptr) {
    constexpr int per = std::is_same_v<Block, BlockQ8_0> ? 2 : 4;  // blocks per vector
    constexpr int shift = per == 2 ? 3 : 2;                        // log2 of the lanes per block
    qa::F32 acc0 = qa::zero(), acc1 = qa::zero();                  // two chains hide the FMA latency
    // A gather has a long latency (~25 cycles by llvm-mca's model), so each group's scales are gathered
    // one group ahead.
    qa::F32 d_next = qa::scales16(&w->d, int(sizeof(Block)), std::min(kGroup, blocks));
    for (int g0 = 0; g0 < blocks; g0 += kGroup, w += kGroup, ++a) {
        const int n = std::min(kGroup, blocks - g0);
        if (later) qa::prefetch_l2(later + g0, n * int(sizeof(Block)));
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
