// One tensor as a container file stores it (GGUF or safetensors): name, shape, element type and the
// mapped bytes. What both readers' callers need from it — the shape as text for messages, the element
// count, the elements widened to fp32 — is written once here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "elastilm/error.hpp"
#include "elastilm/simd/bf16.hpp"
#include "elastilm/simd/f16.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm::io {

// "[2, 3]"
inline std::string shape_string(const std::vector<std::int64_t>& s) {
    std::string out = "[";
    for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

struct FileTensor {
    std::string name;
    std::vector<std::int64_t> shape;  // outermost first: [rows, cols] for a matrix
    DType dtype = DType::f32;
    const std::byte* data = nullptr;
    std::size_t nbytes = 0;

    std::string shape_string() const { return io::shape_string(shape); }
    std::size_t elements() const {
        std::size_t n = 1;
        for (auto d : shape) n *= std::size_t(d);
        return n;
    }
    // The first `n` elements (all by default), widened to fp32. The readers have checked that the bytes
    // hold every element of the shape.
    std::vector<float> to_floats(std::size_t n) const {
        require(n <= elements(), name, "asked for " + std::to_string(n) + " elements of a tensor of " + std::to_string(elements()));
        std::vector<float> out(n);
        if (dtype == DType::f32) {
            if (n) std::memcpy(out.data(), data, n * sizeof(float));
        } else {
            require(dtype == DType::f16 || dtype == DType::bf16, name,
                    "is " + std::string(to_string(dtype)) + ", expected F32, F16 or BF16");
            for (std::size_t i = 0; i < n; ++i) {
                std::uint16_t h;
                std::memcpy(&h, data + 2 * i, 2);
                out[i] = dtype == DType::bf16 ? bf16_to_f32(h) : f16_to_f32(h);
            }
        }
        return out;
    }
    std::vector<float> to_floats() const { return to_floats(elements()); }
};

}  // namespace elastilm::io
