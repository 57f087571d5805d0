// Turning the two tensors a file stores for one adapted matrix (lora_a [rank, in], lora_b [out, rank],
// F32, F16 or BF16) into a LoraPair, checking what the two files formats share: both are matrices and their
// ranks agree with each other and with the adapter's. Shapes against the model are validate<Cfg>'s job.
#pragma once

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "elastilm/error.hpp"
#include "elastilm/model/lora_adapter.hpp"
#include "elastilm/simd/bf16.hpp"
#include "elastilm/simd/f16.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm::detail {

inline std::string lora_shape_string(const std::vector<std::int64_t>& s) {
    std::string out = "[";
    for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

// The elements of a file tensor (io::GgufTensor or io::SafeTensor: F32, F16 or BF16), widened to fp32.
template <class FileTensor>
std::vector<float> lora_floats(const FileTensor& t, const std::string& where) {
    require(!is_quantized(t.dtype), where,
            "tensor " + t.name + " is " + std::string(to_string(t.dtype)) + "; adapter tensors must be F32, F16 or BF16");
    std::size_t n = 1;
    for (auto d : t.shape) n *= std::size_t(d);
    std::vector<float> out(n);
    if (t.dtype == DType::f32) {
        if (n) std::memcpy(out.data(), t.data, n * sizeof(float));
    } else {
        for (std::size_t i = 0; i < n; ++i) {
            std::uint16_t h;
            std::memcpy(&h, t.data + 2 * i, 2);
            out[i] = t.dtype == DType::bf16 ? bf16_to_f32(h) : f16_to_f32(h);
        }
    }
    return out;
}

// `a` and `b` are the pair's tensors as the file names them; `rank` is the adapter's declared rank.
template <class FileTensor>
LoraPair lora_pair_from(const FileTensor& a, const FileTensor& b, int rank, const std::string& where) {
    require(a.shape.size() == 2, where, "tensor " + a.name + " has shape " + lora_shape_string(a.shape) + ", expected [rank, in]");
    require(b.shape.size() == 2, where, "tensor " + b.name + " has shape " + lora_shape_string(b.shape) + ", expected [out, rank]");
    require(a.shape[0] == b.shape[1], where,
            "rank mismatch: " + a.name + " has rank " + std::to_string(a.shape[0]) + " (shape " + lora_shape_string(a.shape) + "), " +
                b.name + " has rank " + std::to_string(b.shape[1]) + " (shape " + lora_shape_string(b.shape) + ")");
    require(a.shape[0] == rank, where,
            "tensor " + a.name + " has rank " + std::to_string(a.shape[0]) + ", the adapter declares rank " + std::to_string(rank));
    // The model's dimensions are below 2^31, so anything larger is a wrong model; validate names it.
    require(a.shape[1] < (1ll << 31) && b.shape[0] < (1ll << 31), where, "tensor " + a.name + " or " + b.name + " is implausibly large");
    LoraPair p;
    p.rank = rank;
    p.rows = int(b.shape[0]);
    p.cols = int(a.shape[1]);
    p.a = lora_floats(a, where);
    p.b = lora_floats(b, where);
    return p;
}

// A file's lora_a / lora_b tensors per layer and matrix (null: absent), as the loaders collect them.
template <class FileTensor>
using FoundPairs = std::vector<std::array<std::array<const FileTensor*, 2>, kLayerMatrixCount>>;

// Turns the collected tensors into the adapter's pairs: a matrix with neither tensor gets rank 0, one
// with only one of them is an error naming the missing partner (`name(l, m, b)` is the file's name).
template <class FileTensor, class Name>
void assemble_pairs(LoraAdapter& ad, const FoundPairs<FileTensor>& found, Name&& name, const std::string& where) {
    ad.layers.resize(found.size());
    for (std::size_t l = 0; l < found.size(); ++l)
        for (std::size_t m = 0; m < kLayerMatrixCount; ++m) {
            const FileTensor* a = found[l][m][0];
            const FileTensor* b = found[l][m][1];
            if (!a && !b) continue;
            require(a && b, where,
                    "tensor " + name(int(l), m, a != nullptr) + " is missing (its partner " + name(int(l), m, a == nullptr) + " is present)");
            ad.layers[l].pairs[m] = lora_pair_from(*a, *b, ad.rank, where);
        }
}

}  // namespace elastilm::detail
