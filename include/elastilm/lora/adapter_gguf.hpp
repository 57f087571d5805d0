// A per-ratio LoRA adapter as a GGUF file, one file per width ratio.
//
// Follows llama.cpp's LoRA adapter convention so the 100% adapter of a plain model also loads there:
//   general.architecture = "llama", general.type = "adapter", adapter.type = "lora",
//   adapter.lora.alpha (f32; llama.cpp scales by alpha / rank, so this is the effective scale · rank),
//   tensors "blk.N.<matrix>.lora_a" with GGUF ne [in, rank] (row-major [rank, in]) and
//           "blk.N.<matrix>.lora_b" with ne [rank, out] (row-major [out, rank]), F32 written, F16 read.
// plus our keys, which make an adapter for another model, ratio or anchor set a clear error:
//   elastilm.lora.ratio (u32 percent), elastilm.lora.rank (u32), elastilm.lora.alpha (f32, as trained),
//   elastilm.lora.scale (f32 scale_override, 0 = alpha / rank), elastilm.lora.model (config name),
//   elastilm.lora.n_layers, .dim, .vocab (u32), elastilm.lora.anchors (i32[]).
// Matrices without tensors have rank 0 (no adapter).
//
// Rows and columns are in the unit order of the model the adapter was trained on (an elastic model's
// importance-reordered heads and neurons, and its file's Q/K RoPE row layout).
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/error.hpp"
#include "elastilm/io/gguf.hpp"
#include "elastilm/io/gguf_writer.hpp"
#include "elastilm/model/lora_adapter.hpp"
#include "elastilm/lora/pair_from_file.hpp"

