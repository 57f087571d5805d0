// Hugging Face PEFT LoRA adapters: a folder with adapter_config.json and adapter_model.safetensors.
//
// Tensors are "base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight" [r, in] and
// "...lora_B.weight" [out, r] — the same row-major shapes as LoraPair::a and ::b. The config gives r,
// lora_alpha, target_modules (a list, or a string PEFT reads as a regex: then the tensors present decide)
// and use_rslora (scale alpha / sqrt(r) instead of alpha / r, kept as scale_override).
// Refused, because applying them as plain LoRA would compute something else: fan_in_fan_out (transposed
// storage), use_dora (magnitude vectors), rank_pattern / alpha_pattern (per-module ranks and scales),
// modules_to_save and bias other than "none" (they replace base weights), a peft_type other than LORA.
//
// The width ratio is elastilm's own key "elastilm_ratio" in the config, or an explicit argument. An adapter
// for a ratio below 100% fits only elastilm's sliced sub-model, not the Hugging Face model.
// Rows and columns must be in the unit order of the model the adapter is applied to: an elastic model
// has importance-reordered heads and neurons, so an adapter trained on the original checkpoint must be
// permuted the same way first (and Q/K rows follow the file's RoPE layout: HF halves vs GGUF pairs).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastilm/config.hpp"
#include "elastilm/error.hpp"
#include "elastilm/io/atomic_write.hpp"
#include "elastilm/io/json.hpp"
#include "elastilm/io/mapped_file.hpp"
#include "elastilm/io/safetensors.hpp"
#include "elastilm/io/safetensors_writer.hpp"
#include "elastilm/model/lora_adapter.hpp"
#include "elastilm/lora/pair_from_file.hpp"

