// Hugging Face LlamaConfig (config.json) → the hyper-parameters we check against a compiled config.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "elastilm/error.hpp"
#include "elastilm/io/json.hpp"
#include "elastilm/model/weights.hpp"

namespace elastilm::io {

struct HfConfig {
    FileHyperParams hparams;
    bool tied_embeddings = false;
};

inline HfConfig read_hf_config(const std::filesystem::path& path) {
    const std::string where = path.string();
    std::ifstream in(path);
    require(bool(in), where, "cannot open (a Hugging Face model needs config.json beside model.safetensors)");
    std::stringstream text;
    text << in.rdbuf();
    const nlohmann::json j = io::parse_json(text.str(), where);
    require(j.is_object(), where, "not a JSON object");
    auto integer = [&](const char* key, bool required) -> int {
        if (!j.contains(key) || j[key].is_null()) {
            require(!required, where, std::string("missing ") + key);
            return 0;
        }
        require(j[key].is_number_integer() && j[key].get<long long>() > 0 && j[key].get<long long>() < (1 << 30), where,
                std::string(key) + " must be a positive integer");
        return j[key].get<int>();
    };
    HfConfig c;
    FileHyperParams& h = c.hparams;
    h.dim = integer("hidden_size", true);
    h.hidden_dim = integer("intermediate_size", true);
    h.n_layers = integer("num_hidden_layers", true);
    h.n_heads = integer("num_attention_heads", true);
    h.n_kv_heads = j.contains("num_key_value_heads") ? integer("num_key_value_heads", true) : h.n_heads;
    h.head_dim = integer("head_dim", false);
    if (h.head_dim == 0) h.head_dim = h.dim / h.n_heads;
    h.vocab_size = integer("vocab_size", true);
    h.context = integer("max_position_embeddings", false);
    if (j.contains("rms_norm_eps") && j["rms_norm_eps"].is_number()) h.norm_eps = j["rms_norm_eps"].get<float>();
    if (j.contains("rope_theta") && j["rope_theta"].is_number()) h.rope_theta = j["rope_theta"].get<float>();
    else if (j.contains("rope_parameters") && j["rope_parameters"].is_object() && j["rope_parameters"].contains("rope_theta") &&
             j["rope_parameters"]["rope_theta"].is_number())
        h.rope_theta = j["rope_parameters"]["rope_theta"].get<float>();
    c.tied_embeddings = j.value("tie_word_embeddings", false);
    return c;
}

}  // namespace elastilm::io