namespace elastilm {

// What an adapter file records about the model it belongs to.
struct LoraModelIdentity {
    std::string config;  // ModelConfig::name
    int n_layers = 0, dim = 0, vocab = 0;
    std::vector<int> anchors;  // layers kept at full width at every ratio
};

template <ModelConfig Cfg>
LoraModelIdentity lora_identity(const std::vector<int>& anchors) {
    std::vector<int> sorted = anchors;
    std::sort(sorted.begin(), sorted.end());
    return {std::string(Cfg::name), Cfg::n_layers, Cfg::dim, Cfg::vocab_size, sorted};
}

// "blk.3.attn_q.weight.lora_a" / ".lora_b".
inline std::string lora_tensor_name(int layer, std::size_t matrix, bool b) {
    return LoraAdapter::tensor_name(layer, matrix) + (b ? ".lora_b" : ".lora_a");
}

namespace detail {

inline std::string ints_string(const std::vector<int>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
}

// Every "blk.N.<matrix>.lora_a|b" name of an n_layers model → (layer, matrix, is_b).
inline std::map<std::string, std::tuple<int, std::size_t, bool>> lora_tensor_names(int n_layers) {
    std::map<std::string, std::tuple<int, std::size_t, bool>> names;
    for (int l = 0; l < n_layers; ++l)
        for (std::size_t m = 0; m < kLayerMatrixCount; ++m)
            for (bool b : {false, true}) names[lora_tensor_name(l, m, b)] = {l, m, b};
    return names;
}

// Sizes consistent with rank/rows/cols; checked before writing so a file never lies about its shapes.
inline void check_pair_sizes(const LoraAdapter& ad, const std::string& where) {
    for (std::size_t l = 0; l < ad.layers.size(); ++l)
        for (std::size_t m = 0; m < kLayerMatrixCount; ++m) {
            const LoraPair& p = ad.layers[l].pairs[m];
            if (p.empty()) continue;
            const std::string name = LoraAdapter::tensor_name(int(l), m);
            require(p.rank == ad.rank, where,
                    name + " has rank " + std::to_string(p.rank) + ", the adapter's rank is " + std::to_string(ad.rank));
            require(p.rows > 0 && p.cols > 0 && p.a.size() == std::size_t(p.rank) * p.cols && p.b.size() == std::size_t(p.rows) * p.rank,
                    where, name + ": lora_a/lora_b sizes do not match rank " + std::to_string(p.rank) + " and shape " +
                               std::to_string(p.rows) + "x" + std::to_string(p.cols));
        }
}

// Adds the pairs' tensors of `ad` to `g`; `suffix` follows the lora_a/lora_b name (optimizer state).
inline void add_lora_tensors(io::GgufWriter& g, const LoraAdapter& ad, const std::string& suffix = "") {
    for (std::size_t l = 0; l < ad.layers.size(); ++l)
        for (std::size_t m = 0; m < kLayerMatrixCount; ++m) {
            const LoraPair& p = ad.layers[l].pairs[m];
            if (p.empty()) continue;
            g.add_tensor(lora_tensor_name(int(l), m, false) + suffix, {p.rank, p.cols}, DType::f32, p.a.data());
            g.add_tensor(lora_tensor_name(int(l), m, true) + suffix, {p.rows, p.rank}, DType::f32, p.b.data());
        }
}

}  // namespace detail

// `train_step`: set on training checkpoints (elastilm.lora.train_step), so that the optimizer state saved
// beside it can be checked to belong to the same step.
inline void write_adapter_gguf(const LoraAdapter& ad, const std::filesystem::path& path, const LoraModelIdentity& model,
                               std::optional<std::uint64_t> train_step = std::nullopt) {
    const std::string where = path.string();
    require(ad.rank > 0, where, "adapter rank must be positive to be written");
    require(ratio_index(ad.percent) >= 0, where, std::to_string(ad.percent) + "% is not a compiled width ratio");
    require(int(ad.layers.size()) == model.n_layers, where,
            "adapter has " + std::to_string(ad.layers.size()) + " layers, the model (" + model.config + ") has " +
                std::to_string(model.n_layers));
    detail::check_pair_sizes(ad, where);
    std::vector<int> anchors = model.anchors;
    std::sort(anchors.begin(), anchors.end());

    io::GgufWriter g;
    g.set_string("general.architecture", "llama");
    g.set_string("general.type", "adapter");
    g.set_string("general.name", "elastilm LoRA " + model.config + " " + std::to_string(ad.percent) + "%");
    g.set_string("adapter.type", "lora");
    g.set_f32("adapter.lora.alpha", ad.scale() * float(ad.rank));
    g.set_u32("elastilm.lora.ratio", std::uint32_t(ad.percent));
    g.set_u32("elastilm.lora.rank", std::uint32_t(ad.rank));
    g.set_f32("elastilm.lora.alpha", ad.alpha);
    g.set_f32("elastilm.lora.scale", ad.scale_override);
    g.set_string("elastilm.lora.model", model.config);
    g.set_u32("elastilm.lora.n_layers", std::uint32_t(model.n_layers));
    g.set_u32("elastilm.lora.dim", std::uint32_t(model.dim));
    g.set_u32("elastilm.lora.vocab", std::uint32_t(model.vocab));
    g.set_i32_array("elastilm.lora.anchors", {anchors.begin(), anchors.end()});
    if (train_step) g.set_u64("elastilm.lora.train_step", *train_step);
    detail::add_lora_tensors(g, ad);
    g.write(path);
}

// The same, for model Cfg with `anchors`: the adapter is validated first, so a wrongly shaped or NaN
// adapter is never written.
template <ModelConfig Cfg>
void write_adapter_gguf(const LoraAdapter& ad, const std::filesystem::path& path, const std::vector<int>& anchors) {
    validate<Cfg>(ad, anchors);
    write_adapter_gguf(ad, path, lora_identity<Cfg>(anchors));
}

// Parses an adapter GGUF held in `bytes` (kept alive by the caller) for model Cfg with `anchors`;
// `percent`, when given, is the ratio the caller wants, and any other ratio is refused.
template <ModelConfig Cfg>
LoraAdapter parse_adapter_gguf(std::span<const std::byte> bytes, const std::string& where, const std::vector<int>& anchors,
                               std::optional<int> percent = std::nullopt) {
    const io::GgufFile g = io::GgufFile::parse(bytes, where);
    require(g.has("general.type") && g.get_string("general.type") == "adapter", where,
            "is not a LoRA adapter (general.type is " + (g.has("general.type") ? "\"" + g.get_string("general.type") + "\"" : "missing") +
                ", expected \"adapter\")");
    require(g.get_string("adapter.type") == "lora", where, "adapter.type is \"" + g.get_string("adapter.type") + "\", only lora is supported");
    const std::string arch = g.has("general.architecture") ? g.get_string("general.architecture") : "llama";
    require(arch == "llama", where, "general.architecture is \"" + arch + "\", expected \"llama\"");
    require(g.has("elastilm.lora.ratio"), where,
            "has no elastilm.lora.ratio: not an elastilm adapter, so its width ratio and model are unknown");

    // Model identity first: another model's adapter gets one clear sentence, not a shape error.
    const LoraModelIdentity want = lora_identity<Cfg>(anchors);
    const std::string model = g.get_string("elastilm.lora.model");
    require(model == want.config, where, "adapter is for model " + model + ", this model is " + want.config);
    auto same = [&](const char* key, int expected) {
        const std::uint64_t got = g.get_uint(key);
        require(got == std::uint64_t(expected), where,
                std::string(key) + " is " + std::to_string(got) + ", the model (" + want.config + ") has " + std::to_string(expected) +
                    ": the adapter is for another model");
    };
    same("elastilm.lora.n_layers", want.n_layers);
    same("elastilm.lora.dim", want.dim);
    same("elastilm.lora.vocab", want.vocab);
    std::vector<int> file_anchors;
    for (double a : g.get_numbers("elastilm.lora.anchors")) file_anchors.push_back(int(a));
    std::sort(file_anchors.begin(), file_anchors.end());
    require(file_anchors == want.anchors, where,
            "adapter was trained with anchor layers " + detail::ints_string(file_anchors) + ", the model has " +
                detail::ints_string(want.anchors));

    LoraAdapter ad;
    ad.source = where;
    const std::uint64_t ratio = g.get_uint("elastilm.lora.ratio");
    require(ratio <= 100 && ratio_index(int(ratio)) >= 0, where,
            "elastilm.lora.ratio is " + std::to_string(ratio) + "%, not a compiled width ratio");
    ad.percent = int(ratio);
    require(!percent || *percent == ad.percent, where,
            "adapter is for the " + std::to_string(ad.percent) + "% width ratio, asked for " + std::to_string(percent.value_or(0)) + "%");
    const std::uint64_t rank = g.get_uint("elastilm.lora.rank");
    require(rank >= 1 && rank <= 65536, where, "elastilm.lora.rank is " + std::to_string(rank) + ", expected 1..65536");
    ad.rank = int(rank);
    ad.alpha = float(g.get_float("elastilm.lora.alpha"));
    ad.scale_override = g.has("elastilm.lora.scale") ? float(g.get_float("elastilm.lora.scale")) : 0.0f;
    require(std::isfinite(ad.alpha) && std::isfinite(ad.scale_override), where, "elastilm.lora.alpha or .scale is not finite");

    const auto names = detail::lora_tensor_names(Cfg::n_layers);
    detail::FoundPairs<io::GgufTensor> found(Cfg::n_layers);
    for (const io::GgufTensor& t : g.tensors()) {
        auto it = names.find(t.name);
        require(it != names.end(), where,
                "unexpected tensor " + t.name + " (an adapter holds blk.N.<matrix>.lora_a / .lora_b for layers 0.." +
                    std::to_string(Cfg::n_layers - 1) + ")");
        const auto& [l, m, b] = it->second;
        found[l][m][b] = &t;
    }
    detail::assemble_pairs(ad, found, lora_tensor_name, where);
    validate<Cfg>(ad, anchors);
    return ad;
}

template <ModelConfig Cfg>
LoraAdapter load_adapter_gguf(const std::filesystem::path& path, const std::vector<int>& anchors,
                              std::optional<int> percent = std::nullopt) {
    const auto file = io::MappedFile::open(path);
    return parse_adapter_gguf<Cfg>(file->bytes(), file->path(), anchors, percent);
}

}  // namespace elastilm
