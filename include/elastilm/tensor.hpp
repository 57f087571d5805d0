// Views of weight matrices that live in a memory-mapped model file (or in a buffer the caller owns).
// A view never owns memory: slicing a sub-model is making a smaller view of the same bytes.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace elastilm {

enum class DType : std::uint8_t { f32, f16 };

constexpr std::size_t dtype_size(DType t) { return t == DType::f32 ? 4 : 2; }
constexpr std::string_view to_string(DType t) { return t == DType::f32 ? "F32" : "F16"; }

// How a matrix W (rows = outputs, cols = inputs) sits in memory.
//  out_major: element (i, j) at i*ld + j — the usual [out, in] row-major layout of every file format.
//  in_major:  element (i, j) at j*ld + i — transposed storage. Elastic files store the output and down
//             projections this way so that keeping the first k inputs is one contiguous prefix.
enum class Layout : std::uint8_t { out_major, in_major };

struct MatrixView {
    const void* data = nullptr;
    DType dtype = DType::f32;
    Layout layout = Layout::out_major;
    int rows = 0;         // outputs used
    int cols = 0;         // inputs used
    std::size_t ld = 0;   // elements between consecutive rows (out_major) or columns (in_major)

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
        v.data = static_cast<const std::byte*>(data) + offset(r0, 0) * dtype_size(dtype);
        v.rows = n;
        return v;
    }
    // Bytes this view reads when fully traversed.
    constexpr std::size_t bytes() const { return std::size_t(rows) * std::size_t(cols) * dtype_size(dtype); }
};

}  // namespace elastilm
