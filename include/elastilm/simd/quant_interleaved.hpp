// Q8_0 / Q4_0 rows with their blocks interleaved for the AVX-512 VNNI decode kernel: the same bytes as
// GGUF's blocks (simd/quant_blocks.hpp), placed so that one 64-byte load feeds one vpdpbusd with 16
// blocks at once, block j in int32 lane j.
//
// Why: in GGUF's layout the kernel (simd/quant_matvec_vnni.hpp) puts 2 (Q8_0) or 4 (Q4_0) blocks in a
// vector, so each 16 blocks cost 16 partial loads and inserts, a gather or permute of 16 scales, a spread
// of them over the lanes and 4–8 conversions to fp32. On Intel cores that work, not the memory, held
// decode below the read loop (README, "Quantized weights": ~78 % for Q4_0 and ~82 % for Q8_0 on Emerald
// Rapids). With block j in lane j the lane's int32 is the block's whole dot product: full aligned loads,
// one vpdpbusd per 4 elements of 16 blocks, one conversion and one scale multiply per 16 blocks.
//
// The layout, per row of B blocks (a row keeps its size and its place; only the bytes inside move):
//   groups of 32 blocks: group g holds blocks [32g, 32g + T), T = min(32, B − 32g), and starts where
//   GGUF's block 32g does (byte 32g · S, S = 34 / 18). A group is two halves of n₀ = min(16, T) and
//   n₁ = T − n₀ blocks, then the T fp16 scales in block order:
//     [half 0: V vectors of 4·n₀ bytes][half 1: V vectors of 4·n₁ bytes][d of its T blocks]
//   Vector v of a half holds, for its block j, 4 bytes at 4j:
//     Q8_0 (V = 8): q[4v .. 4v+3] + 128 (the sign bit flipped, as vpdpbusd's unsigned operand wants)
//     Q4_0 (V = 4): qs[4v .. 4v+3], i.e. elements 4v..4v+3 in the low nibbles, 16+4v..16+4v+3 in the high
//   V · 4 · T + 2T = T · S bytes: the group is exactly as long as its blocks were. A whole group is
//   2 · V vectors of 64 bytes then 64 bytes of scales; the last, shorter group of a row (B not a
//   multiple of 32) packs its vectors to 4·n bytes, which the kernel reads with masked loads.
// A width ratio's slice is a prefix of each row's blocks: it reads the first groups, the last of them
// with only its first blocks' lanes live.
//
// This header is portable: it defines the layout and converts rows to and from it. Only the loader
// interleaves (formats/load.hpp), and only a --no-mmap copy where the decode kernel reads this layout
// (kInterleavedDecode below); every other reader of quantized rows finds the bytes with spot(),
// gguf_row() or gguf_prefix() below (the packed and the tiled prefill GEMMs, gguf_export).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "elastilm/error.hpp"
#include "elastilm/simd/quant_blocks.hpp"
#include "elastilm/tensor.hpp"

// The two x86 instruction sets the interleaved decode kernel is written for, tested here once for every
// header that branches on them: AVX-512 VNNI with BW (vpdpbusd on zmm), and x86-64-v3's AVX2, FMA and
// F16C (maddubs + madd).
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define ELASTILM_INTERLEAVED_VNNI 1
#else
#define ELASTILM_INTERLEAVED_VNNI 0
#endif
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define ELASTILM_INTERLEAVED_AVX2 1
#include "elastilm/simd/arch/quant_interleaved_avx2.hpp"  // move_half: a half's dwords transposed 8 blocks at a time
#else
#define ELASTILM_INTERLEAVED_AVX2 0
#endif

