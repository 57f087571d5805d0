// The decode dot product of one interleaved Q8_0 / Q4_0 row (simd/quant_interleaved.hpp) with the
// activations, on x86: 16 blocks per half, block j in int32 lane j.
//
//   y = Σ_b d_w[b] · d_x[b] · Σ_k w[b][k] · x[b][k]
//
// Vector v of a half holds elements 4v..4v+3 of its 16 blocks (Q4_0: and 16+4v.. in the high nibbles),
// so the activations are laid out the same way once per matvec, and each step adds 4 more terms of
// every block's dot product to its lane: after V of them (8 for Q8_0, 2 × 4 for Q4_0) lane j holds block
// j's whole integer dot product. Then one conversion and one fma with the 16 scale products d_w·d_x.
// The steps are the architecture's (qa::q8_step / q4_step, with their start and finish):
//   AVX-512 VNNI (simd/arch/quant_dot_avx512.hpp): one vpdpbusd per 64-byte vector. As in
//     simd/quant_matvec_vnni.hpp the weights are the unsigned operand, shifted by a constant whose effect
//     is each lane's start value: Q8_0 is stored + 128, so c = −128 · Σ x; Q4_0's nibbles are w + 8, so
//     c = −8 · Σ x. Q4_0's high nibbles are used in place (16 × the value, one AND instead of a shift and
//     an AND) in a second accumulator divided by 16 at the end — exact, since it is a multiple of 16.
//   AVX2 (simd/arch/quant_interleaved_avx2.hpp, x86-64-v3): two 256-bit halves of each vector,
//     maddubs + madd; that header says how each format keeps maddubs from saturating.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "elastilm/simd/decode_prefetch.hpp"
#include "elastilm/simd/quant_blocks.hpp"
#include "elastilm/simd/quant_interleaved.hpp"

// Compiled exactly where the loader interleaves (interleaved::kInterleavedDecode): both test the
// conditions simd/quant_interleaved.hpp names.
#if ELASTILM_INTERLEAVED_VNNI
#include "elastilm/simd/arch/quant_dot_avx512.hpp"
#endif
#define ELASTILM_QMATVEC_INTERLEAVED (ELASTILM_INTERLEAVED_VNNI || ELASTILM_INTERLEAVED_AVX2)

