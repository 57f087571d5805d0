// Views of weight matrices that live in a memory-mapped model file (or in a buffer the caller owns).
// A view never owns memory: slicing a sub-model is making a smaller view of the same bytes.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace elastilm {

// Element types of weights. bf16 only appears in files (the loader converts it); q8_0 and q4_0 are
// GGUF's block formats (simd/quant_blocks.hpp): 32 weights along the input dimension share one scale.
enum class DType : std::uint8_t { f32, f16, bf16, q8_0, q4_0 };

constexpr bool is_quantized(DType t) { return t == DType::q8_0 || t == DType::q4_0; }
// Elements per block (1 for plain types) and bytes per block.
constexpr int block_elements(DType t) { return is_quantized(t) ? 32 : 1; }
constexpr std::size_t block_bytes(DType t) {
    switch (t) {
        case DType::f32: return 4;
        case DType::q8_0: return 34;  // fp16 scale + 32 int8
        case DType::q4_0: return 18;  // fp16 scale + 32 nibbles
        default: return 2;
    }
}
// Bytes of one element; plain types only (a block format has no per-element size: use bytes_for).
constexpr std::size_t dtype_size(DType t) {
    assert(!is_quantized(t));
    return block_bytes(t);
}
// Bytes of `n` consecutive elements; for a block format n is a whole number of blocks.
constexpr std::size_t bytes_for(DType t, std::size_t n) {
    assert(n % std::size_t(block_elements(t)) == 0);
    return n / std::size_t(block_elements(t)) * block_bytes(t);
}
constexpr std::string_view to_string(DType t) {
    constexpr std::string_view names[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0"};
    return names[int(t)];
}

// How a matrix W (rows = outputs, cols = inputs) sits in memory.
//  out_major: element (i, j) at i*ld + j — the usual [out, in] row-major layout of every file format.
//  in_major:  element (i, j) at j*ld + i — transposed storage. Elastic files store the output and down
//             projections this way so that keeping the first k inputs is one contiguous prefix.
// Block formats are out_major only (blocks run along the inputs) and `ld` is in elements, a multiple of 32.
enum class Layout : std::uint8_t { out_major, in_major };

// The order of a block format's bytes within each row: GGUF's (block after block), or interleaved for
// the AVX-512 VNNI decode kernel (simd/quant_interleaved.hpp: same row size, bytes moved within it),
// which the loader makes of a --no-mmap copy where that kernel is compiled.
enum class BlockOrder : std::uint8_t { gguf, interleaved };

struct MatrixView {
    const void* data = nullptr;
    DType dtype = DType::f32;
    Layout layout = Layout::out_major;
    int rows = 0;         // outputs used
    int cols = 0;         // inputs used
    std::size_t ld = 0;   // elements between consecutive rows (out_major) or columns (in_major)
    BlockOrder order = BlockOrder::gguf;  // block formats only

    // The leading rows × cols block: the same bytes, a smaller view. This is how a ratio slices.
    constexpr MatrixView prefix(int r, int c) const {
        assert(r <= rows && c <= cols);
        MatrixView v = *this;
        v.rows = r;
        v.cols = c;
        return v;
    }
    // Index of element (i, j) — output i, input j — counted in elements from `data`.
    constexpr std::size_t offset(int i, int j) const {
        return layout == Layout::out_major ? std::size_t(i) * ld + std::size_t(j) : std::size_t(j) * ld + std::size_t(i);
    }
    // Rows [r0, r0 + n): used to split work across threads.
    MatrixView row_block(int r0, int n) const {
        MatrixView v = *this;
        v.data = static_cast<const std::byte*>(data) + bytes_for(dtype, offset(r0, 0));
        v.rows = n;
        return v;
    }
    // Bytes this view reads when fully traversed.
    constexpr std::size_t bytes() const { return std::size_t(rows) * bytes_for(dtype, std::size_t(cols)); }
};

}  // namespace elastilm
