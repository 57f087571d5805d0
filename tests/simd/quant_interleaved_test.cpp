// The interleaved block order (simd/quant_interleaved.hpp): a permutation of each row's bytes, inverted
// exactly, with every block's quant bytes and scale where spot() says; whole groups in 64-byte vectors.
// Portable: the kernels that read it are tested in quant_kernels_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "elastilm/simd/quant_interleaved.hpp"

namespace elastilm {
namespace {

constexpr DType kTypes[] = {DType::q8_0, DType::q4_0};
constexpr int kRowBlocks[] = {1, 2, 3, 15, 16, 17, 31, 32, 33, 40, 47, 48, 49, 63, 64, 65, 100, 176};

std::vector<std::byte> random_row(DType t, int row_blocks, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::byte> row(std::size_t(row_blocks) * block_bytes(t));
    for (std::byte& b : row) b = std::byte(rng());
    return row;
}

TEST(InterleavedBlocks, EveryByteHasOnePlaceAndComesBack) {
    for (DType t : kTypes)
        for (int B : kRowBlocks) {
            SCOPED_TRACE(std::string(to_string(t)) + ", " + std::to_string(B) + " blocks");
            const auto gguf = random_row(t, B, std::uint64_t(B) * 7 + int(t));
            std::vector<std::byte> inter(gguf.size()), back(gguf.size());
            interleaved::interleave_row(inter.data(), gguf.data(), t, B);
            interleaved::deinterleave_row(back.data(), inter.data(), t, B);
            EXPECT_EQ(back, gguf);
            // spot() covers the row exactly once: each block's quant bytes and scale, nothing else.
            std::vector<int> uses(gguf.size());
            for (int b = 0; b < B; ++b) {
                const std::byte* block = gguf.data() + std::size_t(b) * block_bytes(t);
                for (int v = 0; v < interleaved::vectors(t); ++v) {
                    const interleaved::Spot at = interleaved::spot(t, B, b, v);
                    for (int i = 0; i < 4; ++i) {
                        ++uses[at.quad + i];
                        const auto want = std::uint8_t(block[2 + 4 * v + i]) ^ (t == DType::q8_0 ? 0x80 : 0);
                        ASSERT_EQ(std::uint8_t(inter[at.quad + i]), want) << "block " << b << " quad " << v << " byte " << i;
                    }
                }
                const std::size_t scale = interleaved::spot(t, B, b, 0).scale;
                ++uses[scale], ++uses[scale + 1];
                ASSERT_EQ(std::memcmp(inter.data() + scale, block, 2), 0) << "scale of block " << b;
            }
            for (std::size_t i = 0; i < uses.size(); ++i) ASSERT_EQ(uses[i], 1) << "byte " << i;
        }
}

// A whole group: 2 · V vectors of 64 bytes (block j at 4j), then its 32 scales; a row's shorter last
// group packs its vectors to 4 bytes per block. Both groups start where GGUF's blocks 32g do.
TEST(InterleavedBlocks, WholeGroupsAreVectorsThenScales) {
    for (DType t : kTypes) {
        const int V = interleaved::vectors(t), S = int(block_bytes(t));
        EXPECT_EQ(interleaved::spot(t, 40, 0, 1).quad, 64u);
        EXPECT_EQ(interleaved::spot(t, 40, 5, 2).quad, 128u + 20u);
        EXPECT_EQ(interleaved::spot(t, 40, 16, 0).quad, std::size_t(V) * 64);
        EXPECT_EQ(interleaved::spot(t, 40, 0, 0).scale, std::size_t(2 * V) * 64);
        EXPECT_EQ(interleaved::spot(t, 40, 31, 0).scale, std::size_t(2 * V) * 64 + 62);
        // Blocks 32..39: one half of 8 blocks, vectors of 32 bytes, then 8 scales.
        EXPECT_EQ(interleaved::spot(t, 40, 32, 0).quad, 32u * S);
        EXPECT_EQ(interleaved::spot(t, 40, 33, 1).quad, 32u * S + 32 + 4);
        EXPECT_EQ(interleaved::spot(t, 40, 32, 0).scale, 32u * S + std::size_t(V) * 32);
        EXPECT_EQ(interleaved::spot(t, 40, 39, 0).scale + 2, 40u * S);  // the row ends where it did
    }
}

// gguf_row gives a row in GGUF's order from either order; rows keep their place and size.
TEST(InterleavedBlocks, GgufRowFromEitherOrder) {
    for (DType t : kTypes) {
        const int B = 49, rows = 3;
        std::vector<std::byte> gguf, inter;
        for (int r = 0; r < rows; ++r) {
            const auto row = random_row(t, B, 100 + r);
            gguf.insert(gguf.end(), row.begin(), row.end());
        }
        inter = gguf;
        interleaved::interleave_rows(inter.data(), t, rows, B);
        const MatrixView G{gguf.data(), t, Layout::out_major, rows, 32 * B, std::size_t(32 * B)};
        MatrixView I = G;
        I.data = inter.data();
        I.order = BlockOrder::interleaved;
        std::vector<std::byte> out(std::size_t(B) * block_bytes(t));
        for (int r = 0; r < rows; ++r) {
            const auto want = std::vector<std::byte>(gguf.begin() + r * out.size(), gguf.begin() + (r + 1) * out.size());
            interleaved::gguf_row(out.data(), I.prefix(rows, 32 * 20), r);  // a prefix view reads whole stored rows
            EXPECT_EQ(out, want) << "interleaved row " << r;
            interleaved::gguf_row(out.data(), G, r);
            EXPECT_EQ(out, want) << "GGUF row " << r;
        }
    }
}

// gguf_prefix gives the first W.cols / 32 blocks of a row, for every prefix of a row that ends in a
// short group: prefixes ending at a group's end, inside its halves, and inside the short group.
TEST(InterleavedBlocks, GgufPrefixOfEveryLength) {
    for (DType t : kTypes) {
        const int B = 81, rows = 2;
        const std::size_t S = block_bytes(t);
        std::vector<std::byte> gguf;
        for (int r = 0; r < rows; ++r) {
            const auto row = random_row(t, B, 200 + r);
            gguf.insert(gguf.end(), row.begin(), row.end());
        }
        std::vector<std::byte> inter = gguf;
        interleaved::interleave_rows(inter.data(), t, rows, B);
        MatrixView I{inter.data(), t, Layout::out_major, rows, 32 * B, std::size_t(32 * B)};
        I.order = BlockOrder::interleaved;
        for (int blocks = 1; blocks <= B; ++blocks)
            for (int r = 0; r < rows; ++r) {
                std::vector<std::byte> out(std::size_t(blocks) * S);
                interleaved::gguf_prefix(out.data(), I.prefix(rows, 32 * blocks), r);
                const auto first = gguf.begin() + std::ptrdiff_t(std::size_t(r) * B * S);
                ASSERT_TRUE(std::equal(out.begin(), out.end(), first)) << to_string(t) << ", " << blocks << " blocks, row " << r;
            }
    }
}

TEST(InterleavedBlocks, OnlyBlockFormats) {
    std::vector<std::byte> a(64), b(64);
    EXPECT_THROW(interleaved::interleave_row(a.data(), b.data(), DType::f16, 1), Error);
}

}  // namespace
}  // namespace elastilm
