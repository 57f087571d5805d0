// Reordering permutation-consistent units so every width ratio's prefix holds the most important ones.
//
// A unit is permuted as a whole, so the full model computes exactly the same function:
//   KV group g: rows of Wk, Wv (its head), rows of Wq (its query heads), columns of Wo (the same heads);
//   FFN neuron j: row j of W_gate and W_up, column j of W_down.
// Heads move as whole head_dim blocks, so RoPE (which acts within a head) is unaffected.
#pragma once

#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/error.hpp"
#include "elastilm/model/weights.hpp"

namespace elastilm {

// new position i holds old unit order[i].
struct UnitOrder {
    std::vector<std::vector<int>> kv_group;  // [layer][n_kv_heads]
    std::vector<std::vector<int>> neuron;    // [layer][hidden]

    template <ModelConfig Cfg>
    static UnitOrder identity() {
        UnitOrder o;
        for (int l = 0; l < Cfg::n_layers; ++l) {
            o.kv_group.emplace_back(Cfg::n_kv_heads);
            std::iota(o.kv_group.back().begin(), o.kv_group.back().end(), 0);
            o.neuron.emplace_back(Cfg::hidden_dim);
            std::iota(o.neuron.back().begin(), o.neuron.back().end(), 0);
        }
        return o;
    }
    template <ModelConfig Cfg>
    static UnitOrder random(std::uint64_t seed) {
        UnitOrder o = identity<Cfg>();
        std::mt19937_64 rng(seed);
        for (auto& v : o.kv_group) std::shuffle(v.begin(), v.end(), rng);
        for (auto& v : o.neuron) std::shuffle(v.begin(), v.end(), rng);
        return o;
    }
};

namespace detail {

// Element order of a matrix axis from a unit order (each unit spans `width` consecutive elements).
inline std::vector<int> expand(const std::vector<int>& units, int width) {
    std::vector<int> out;
    out.reserve(units.size() * width);
    for (int u : units)
        for (int e = 0; e < width; ++e) out.push_back(u * width + e);
    return out;
}

// Copies W into `dst` (out_major, same dtype) with rows and columns gathered: dst(i, j) = W(rows[i], cols[j]).
// An empty order means "unchanged".
inline MatrixView gather(std::byte* dst, const MatrixView& W, const std::vector<int>& rows, const std::vector<int>& cols) {
    const std::size_t es = dtype_size(W.dtype);
    const auto* src = static_cast<const std::byte*>(W.data);
    for (int i = 0; i < W.rows; ++i) {
        const int r = rows.empty() ? i : rows[i];
        for (int j = 0; j < W.cols; ++j) {
            const int c = cols.empty() ? j : cols[j];
            std::memcpy(dst + (std::size_t(i) * W.cols + j) * es, src + W.offset(r, c) * es, es);
        }
    }
    return MatrixView{dst, W.dtype, Layout::out_major, W.rows, W.cols, std::size_t(W.cols)};
}

}  // namespace detail

// A copy of `w` with its units in `order` (owned buffer, same dtype, out_major layout).
template <ModelConfig Cfg>
ModelWeights reorder_units(const ModelWeights& w, const UnitOrder& order) {
    using S = Shape<Cfg>;
    require(int(order.kv_group.size()) == Cfg::n_layers && int(order.neuron.size()) == Cfg::n_layers, "reorder_units",
            "unit order has the wrong number of layers");
    std::size_t bytes = 0;
    for (const LayerWeights& l : w.layers)
        for (const MatrixView* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) bytes += m->bytes();
    auto storage = std::make_shared<std::vector<std::byte>>(bytes);
    std::byte* cursor = storage->data();
    auto place = [&](const MatrixView& m, const std::vector<int>& rows, const std::vector<int>& cols) {
        MatrixView v = detail::gather(cursor, m, rows, cols);
        cursor += m.bytes();
        return v;
    };

    ModelWeights out = w;
    for (int l = 0; l < Cfg::n_layers; ++l) {
        const auto& groups = order.kv_group[l];
        const auto& neurons = order.neuron[l];
        auto sorted = groups;
        std::sort(sorted.begin(), sorted.end());
        require(int(groups.size()) == Cfg::n_kv_heads && sorted == UnitOrder::identity<Cfg>().kv_group[0], "reorder_units",
                "layer " + std::to_string(l) + ": KV-group order is not a permutation of 0.." + std::to_string(Cfg::n_kv_heads - 1));
        auto sorted_n = neurons;
        std::sort(sorted_n.begin(), sorted_n.end());
        for (int j = 0; j < int(sorted_n.size()); ++j)
            require(sorted_n[j] == j, "reorder_units", "layer " + std::to_string(l) + ": neuron order is not a permutation");
        require(int(neurons.size()) == Cfg::hidden_dim, "reorder_units", "neuron order has the wrong length");

        const auto kv_rows = detail::expand(groups, Cfg::head_dim);
        const auto q_rows = detail::expand(groups, S::group_size * Cfg::head_dim);
        const LayerWeights& src = w.layers[l];
        LayerWeights& dst = out.layers[l];
        dst.wq = place(src.wq, q_rows, {});
        dst.wk = place(src.wk, kv_rows, {});
        dst.wv = place(src.wv, kv_rows, {});
        dst.wo = place(src.wo, {}, q_rows);
        dst.w_gate = place(src.w_gate, neurons, {});
        dst.w_up = place(src.w_up, neurons, {});
        dst.w_down = place(src.w_down, {}, neurons);
    }
    // Embeddings, norms and the LM head stay in the original mapping, which must outlive `out`.
    out.keepalive = std::make_shared<std::pair<std::shared_ptr<const void>, std::shared_ptr<std::vector<std::byte>>>>(
        w.keepalive, storage);
    return out;
}

}  // namespace elastilm
