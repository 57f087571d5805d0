// One-shot elasticization (ElastiLM §3.1): run calibration text through the full model, score every
// permutation-consistent unit and every layer (elastic/importance.hpp), reorder units by descending
// importance (elastic/reorder.hpp) and mark the most influential layers as anchors. The result computes
// exactly the same function at 100% width; every smaller ratio's prefix now holds the units that matter.
#pragma once

#include <functional>
#include <span>

#include "elastilm/elastic/importance.hpp"
#include "elastilm/elastic/reorder.hpp"
#include "elastilm/model/session.hpp"

namespace elastilm {

struct ElasticizeOptions {
    int window = 256;          // calibration tokens per forward pass
    int anchors = 1;           // layers kept at full width at every ratio
    bool reorder = true;       // false: keep the original order (an ablation)
};

// Calibration statistics of `weights` over `calibration` (a token stream, cut into windows).
template <ModelConfig Cfg>
UnitImportance measure_importance(const ModelWeights& weights, std::span<const int> calibration, int window, ThreadPool& pool,
                                  const std::function<void(int, int)>& progress = {}) {
    require(window > 0 && window <= Cfg::context, "elasticize", "calibration window must be in 1.." + std::to_string(Cfg::context));
    require(calibration.size() >= std::size_t(window), "elasticize",
            "needs at least " + std::to_string(window) + " calibration tokens, got " + std::to_string(calibration.size()));
    Model<Cfg> model(weights, std::vector<int>{});
    ImportanceCollector<Cfg> collector(model);
    Session<Cfg> session(model, pool, window, window);
    session.set_observer(&collector);
    const int windows = int(calibration.size() / window);
    for (int w = 0; w < windows; ++w) {
        session.reset();
        session.append(calibration.subspan(std::size_t(w) * window, window));
        if (progress) progress(w + 1, windows);
    }
    return collector.result();
}

// The unit order that sorts each layer's units by descending importance.
template <ModelConfig Cfg>
UnitOrder importance_order(const UnitImportance& imp) {
    UnitOrder o;
    for (int l = 0; l < Cfg::n_layers; ++l) {
        o.kv_group.push_back(descending_order(imp.kv_group[l]));
        o.neuron.push_back(descending_order(imp.neuron[l]));
    }
    return o;
}

// Reordered weights with elastic metadata (importances stored in the new order).
template <ModelConfig Cfg>
ModelWeights make_elastic(const ModelWeights& weights, const UnitImportance& imp, const ElasticizeOptions& opt) {
    const UnitOrder order = opt.reorder ? importance_order<Cfg>(imp) : UnitOrder::identity<Cfg>();
    ModelWeights out = reorder_units<Cfg>(weights, order);
    ElasticMetadata& m = out.elastic;
    m.ratios.assign(kRatios.begin(), kRatios.end());
    m.anchors = choose_anchors(imp.layer, opt.anchors);
    m.importance_measure = std::string(kImportanceMeasure);
    m.calibration_tokens = std::uint64_t(imp.tokens);
    m.layer_importance = imp.layer;
    for (int l = 0; l < Cfg::n_layers; ++l) {
        for (int g : order.kv_group[l]) m.kv_group_importance.push_back(imp.kv_group[l][g]);
        for (int j : order.neuron[l]) m.neuron_importance.push_back(imp.neuron[l][j]);
    }
    out.is_elastic = true;
    validate<Cfg>(m, out.source);
    return out;
}

}  // namespace elastilm
