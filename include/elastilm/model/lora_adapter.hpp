// A LoRA adapter for one width ratio (ElastiLM §3.2: each sub-model gets its own recovery adapter).
//
// For every sliced matrix W of the sub-model (rows = outputs, cols = inputs, both already the ratio's
// sliced sizes) the adapter holds A [rank, cols] and B [rows, rank], fp32, and the layer computes
//     y = W·x + scale · B·(A·x),   scale = alpha / rank
// unmerged, so the base weights stay the shared, memory-mapped prefix views. Anchor layers run at full
// width at every ratio, so their pairs have the full shapes.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/error.hpp"
#include "elastilm/model/weights.hpp"

namespace elastilm {

inline constexpr std::size_t kLayerMatrixCount = std::size(kLayerMatrices);

// Where each projection sits in kLayerMatrices (and so in LoraLayer::pairs).
namespace lora_slot {
inline constexpr std::size_t q = 0, k = 1, v = 2, o = 3, gate = 4, up = 5, down = 6;
static_assert(kLayerMatrices[q].field == &LayerWeights::wq && kLayerMatrices[k].field == &LayerWeights::wk &&
              kLayerMatrices[v].field == &LayerWeights::wv && kLayerMatrices[o].field == &LayerWeights::wo &&
              kLayerMatrices[gate].field == &LayerWeights::w_gate && kLayerMatrices[up].field == &LayerWeights::w_up &&
              kLayerMatrices[down].field == &LayerWeights::w_down);
}  // namespace lora_slot

// The low-rank pair of one matrix. rank 0 means "no adapter on this matrix".
struct LoraPair {
    int rank = 0, rows = 0, cols = 0;
    std::vector<float> a;  // [rank, cols], row-major
    std::vector<float> b;  // [rows, rank], row-major

    bool empty() const { return rank == 0; }
    std::size_t parameters() const { return a.size() + b.size(); }
};

struct LoraLayer {
    std::array<LoraPair, kLayerMatrixCount> pairs;  // in kLayerMatrices order
};

// The sliced sizes of one layer of the sub-model at `percent` (anchor layers: full width).
struct LayerExtents {
    int dim, q_dim, kv_dim, hidden;

    int of(Extent e) const {
        switch (e) {
            case Extent::dim: return dim;
            case Extent::q_dim: return q_dim;
            case Extent::kv_dim: return kv_dim;
            case Extent::hidden: return hidden;
        }
        return 0;
    }
};

template <ModelConfig Cfg>
LayerExtents layer_extents(int percent, bool anchor) {
    if (anchor) percent = 100;
    const int i = ratio_index(percent);
    require(i >= 0, "lora", std::to_string(percent) + "% is not a compiled width ratio");
    LayerExtents e{Cfg::dim, 0, 0, 0};
    // Width<Cfg, P> as runtime values: one fold over the compiled ratios.
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        ((I == std::size_t(i) ? (e.q_dim = Width<Cfg, kRatios[I]>::q_dim, e.kv_dim = Width<Cfg, kRatios[I]>::kv_dim,
                                 e.hidden = Width<Cfg, kRatios[I]>::hidden, 0)
                              : 0),
         ...);
    }(std::make_index_sequence<kRatios.size()>{});
    return e;
}

struct LoraAdapter {
    int percent = 100;       // the width ratio it was trained for
    int rank = 0;
    float alpha = 0;         // scale = alpha / rank (PEFT's default; rsLoRA files give alpha / sqrt(rank), see scale_)
    std::string source;      // file it came from, for messages
    std::vector<LoraLayer> layers;
    float scale_override = 0;  // when non-zero, used instead of alpha / rank (rsLoRA)

    float scale() const { return scale_override != 0 ? scale_override : (rank > 0 ? alpha / float(rank) : 0.0f); }

    std::size_t parameters() const {
        std::size_t n = 0;
        for (const auto& l : layers)
            for (const auto& p : l.pairs) n += p.parameters();
        return n;
    }
    std::size_t bytes() const { return parameters() * sizeof(float); }

    // "blk.3.attn_q.weight" style name of a pair, for messages.
    static std::string tensor_name(int layer, std::size_t matrix) {
        return "blk." + std::to_string(layer) + "." + kLayerMatrices[matrix].gguf;
    }
};

