// The elastilm.* GGUF keys, read and written side by side (keys listed in model/elastic_metadata.hpp):
// what an elastic model records beyond a plain LLaMA, and whether Wo / W_down are stored input-major.
// formats/load.hpp reads them, formats/gguf_export.hpp writes them; a key added here is added to both.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "elastilm/io/gguf.hpp"
#include "elastilm/io/gguf_writer.hpp"
#include "elastilm/model/elastic_metadata.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm {

// "elastilm.output_layout": "in_major" when Wo and W_down are stored input-major (elastilm-only files).
inline Layout read_output_layout(const io::GgufFile& g) {
    return g.has("elastilm.output_layout") && g.get_string("elastilm.output_layout") == "in_major" ? Layout::in_major
                                                                                                     : Layout::out_major;
}
inline void write_output_layout(io::GgufWriter& g, Layout outputs) {
    if (outputs == Layout::in_major) g.set_string("elastilm.output_layout", "in_major");
}

// The elastic metadata, or nothing for a plain model (no "elastilm.elastic" or false).
inline std::optional<ElasticMetadata> read_elastic_metadata(const io::GgufFile& g) {
    if (!g.has("elastilm.elastic") || !g.get_bool("elastilm.elastic")) return std::nullopt;
    auto ints = [&](const char* k) {
        std::vector<int> v;
        for (double x : g.get_numbers(k)) v.push_back(int(x));
        return v;
    };
    auto floats = [&](const char* k) {
        std::vector<float> v;
        for (double x : g.get_numbers(k)) v.push_back(float(x));
        return v;
    };
    ElasticMetadata e;
    e.ratios = ints("elastilm.ratios");
    e.anchors = ints("elastilm.anchors");
    e.importance_measure = g.get_string("elastilm.importance_measure");
    e.calibration_tokens = g.get_uint("elastilm.calibration_tokens");
    e.layer_importance = floats("elastilm.layer_importance");
    e.kv_group_importance = floats("elastilm.kv_group_importance");
    e.neuron_importance = floats("elastilm.neuron_importance");
    return e;
}
inline void write_elastic_metadata(io::GgufWriter& g, const ElasticMetadata& e) {
    g.set_bool("elastilm.elastic", true);
    g.set_i32_array("elastilm.ratios", {e.ratios.begin(), e.ratios.end()});
    g.set_i32_array("elastilm.anchors", {e.anchors.begin(), e.anchors.end()});
    g.set_string("elastilm.importance_measure", e.importance_measure);
    g.set_u64("elastilm.calibration_tokens", e.calibration_tokens);
    g.set_f32_array("elastilm.layer_importance", e.layer_importance);
    g.set_f32_array("elastilm.kv_group_importance", e.kv_group_importance);
    g.set_f32_array("elastilm.neuron_importance", e.neuron_importance);
}

}  // namespace elastilm
