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
#include "elastilm/io/file_tensor.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm::detail {

// `a` and `b` are the pair's tensors as the file names them; `rank` is the adapter's declared rank.
inline LoraPair lora_pair_from(const io::FileTensor& a, const io::FileTensor& b, int rank, const std::string& where) {
    require(a.shape.size() == 2, where, "tensor " + a.name + " has shape " + a.shape_string() + ", expected [rank, in]");
    require(b.shape.size() == 2, where, "tensor " + b.name + " has shape " + b.shape_string() + ", expected [out, rank]");
    require(a.shape[0] == b.shape[1], where,
            "rank mismatch: " + a.name + " has rank " + std::to_string(a.shape[0]) + " (shape " + a.shape_string() + "), " +
                b.name + " has rank " + std::to_string(b.shape[1]) + " (shape " + b.shape_string() + ")");
    require(a.shape[0] == rank, where,
            "tensor " + a.name + " has rank " + std::to_string(a.shape[0]) + ", the adapter declares rank " + std::to_string(rank));
    // The model's dimensions are below 2^31, so anything larger is a wrong model; validate names it.
    require(a.shape[1] < (1ll << 31) && b.shape[0] < (1ll << 31), where, "tensor " + a.name + " or " + b.name + " is implausibly large");
    LoraPair p;
    p.rank = rank;
    p.rows = int(b.shape[0]);
    p.cols = int(a.shape[1]);
    p.a = a.to_floats();
    p.b = b.to_floats();
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