#if ELASTILM_QMATVEC_INTERLEAVED
namespace elastilm::interleaved_matvec {

#if ELASTILM_INTERLEAVED_VNNI
namespace qa = simd::qvnni;
#else
namespace qa = simd::qavx2;
#endif
inline constexpr const char* kName = qa::kName;
using interleaved::kGroupBlocks;
using interleaved::kHalfBlocks;

template <class Block>
inline constexpr DType kType = std::is_same_v<Block, BlockQ8_0> ? DType::q8_0 : DType::q4_0;
template <class Block>
inline constexpr int kVectors = interleaved::vectors(kType<Block>);  // per half: 8 (Q8_0), 4 (Q4_0)

// 16 blocks of activations as the kernel reads one half: x[v] lane j = block j's elements 4v..4v+3
// (Q4_0: lo for elements 4v.., hi for 16+4v..), each lane's start value and the blocks' scales.
struct alignas(64) ActHalfQ8 {
    std::int8_t x[8][64];
    std::int32_t c[kHalfBlocks];  // −128 · Σ_k x[b][k]
    float d[kHalfBlocks];
};
struct alignas(64) ActHalfQ4 {
    std::int8_t lo[4][64];
    std::int8_t hi[4][64];
    std::int32_t c[kHalfBlocks];  // −8 · Σ_k x[b][k]
    float d[kHalfBlocks];
};
template <class Block>
using ActHalf = std::conditional_t<std::is_same_v<Block, BlockQ8_0>, ActHalfQ8, ActHalfQ4>;

// x[0..n) (n a multiple of 32) into ceil(n / 512) halves, the bytes and scales of quantize_activations
// (simd/quant_dot.hpp); blocks past n/32 are zeros, so a partial half's padding adds nothing. Each half's
// blocks are quantized in block order, then each vector is one gather of 4 bytes per block.
template <class Block>
void quantize_activations(std::vector<ActHalf<Block>>& out, const float* x, int n) {
    constexpr bool q8 = std::is_same_v<Block, BlockQ8_0>;
    const int blocks = n / kQuantBlock;
    out.resize(std::size_t((blocks + kHalfBlocks - 1) / kHalfBlocks));
    for (std::size_t h = 0; h < out.size(); ++h) {
        ActHalf<Block>& a = out[h];
        alignas(64) std::int8_t q[kHalfBlocks][kQuantBlock] = {};
        for (int j = 0; j < kHalfBlocks; ++j) {
            const int b = int(h) * kHalfBlocks + j;
            a.d[j] = 0;
            if (b >= blocks) continue;
            const float* xb = x + std::size_t(b) * kQuantBlock;
            const float d = qa::abs_max32(xb) / 127.0f, inv = d > 0 ? 1.0f / d : 0.0f;
            qa::store16(q[j], qa::quantize16(xb, inv));
            qa::store16(q[j] + 16, qa::quantize16(xb + 16, inv));
            a.d[j] = d;
        }
        qa::I32 c = qa::zero_i32();  // −k · Σ of each block's 32 bytes, k = 128 (Q8_0) or 8 (Q4_0)
        for (int v = 0; v < 8; ++v) {
            const qa::Bytes elements = qa::gather_blocks4(q[0] + 4 * v);  // elements 4v..4v+3 of each block
            c = qa::add(c, qa::minus_k_sum4(elements, q8 ? 128 : 8));
            if constexpr (q8) qa::store_bytes(a.x[v], elements);
            else qa::store_bytes(v < 4 ? a.lo[v] : a.hi[v - 4], elements);
        }
        qa::store_i32(a.c, c);
    }
}

// The 16 lane dot products of each half of a whole group whose first vector is q (all 32 blocks live
// and stored: full 64-byte loads). Both halves at once, in four dependency chains (two per half: the
// even and odd vectors for Q8_0, the low and high nibbles for Q4_0), so that each vpdpbusd's latency
// hides behind three others. Why: with its rows in L1 or L2, one Emerald Rapids core ran the kernel
// at 41-48 GB/s (Q4_0) and 76-88 GB/s (Q8_0) one half at a time in two chains, and at 51-61 and 90-98
// GB/s both halves at once (an experiment outside the repo). Streaming from memory, the faster kernel
// leaves the loads less to wait behind: decode read 1-2 points more of the read loop (README,
// "Quantized weights", session 34).
struct GroupDots {
    qa::I32 half[2];
};
template <class Block>
inline GroupDots group_dots(const std::byte* q, const ActHalf<Block>* a) {
    constexpr int V = kVectors<Block>;
    const std::byte* q1 = q + V * 64;  // the second half's vectors
    auto load = [](const std::byte* p, int v) { return qa::load_bytes(p + 64 * v); };
    if constexpr (std::is_same_v<Block, BlockQ8_0>) {
        qa::Q8Acc h0 = qa::q8_start(a[0].c), h1 = qa::q8_start(a[1].c);
#pragma GCC unroll 8
        for (int v = 0; v < 8; ++v) {
            h0 = qa::q8_step(h0, v, load(q, v), qa::load_bytes(a[0].x[v]));
            h1 = qa::q8_step(h1, v, load(q1, v), qa::load_bytes(a[1].x[v]));
        }
        return {{qa::q8_finish(h0, a[0].c), qa::q8_finish(h1, a[1].c)}};
    } else {
        qa::Q4Acc h0 = qa::q4_start(a[0].c), h1 = qa::q4_start(a[1].c);
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) {
            h0 = qa::q4_step(h0, load(q, v), qa::load_bytes(a[0].lo[v]), qa::load_bytes(a[0].hi[v]));
            h1 = qa::q4_step(h1, load(q1, v), qa::load_bytes(a[1].lo[v]), qa::load_bytes(a[1].hi[v]));
        }
        return {{qa::q4_finish(h0, a[0].c), qa::q4_finish(h1, a[1].c)}};
    }
}