namespace elastilm {

inline constexpr std::string_view kPeftConfigFile = "adapter_config.json";
inline constexpr std::string_view kPeftWeightsFile = "adapter_model.safetensors";

// rsLoRA's scale (Kalajdzievski 2023), computed one way for reading and writing so round trips are exact.
inline float rslora_scale(float alpha, int rank) { return float(double(alpha) / std::sqrt(double(rank))); }

// The module name PEFT uses for a layer matrix: "self_attn.q_proj" (kLayerMatrices' hf name without ".weight").
inline std::string peft_module(std::size_t matrix) {
    std::string s = kLayerMatrices[matrix].hf;
    return s.substr(0, s.size() - std::string_view(".weight").size());
}

// "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight" / "...lora_B.weight".
inline std::string peft_tensor_name(int layer, std::size_t matrix, bool b) {
    return "base_model.model.model.layers." + std::to_string(layer) + "." + peft_module(matrix) + (b ? ".lora_B.weight" : ".lora_A.weight");
}

// What elastilm reads from adapter_config.json.
struct PeftConfig {
    int r = 0;
    float lora_alpha = 0;
    bool use_rslora = false;
    std::optional<int> ratio;                 // "elastilm_ratio"
    std::vector<std::string> target_modules;  // empty when the config gives a regex string
};

namespace detail {

inline PeftConfig parse_peft_config_json(std::string_view text, const std::string& where) {
    const nlohmann::json j = io::parse_json(text, where);
    require(j.is_object(), where, "not a JSON object");
    auto has = [&](const char* key) { return j.contains(key) && !j[key].is_null(); };
    auto flag = [&](const char* key) {
        if (!has(key)) return false;
        require(j[key].is_boolean(), where, std::string(key) + " should be true or false");
        return j[key].get<bool>();
    };
    auto empty_or_absent = [&](const char* key, const char* why) {
        if (!has(key)) return;
        const auto& v = j[key];
        require((v.is_object() || v.is_array()) && v.empty(), where, std::string(key) + " is set: " + why + ", which elastilm does not support");
    };

    if (has("peft_type"))
        require(j["peft_type"].is_string() && j["peft_type"].get<std::string>() == "LORA", where,
                "peft_type is " + j["peft_type"].dump() + ", only \"LORA\" adapters are supported");
    require(!flag("fan_in_fan_out"), where,
            "fan_in_fan_out is true (weights stored transposed, GPT-2 Conv1D style); LLaMA adapters store [out, in], refusing");
    require(!flag("use_dora"), where, "use_dora is true: DoRA adds magnitude vectors that plain LoRA cannot apply, refusing");
    empty_or_absent("rank_pattern", "per-module ranks");
    empty_or_absent("alpha_pattern", "per-module alphas");
    empty_or_absent("modules_to_save", "it would replace base-model weights");
    if (has("bias"))
        require(j["bias"].is_string() && j["bias"].get<std::string>() == "none", where,
                "bias is " + j["bias"].dump() + ": trained biases change the base model, only \"none\" is supported");

    PeftConfig c;
    require(has("r"), where, "missing r (the LoRA rank)");
    require(j["r"].is_number_integer() && j["r"].get<long long>() >= 1 && j["r"].get<long long>() <= 65536, where,
            "r is " + j["r"].dump() + ", expected an integer in 1..65536");
    c.r = j["r"].get<int>();
    require(has("lora_alpha"), where, "missing lora_alpha");
    require(j["lora_alpha"].is_number(), where, "lora_alpha is " + j["lora_alpha"].dump() + ", expected a number");
    c.lora_alpha = j["lora_alpha"].get<float>();
    require(std::isfinite(c.lora_alpha), where, "lora_alpha is not finite");
    c.use_rslora = flag("use_rslora");
    if (has("elastilm_ratio")) {
        const auto& v = j["elastilm_ratio"];
        require(v.is_number_integer() && v.get<long long>() >= 0 && v.get<long long>() <= 100 && ratio_index(v.get<int>()) >= 0, where,
                "elastilm_ratio is " + v.dump() + ", not a compiled width ratio");
        c.ratio = v.get<int>();
    }
    require(has("target_modules"), where, "missing target_modules");
    const auto& t = j["target_modules"];
    require(t.is_string() || t.is_array(), where, "target_modules should be a list of module names or a string");
    if (t.is_array()) {
        for (const auto& e : t) {
            require(e.is_string(), where, "target_modules holds " + e.dump() + ", expected module names");
            // PEFT matches an entry against a module's full name or its dotted suffix: the last component decides.
            const std::string name = e.get<std::string>();
            const std::string last = name.substr(name.rfind('.') == std::string::npos ? 0 : name.rfind('.') + 1);
            bool known = false;
            for (std::size_t m = 0; m < kLayerMatrixCount; ++m) known |= peft_module(m).ends_with("." + last);
            require(known, where,
                    "target_modules names \"" + name + "\"; elastilm adapts only q_proj k_proj v_proj o_proj gate_proj up_proj down_proj");
            c.target_modules.push_back(last);
        }
    }
    return c;
}

}  // namespace detail

// `where` names the config file in messages. Every malformed input is an Error naming the key.
inline PeftConfig parse_peft_config(std::string_view text, const std::string& where) {
    try {
        return detail::parse_peft_config_json(text, where);
    } catch (const nlohmann::json::exception& e) {  // a type check missed above: still an Error, never a crash
        throw Error(where, std::string("malformed config: ") + e.what());
    }
}

// An adapter from the config text and safetensors bytes (kept alive by the caller); `folder` names
// both in messages. `percent` overrides nothing: if both it and elastilm_ratio are given they must agree.
template <ModelConfig Cfg>
LoraAdapter parse_peft(std::string_view config_text, std::span<const std::byte> weights, const std::vector<int>& anchors,
                       std::optional<int> percent, const std::filesystem::path& folder) {
    const std::string config_where = (folder / kPeftConfigFile).string();
    const std::string where = (folder / kPeftWeightsFile).string();
    const PeftConfig c = parse_peft_config(config_text, config_where);
    require(percent || c.ratio, config_where,
            "no width ratio: the config has no elastilm_ratio, so pass the ratio the adapter was trained for");
    require(!percent || !c.ratio || *percent == *c.ratio, config_where,
            "adapter is for the " + std::to_string(c.ratio.value_or(0)) + "% width ratio (elastilm_ratio), asked for " +
                std::to_string(percent.value_or(0)) + "%");

    LoraAdapter ad;
    ad.source = folder.string();
    ad.percent = percent ? *percent : *c.ratio;
    require(ratio_index(ad.percent) >= 0, config_where, std::to_string(ad.percent) + "% is not a compiled width ratio");
    ad.rank = c.r;
    ad.alpha = c.lora_alpha;
    ad.scale_override = c.use_rslora ? rslora_scale(c.lora_alpha, c.r) : 0.0f;

    const io::SafetensorsFile st = io::SafetensorsFile::parse(weights, where);
    detail::FoundPairs<io::SafeTensor> found(Cfg::n_layers);
    std::map<std::string, std::tuple<int, std::size_t, bool>> names;
    for (int l = 0; l < Cfg::n_layers; ++l)
        for (std::size_t m = 0; m < kLayerMatrixCount; ++m)
            for (bool b : {false, true}) names[peft_tensor_name(l, m, b)] = {l, m, b};
    for (const io::SafeTensor& t : st.tensors()) {
        auto it = names.find(t.name);
        require(it != names.end(), where,
                "unexpected tensor " + t.name + " (expected base_model.model.model.layers.N.<module>.lora_A/lora_B.weight for layers 0.." +
                    std::to_string(Cfg::n_layers - 1) + " of " + std::string(Cfg::name) + ")");
        const auto& [l, m, b] = it->second;
        if (!c.target_modules.empty()) {
            const std::string module = peft_module(m).substr(peft_module(m).rfind('.') + 1);
            require(std::find(c.target_modules.begin(), c.target_modules.end(), module) != c.target_modules.end(), where,
                    "tensor " + t.name + " adapts " + module + ", which target_modules in the config does not list");
        }
        found[l][m][b] = &t;
    }
    detail::assemble_pairs(ad, found, peft_tensor_name, where);
    validate<Cfg>(ad, anchors);
    return ad;
}

template <ModelConfig Cfg>
LoraAdapter load_peft(const std::filesystem::path& folder, const std::vector<int>& anchors, std::optional<int> percent = std::nullopt) {
    require(std::filesystem::is_directory(folder), folder.string(),
            "is not a folder (a PEFT adapter is a folder with adapter_config.json and adapter_model.safetensors)");
    const auto config_path = folder / kPeftConfigFile;
    std::ifstream in(config_path, std::ios::binary);
    require(bool(in), config_path.string(), "cannot open");
    std::stringstream text;
    text << in.rdbuf();
    const auto weights = io::MappedFile::open(folder / kPeftWeightsFile);
    return parse_peft<Cfg>(text.str(), weights->bytes(), anchors, percent, folder);
}

// Writes `ad` as a PEFT folder (created if needed) that PEFT's LoraConfig / load_adapter read: F32
// tensors, r, lora_alpha, target_modules (the matrices that have pairs), use_rslora when the adapter's
// scale is rsLoRA's, and "elastilm_ratio". `base_model` goes to base_model_name_or_path.
inline void write_peft(const LoraAdapter& ad, const std::filesystem::path& folder, const std::string& base_model = "") {
    const std::string where = folder.string();
    require(ad.rank > 0, where, "adapter rank must be positive to be written");
    // PEFT has one scale rule per file: alpha / r, or alpha / sqrt(r) with use_rslora. Any other
    // override is expressed as the alpha that gives it under alpha / r.
    const bool rslora = ad.scale_override != 0 && ad.scale_override == rslora_scale(ad.alpha, ad.rank);
    const float alpha = ad.scale_override == 0 || rslora ? ad.alpha : ad.scale_override * float(ad.rank);

    io::SafetensorsWriter st;
    st.set_metadata("format", "pt");
    std::vector<bool> targeted(kLayerMatrixCount, false);
    for (std::size_t l = 0; l < ad.layers.size(); ++l)
        for (std::size_t m = 0; m < kLayerMatrixCount; ++m) {
            const LoraPair& p = ad.layers[l].pairs[m];
            if (p.empty()) continue;
            const std::string name = LoraAdapter::tensor_name(int(l), m);
            require(p.rank == ad.rank, where, name + " has rank " + std::to_string(p.rank) + ", the adapter's is " + std::to_string(ad.rank));
            require(p.a.size() == std::size_t(p.rank) * p.cols && p.b.size() == std::size_t(p.rows) * p.rank, where,
                    name + ": lora_a/lora_b sizes do not match rank " + std::to_string(p.rank));
            st.add_tensor(peft_tensor_name(int(l), m, false), {p.rank, p.cols}, DType::f32, p.a.data());
            st.add_tensor(peft_tensor_name(int(l), m, true), {p.rows, p.rank}, DType::f32, p.b.data());
            targeted[m] = true;
        }
    nlohmann::json targets = nlohmann::json::array();
    for (std::size_t m = 0; m < kLayerMatrixCount; ++m)
        if (targeted[m]) targets.push_back(peft_module(m).substr(peft_module(m).rfind('.') + 1));
    const nlohmann::json config = {
        {"peft_type", "LORA"},
        {"task_type", "CAUSAL_LM"},
        {"base_model_name_or_path", base_model.empty() ? nlohmann::json(nullptr) : nlohmann::json(base_model)},
        {"r", ad.rank},
        {"lora_alpha", alpha},
        {"use_rslora", rslora},
        {"target_modules", targets},
        {"lora_dropout", 0.0},
        {"bias", "none"},
        {"fan_in_fan_out", false},
        {"use_dora", false},
        {"rank_pattern", nlohmann::json::object()},
        {"alpha_pattern", nlohmann::json::object()},
        {"modules_to_save", nullptr},
        {"layers_to_transform", nullptr},
        {"inference_mode", true},
        {"elastilm_ratio", ad.percent},
    };
    std::filesystem::create_directories(folder);
    st.write(folder / kPeftWeightsFile);
    const auto config_path = folder / kPeftConfigFile;
    io::write_text_atomically(config_path, config.dump(2) + "\n");
}

}  // namespace elastilm