namespace elastilm::interleaved {

// Whether this build's decode kernel reads interleaved rows: on x86 with AVX-512 VNNI and BW, or with
// AVX2, FMA and F16C (x86-64-v3), where simd/quant_matvec_interleaved.hpp is compiled. Why: there the
// interleaved kernel streams closer to the read loop than the GGUF-order ones (README, "Quantized
// weights": sessions 33 and 36); the NEON kernel reads GGUF's order.
inline constexpr bool kInterleavedDecode = ELASTILM_INTERLEAVED_VNNI || ELASTILM_INTERLEAVED_AVX2;

// Whether the loader interleaves where kInterleavedDecode allows it: yes by default; bench/model_speed's
// --block-order gguf turns it off, to time GGUF's order with the same build.
inline std::atomic<bool>& interleave_on_load_setting() {
    static std::atomic<bool> on{true};
    return on;
}

inline constexpr int kGroupBlocks = 32;  // blocks per group: two halves
inline constexpr int kHalfBlocks = 16;  // blocks per half: one int32 lane each

// Quant bytes per block (S − 2) and 4-byte vectors per half.
constexpr int quant_bytes(DType t) { return t == DType::q8_0 ? 32 : 16; }
constexpr int vectors(DType t) { return quant_bytes(t) / 4; }

// Where half h of group g of a row of `row_blocks` blocks lies, in bytes from the row's start.
struct Half {
    std::size_t quants;  // its first vector
    int stride;  // bytes from one vector to the next: 4 · its stored blocks (64 when whole)
    int stored;  // blocks this half holds (0..16)
    std::size_t scales;  // its first block's fp16 scale
};
inline Half half_of(DType t, int row_blocks, int g, int h) {
    const int T = std::min(kGroupBlocks, row_blocks - kGroupBlocks * g), n0 = std::min(kHalfBlocks, T), n = h == 0 ? n0 : T - n0;
    const std::size_t start = std::size_t(kGroupBlocks) * std::size_t(g) * block_bytes(t);
    return Half{start + (h == 0 ? 0 : std::size_t(vectors(t)) * 4 * std::size_t(n0)), 4 * n, n,
                start + std::size_t(vectors(t)) * 4 * std::size_t(T) + 2 * std::size_t(h * kHalfBlocks)};
}

// Where block b's quant bytes 4v..4v+3 (Q8_0: stored + 128) and its scale are in an interleaved row.
struct Spot {
    std::size_t quad;
    std::size_t scale;
};
inline Spot spot(DType t, int row_blocks, int b, int v) {
    const int g = b / kGroupBlocks, h = b % kGroupBlocks / kHalfBlocks, j = b % kHalfBlocks;
    const Half half = half_of(t, row_blocks, g, h);
    return Spot{half.quants + std::size_t(v) * std::size_t(half.stride) + 4 * std::size_t(j), half.scales + 2 * std::size_t(j)};
}

namespace detail {
// Each of the first `blocks` blocks of a row of `row_blocks`, from group `first_group` on: quad(GGUF
// offset of its quant bytes 4v.., interleaved offset) for each v, then scale(GGUF offset of its scale,
// interleaved offset).
template <class Quad, class Scale>
void for_each_piece(DType t, int row_blocks, int blocks, int first_group, Quad&& quad, Scale&& scale) {
    const std::size_t S = block_bytes(t);
    for (int g = first_group; g * kGroupBlocks < blocks; ++g)
        for (int h = 0; h < 2; ++h) {
            const Half half = half_of(t, row_blocks, g, h);
            const int live = std::min(half.stored, blocks - (g * kGroupBlocks + h * kHalfBlocks));
            for (int j = 0; j < live; ++j) {
                const std::size_t block = std::size_t(g * kGroupBlocks + h * kHalfBlocks + j) * S;
                for (int v = 0; v < vectors(t); ++v)
                    quad(block + 2 + 4 * std::size_t(v), half.quants + std::size_t(v) * std::size_t(half.stride) + 4 * std::size_t(j));
                scale(block, half.scales + 2 * std::size_t(j));
            }
        }
}
inline void require_block_type(DType t) {
    require(is_quantized(t), "interleaved blocks", std::string(to_string(t)) + " is not a block format (Q8_0 or Q4_0)");
}
}  // namespace detail

namespace detail {
// A row's whole groups, moved by a loop with their shape as constants (V vectors of 16 blocks per half).
// Why: the loader interleaves every quantized layer of a --no-mmap copy, and the generic walk
// (for_each_piece, kept for a row's last, shorter group) moved 1.5-1.9 GB/s on an Emerald Rapids core;
// this loop moves 3.3-3.9 (an experiment outside the repo, 200 MB of rows; the same bytes out). With
// AVX2 each half's quant bytes are one transpose of dwords (simd/arch/quant_interleaved_avx2.hpp).
template <bool Interleave, int V>
void move_whole_groups(std::byte* dst, const std::byte* src, int groups, std::uint32_t flip) {
    constexpr std::size_t S = 2 + 4 * std::size_t(V), group = std::size_t(kGroupBlocks) * S;
    for (int g = 0; g < groups; ++g) {
        std::byte* d = dst + std::size_t(g) * group;
        const std::byte* s = src + std::size_t(g) * group;
        for (int b = 0; b < kGroupBlocks; ++b) {
            const std::size_t block = std::size_t(b) * S, scale = 2 * V * 64 + 2 * std::size_t(b);
            std::memcpy(Interleave ? d + scale : d + block, Interleave ? s + block : s + scale, 2);
        }
#if ELASTILM_INTERLEAVED_AVX2
        for (int h = 0; h < 2; ++h) {
            const std::size_t blocks = std::size_t(h * kHalfBlocks) * S + 2, half = std::size_t(h * V) * 64;
            if (Interleave) simd::qavx2::move_half<V>(d + half, s + blocks, int(S), flip, /*to_blocks=*/false);
            else simd::qavx2::move_half<V>(d + blocks, s + half, int(S), flip, /*to_blocks=*/true);
        }
#else
        // Vector by vector, so that the interleaved side is walked in order, 4 bytes at a time.
        for (int h = 0; h < 2; ++h)
            for (int v = 0; v < V; ++v)
                for (int j = 0; j < kHalfBlocks; ++j) {
                    const std::size_t gguf = std::size_t(h * kHalfBlocks + j) * S + 2 + 4 * std::size_t(v);
                    const std::size_t inter = std::size_t(h * V + v) * 64 + 4 * std::size_t(j);
                    std::uint32_t w;
                    std::memcpy(&w, s + (Interleave ? gguf : inter), 4);
                    w ^= flip;
                    std::memcpy(d + (Interleave ? inter : gguf), &w, 4);
                }
#endif
    }
}

// Moves the first `blocks` blocks of a row of `row_blocks` from GGUF's order into the interleaved one
// (Interleave) or back; dst and src must not overlap. Q8_0's quant bytes change sign bits on the way
// (stored + 128), either way. Groups wholly inside the prefix are stored whole at the same offsets in
// both orders and move by move_whole_groups; the rest (a group stored short, or only partly in the
// prefix) block by block.
template <bool Interleave>
void move_prefix(std::byte* dst, const std::byte* src, DType t, int row_blocks, int blocks) {
    require_block_type(t);
    const std::uint32_t flip = t == DType::q8_0 ? 0x80808080u : 0u;
    const int whole = blocks / kGroupBlocks;
    if (t == DType::q8_0) move_whole_groups<Interleave, 8>(dst, src, whole, flip);
    else move_whole_groups<Interleave, 4>(dst, src, whole, flip);
    auto move = [&](std::size_t gguf, std::size_t inter, std::size_t n) {
        const std::size_t from = Interleave ? gguf : inter, to = Interleave ? inter : gguf;
        if (n == 2) return void(std::memcpy(dst + to, src + from, 2));
        std::uint32_t w;
        std::memcpy(&w, src + from, 4);
        w ^= flip;
        std::memcpy(dst + to, &w, 4);
    };
    for_each_piece(
        t, row_blocks, blocks, whole, [&](std::size_t gguf, std::size_t inter) { move(gguf, inter, 4); },
        [&](std::size_t gguf, std::size_t inter) { move(gguf, inter, 2); });
}
}  // namespace detail

// dst = the interleaved form of the GGUF row src (row_blocks blocks); dst and src must not overlap.
inline void interleave_row(std::byte* dst, const std::byte* src, DType t, int row_blocks) {
    detail::move_prefix<true>(dst, src, t, row_blocks, row_blocks);
}
// dst = the GGUF row whose interleaved form is src: interleave_row's inverse.
inline void deinterleave_row(std::byte* dst, const std::byte* src, DType t, int row_blocks) {
    detail::move_prefix<false>(dst, src, t, row_blocks, row_blocks);
}

// Interleaves the `rows` rows of `row_blocks` blocks at `data` in place (a row at a time through a copy).
inline void interleave_rows(std::byte* data, DType t, std::size_t rows, int row_blocks) {
    const std::size_t row_bytes = std::size_t(row_blocks) * block_bytes(t);
    std::vector<std::byte> row(row_bytes);
    for (std::size_t r = 0; r < rows; ++r) {
        std::byte* p = data + r * row_bytes;
        std::memcpy(row.data(), p, row_bytes);
        interleave_row(p, row.data(), t, row_blocks);
    }
}

// Row r of W as GGUF blocks, whichever order W's blocks are in: `out` receives W.ld / 32 blocks.
inline void gguf_row(std::byte* out, const MatrixView& W, int r) {
    const int row_blocks = int(W.ld / kQuantBlock);
    const auto* src = static_cast<const std::byte*>(W.data) + std::size_t(r) * std::size_t(row_blocks) * block_bytes(W.dtype);
    if (W.order == BlockOrder::interleaved) deinterleave_row(out, src, W.dtype, row_blocks);
    else std::memcpy(out, src, std::size_t(row_blocks) * block_bytes(W.dtype));
}

// The first W.cols / 32 blocks of row r of W as GGUF blocks, whichever order W's blocks are in: what a
// ratio's slice reads, without moving the rest of the row (the tiled prefill GEMM, a tile at a time).
inline void gguf_prefix(std::byte* out, const MatrixView& W, int r) {
    const int row_blocks = int(W.ld / kQuantBlock), blocks = W.cols / kQuantBlock;
    const std::size_t S = block_bytes(W.dtype);
    const auto* src = static_cast<const std::byte*>(W.data) + std::size_t(r) * std::size_t(row_blocks) * S;
    if (W.order != BlockOrder::interleaved) return void(std::memcpy(out, src, std::size_t(blocks) * S));
    detail::move_prefix<false>(out, src, W.dtype, row_blocks, blocks);
}

}  // namespace elastilm::interleaved