// One half's 16 lane dot products when it is not a whole group's (a row's last, shorter group, or the
// last group of a ratio's slice): its first vector q, vectors `stride` bytes apart, of which only the
// first `live` blocks' bytes are read (masked loads); lanes past them are zero.
template <class Block>
inline qa::I32 partial_half_dots(const std::byte* q, int stride, int live, const ActHalf<Block>& a) {
    auto load = [&](int v) { return qa::load_first_bytes(q + std::size_t(v) * stride, 4 * live); };
    if constexpr (std::is_same_v<Block, BlockQ8_0>) {
        qa::Q8Acc h = qa::q8_start(a.c);
#pragma GCC unroll 8
        for (int v = 0; v < 8; ++v) h = qa::q8_step(h, v, load(v), qa::load_bytes(a.x[v]));
        return qa::q8_finish(h, a.c);
    } else {
        qa::Q4Acc h = qa::q4_start(a.c);
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) h = qa::q4_step(h, load(v), qa::load_bytes(a.lo[v]), qa::load_bytes(a.hi[v]));
        return qa::q4_finish(h, a.c);
    }
}

// Σ over a row's first `blocks` blocks (of `row_blocks` stored: the last group's size depends on it);
// meanwhile the same bytes of a later row (`later`, unless nullptr) are prefetched with hint H, a group
// at a time, as simd/quant_matvec_vnni.hpp's dot_row does. Always inlined into the rows' loop: as a
// call, each row (2 groups of a 2048-input Q4_0 row, ~30 ns) also paid a prologue realigning the stack
// for its zmm locals, and stored its accumulators there.
template <class Block, PrefetchHint H = PrefetchHint::cached>
[[gnu::always_inline]] inline float dot_row(const Block* w, const ActHalf<Block>* a, int blocks, int row_blocks,
                                            const Block* later = nullptr) {
    constexpr int V = kVectors<Block>;
    constexpr std::size_t group_bytes = kGroupBlocks * sizeof(Block);
    const auto* row = reinterpret_cast<const std::byte*>(w);
    const auto* ahead = reinterpret_cast<const std::byte*>(later);
    // acc + Σ_j dots[j] · d_w[j] · d_x[j] over a half's 16 blocks.
    auto add = [](qa::F32 acc, qa::I32 dots, qa::F32 scales, const ActHalf<Block>& h) {
        return qa::fma(qa::to_float(dots), qa::mul(scales, qa::load(h.d)), acc);
    };
    qa::F32 acc0 = qa::zero(), acc1 = qa::zero();
    const int whole = blocks / kGroupBlocks;  // groups all of whose 32 blocks are live (hence stored)
    for (int g = 0; g < whole; ++g, row += group_bytes, a += 2) {
        if (ahead) qa::prefetch<H == PrefetchHint::non_temporal>(ahead + g * group_bytes, int(group_bytes));
        const GroupDots dots = group_dots<Block>(row, a);
        acc0 = add(acc0, dots.half[0], qa::scales_at(row + 2 * V * 64), a[0]);
        acc1 = add(acc1, dots.half[1], qa::scales_at(row + 2 * V * 64 + 32), a[1]);
    }
    if (blocks % kGroupBlocks == 0) return qa::sum(qa::add(acc0, acc1));
    // The last group: stored shorter (the row's end) or only partly live (a ratio's slice), or both. Only
    // its live halves are read and prefetched; a half's vectors are whole cache lines when the half is
    // stored whole, so a slice ending inside one reads up to 15 blocks more per row than it uses.
    const auto* start = reinterpret_cast<const std::byte*>(w);  // half_of counts from the row's start
    for (int h = 0; h < 2; ++h) {
        const int live = std::min(kHalfBlocks, blocks - whole * kGroupBlocks - h * kHalfBlocks);
        if (live <= 0) break;
        const interleaved::Half half = interleaved::half_of(kType<Block>, row_blocks, whole, h);
        if (ahead) {
            qa::prefetch<H == PrefetchHint::non_temporal>(ahead + half.quants, (V - 1) * half.stride + 4 * live);
            qa::prefetch<H == PrefetchHint::non_temporal>(ahead + half.scales, 2 * live);
        }
        acc0 = add(acc0, partial_half_dots<Block>(start + half.quants, half.stride, live, a[h]),
                   qa::scales_first(start + half.scales, live), a[h]);
    }
    return qa::sum(qa::add(acc0, acc1));
}

}  // namespace elastilm::interleaved_matvec
#endif
