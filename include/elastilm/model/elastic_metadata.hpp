// What an elastic model file records beyond a plain LLaMA: the ratios it was prepared for, its anchor
// layers, and the importances that ordered its units (kept so tools can show and check them).
//
// GGUF keys (all under "elastilm."):
//   elastic (bool), ratios (int32[]), anchors (int32[]), importance_measure (string),
//   calibration_tokens (uint64), layer_importance (float32[n_layers]),
//   kv_group_importance (float32[n_layers · n_kv_heads]), neuron_importance (float32[n_layers · hidden]).
// Importances are stored in the file's (sorted) unit order, so each layer's list is non-increasing.
#pragma once

#include <string>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/error.hpp"

namespace elastilm {

inline constexpr std::string_view kImportanceMeasure =
    "residual-contribution RMS norm per unit; block influence (1 - cos) per layer";

struct ElasticMetadata {
    std::vector<int> ratios;
    std::vector<int> anchors;
    std::string importance_measure;
    std::uint64_t calibration_tokens = 0;
    std::vector<float> layer_importance;     // [n_layers]
    std::vector<float> kv_group_importance;  // [n_layers * n_kv_heads]
    std::vector<float> neuron_importance;    // [n_layers * hidden]
};

// Checks the metadata against the compiled config; `where` names the file in messages.
template <ModelConfig Cfg>
void validate(const ElasticMetadata& m, const std::string& where) {
    auto length = [&](const char* key, std::size_t got, std::size_t want) {
        require(got == want, where,
                std::string("elastilm.") + key + " has " + std::to_string(got) + " values, expected " + std::to_string(want) +
                    " for config " + std::string(Cfg::name));
    };
    length("layer_importance", m.layer_importance.size(), Cfg::n_layers);
    length("kv_group_importance", m.kv_group_importance.size(), std::size_t(Cfg::n_layers) * Cfg::n_kv_heads);
    length("neuron_importance", m.neuron_importance.size(), std::size_t(Cfg::n_layers) * Cfg::hidden_dim);
    for (int a : m.anchors)
        require(a >= 0 && a < Cfg::n_layers, where,
                "elastilm.anchors names layer " + std::to_string(a) + ", but the model has layers 0.." + std::to_string(Cfg::n_layers - 1));
    for (int r : m.ratios)
        require(ratio_index(r) >= 0, where, "elastilm.ratios lists " + std::to_string(r) + "%, which is not a compiled ratio");
    require(!m.ratios.empty(), where, "elastilm.ratios is empty");
}

}  // namespace elastilm