// An adapter shaped like `like` — the same ratio, rank, scale and pairs (rank, rows, cols) — all zero:
// a gradient for it, or an optimizer's moment.
inline LoraAdapter lora_zeros_like(const LoraAdapter& like) {
    LoraAdapter z;
    z.percent = like.percent, z.rank = like.rank, z.alpha = like.alpha, z.scale_override = like.scale_override;
    z.source = "zeros shaped like " + like.source;
    z.layers.resize(like.layers.size());
    for (std::size_t l = 0; l < like.layers.size(); ++l)
        for (std::size_t k = 0; k < kLayerMatrixCount; ++k) {
            const LoraPair& p = like.layers[l].pairs[k];
            LoraPair& q = z.layers[l].pairs[k];
            q.rank = p.rank, q.rows = p.rows, q.cols = p.cols;
            q.a.assign(p.a.size(), 0.0f);
            q.b.assign(p.b.size(), 0.0f);
        }
    return z;
}

// A fresh adapter for `percent` on a model with the given anchors: A small random (Kaiming-uniform as in
// PEFT), B zero, so the adapted model starts exactly equal to the sub-model.
template <ModelConfig Cfg>
LoraAdapter make_lora(int percent, const std::vector<int>& anchors, int rank, float alpha, std::uint64_t seed = 1) {
    require(rank > 0 && rank <= 256, "lora", "rank " + std::to_string(rank) + " outside 1..256");
    LoraAdapter ad;
    ad.percent = percent;
    ad.rank = rank;
    ad.alpha = alpha;
    ad.source = "new";
    std::mt19937_64 rng(seed);
    for (int l = 0; l < Cfg::n_layers; ++l) {
        const bool anchor = std::find(anchors.begin(), anchors.end(), l) != anchors.end();
        const LayerExtents e = layer_extents<Cfg>(percent, anchor);
        LoraLayer layer;
        for (std::size_t m = 0; m < kLayerMatrixCount; ++m) {
            LoraPair& p = layer.pairs[m];
            p.rank = rank;
            p.rows = e.of(kLayerMatrices[m].rows);
            p.cols = e.of(kLayerMatrices[m].cols);
            const float bound = 1.0f / std::sqrt(float(p.cols));
            std::uniform_real_distribution<float> u(-bound, bound);
            p.a.resize(std::size_t(rank) * p.cols);
            for (float& v : p.a) v = u(rng);
            p.b.assign(std::size_t(p.rows) * rank, 0.0f);
        }
        ad.layers.push_back(std::move(layer));
    }
    return ad;
}

// Checks an adapter against the sub-model it will run in: ratio compiled, one entry per layer, every
// pair shaped to that layer's sliced matrix, finite values. Errors name the tensor.
template <ModelConfig Cfg>
void validate(const LoraAdapter& ad, const std::vector<int>& anchors) {
    const std::string& where = ad.source.empty() ? std::string("lora adapter") : ad.source;
    require(ratio_index(ad.percent) >= 0, where, std::to_string(ad.percent) + "% is not a compiled width ratio");
    require(int(ad.layers.size()) == Cfg::n_layers, where,
            "has " + std::to_string(ad.layers.size()) + " layers, the model (" + std::string(Cfg::name) + ") has " +
                std::to_string(Cfg::n_layers));
    require(std::isfinite(ad.scale()), where, "scale (alpha / rank) is not finite");
    for (int l = 0; l < Cfg::n_layers; ++l) {
        const bool anchor = std::find(anchors.begin(), anchors.end(), l) != anchors.end();
        const LayerExtents e = layer_extents<Cfg>(ad.percent, anchor);
        for (std::size_t m = 0; m < kLayerMatrixCount; ++m) {
            const LoraPair& p = ad.layers[l].pairs[m];
            if (p.empty()) continue;
            const std::string name = LoraAdapter::tensor_name(l, m);
            const int rows = e.of(kLayerMatrices[m].rows), cols = e.of(kLayerMatrices[m].cols);
            require(p.rows == rows && p.cols == cols, where,
                    name + " adapter is " + std::to_string(p.rows) + "x" + std::to_string(p.cols) + ", but at " +
                        std::to_string(ad.percent) + "% width" + (anchor ? " (anchor layer: full width)" : "") +
                        " the matrix is " + std::to_string(rows) + "x" + std::to_string(cols));
            require(p.a.size() == std::size_t(p.rank) * p.cols && p.b.size() == std::size_t(p.rows) * p.rank, where,
                    name + " adapter: lora_a/lora_b sizes do not match rank " + std::to_string(p.rank));
            // One pass per tensor, the message built only on failure (adapters reach millions of values).
            auto finite = [](const std::vector<float>& x) { return std::all_of(x.begin(), x.end(), [](float v) { return std::isfinite(v); }); };
            if (!finite(p.a)) throw Error(where, name + ".lora_a holds a NaN or infinity");
            if (!finite(p.b)) throw Error(where, name + ".lora_b holds a NaN or infinity");
        }
    }
}

}  // namespace elastilm
