// A loaded model: its weights, RoPE table and anchor layers, checked against a compiled config.
#pragma once

#include <algorithm>
#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/error.hpp"
#include "elastilm/model/lora_apply.hpp"
#include "elastilm/model/weights.hpp"
#include "elastilm/ops/rope.hpp"
#include "elastilm/simd/f16.hpp"
#include "elastilm/simd/quant_blocks.hpp"

namespace elastilm {

template <ModelConfig Cfg>
class Model {
public:
    // Anchor layers run at full width whatever the ratio (ElastiLM keeps the most important layers
    // whole). By default they come from the file's elastic metadata; plain models have none.
    explicit Model(ModelWeights weights) : Model(std::move(weights), std::nullopt) {}
    Model(ModelWeights weights, std::optional<std::vector<int>> anchors)
        : weights_(std::move(weights)), rope_(Cfg::context, Cfg::head_dim, Cfg::rope_theta), anchor_(Cfg::n_layers, false) {
        if (!anchors) anchors = weights_.elastic.anchors;
        require(int(weights_.layers.size()) == Cfg::n_layers, weights_.source,
                "has " + std::to_string(weights_.layers.size()) + " layers, config " + std::string(Cfg::name) +
                    " has " + std::to_string(Cfg::n_layers));
        for (int l : *anchors) {
            require(l >= 0 && l < Cfg::n_layers, weights_.source,
                    "anchor layer " + std::to_string(l) + " does not exist (the model has " +
                        std::to_string(Cfg::n_layers) + " layers)");
            anchor_[l] = true;
        }
    }

    const ModelWeights& weights() const { return weights_; }
    const LayerWeights& layer(int l) const { return weights_.layers[l]; }
    const RopeTable& rope() const { return rope_; }
    bool is_elastic() const { return weights_.is_elastic; }
    RopePairing rope_pairing() const { return weights_.rope_pairing; }
    bool is_anchor(int l) const { return anchor_[l]; }
    std::vector<int> anchors() const {
        std::vector<int> out;
        for (int l = 0; l < Cfg::n_layers; ++l)
            if (anchor_[l]) out.push_back(l);
        return out;
    }

    // Per-ratio LoRA adapters (model/lora_adapter.hpp): the variant at adapter->percent applies it, unmerged,
    // in every layer; other ratios are untouched. Attach before serving: the blocks read it unlocked.
    // The blocks read its runtime form (model/lora_apply.hpp: fp16, laid out for streaming), made here once.
    void set_adapter(std::shared_ptr<const LoraAdapter> adapter) {
        require(adapter != nullptr, weights_.source, "set_adapter: null adapter");
        validate<Cfg>(*adapter, anchors());
        const int i = ratio_index(adapter->percent);
        runtime_[i] = std::make_shared<const LoraRuntime>(LoraRuntime::from(*adapter, weights_));
        adapters_[i] = std::move(adapter);
    }
    void clear_adapter(int percent) {
        const int i = ratio_index(percent);
        require(i >= 0, weights_.source, std::to_string(percent) + "% is not a compiled width ratio");
        adapters_[i].reset();
        runtime_[i].reset();
    }
    // The adapter of a compiled ratio, or null; and the form the forward pass applies.
    const LoraAdapter* adapter(int percent) const { return adapters_[ratio_index(percent)].get(); }
    const LoraRuntime* adapter_runtime(int percent) const { return runtime_[ratio_index(percent)].get(); }

    // The embedding row of `token`, widened to fp32.
    void embed(int token, float* out) const {
        const MatrixView& e = weights_.embedding;
        const std::size_t row = std::size_t(token) * e.ld;
        if (e.dtype == DType::f32) {
            std::copy_n(static_cast<const float*>(e.data) + row, Cfg::dim, out);
        } else if (is_quantized(e.dtype)) {
            require(e.order == BlockOrder::gguf, weights_.source, "the embedding's blocks must be in GGUF's order");
            dequantize_row(out, e.dtype, static_cast<const std::byte*>(e.data) + bytes_for(e.dtype, row), Cfg::dim);
        } else {
            const auto* h = static_cast<const f16_bits*>(e.data) + row;
            for (int i = 0; i < Cfg::dim; ++i) out[i] = f16_to_f32(h[i]);
        }
    }

private:
    ModelWeights weights_;
    RopeTable rope_;
    std::vector<bool> anchor_;
    std::array<std::shared_ptr<const LoraAdapter>, kRatios.size()> adapters_;
    std::array<std::shared_ptr<const LoraRuntime>, kRatios.size()> runtime_;
};

}  // namespace elastilm
