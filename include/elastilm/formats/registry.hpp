// From a file's hyper-parameters to the compiled config that matches them.
//
// Tools (generate, perplexity, elasticize …) accept any model file; the engine's shapes are compile-time,
// so the tool calls `with_config(hparams, fn)` which invokes fn.template operator()<Cfg>() for the one
// compiled config whose shape equals the file's, or throws naming the closest config's first mismatch.
#pragma once

#include <cmath>
#include <string>
#include <tuple>

#include "elastilm/config.hpp"
#include "elastilm/error.hpp"
#include "elastilm/model/weights.hpp"

namespace elastilm {

using KnownConfigs = std::tuple<Stories260K, TinyGqa15M, Docs95M, DocsTlm15M, TinyLlama1B, OpenLlama3B, Llama2_7B>;

// The first field where `h` differs from Cfg, as "field is X in the file but Y in config Name", or "".
template <ModelConfig Cfg>
std::string first_mismatch(const FileHyperParams& h) {
    auto field = [&](const char* name, auto file, auto cfg) -> std::string {
        return std::string(name) + " is " + std::to_string(file) + " in the file but " + std::to_string(cfg) +
               " in config " + std::string(Cfg::name);
    };
    if (h.dim != Cfg::dim) return field("dim", h.dim, Cfg::dim);
    if (h.hidden_dim != Cfg::hidden_dim) return field("hidden_dim", h.hidden_dim, Cfg::hidden_dim);
    if (h.n_layers != Cfg::n_layers) return field("n_layers", h.n_layers, Cfg::n_layers);
    if (h.n_heads != Cfg::n_heads) return field("n_heads", h.n_heads, Cfg::n_heads);
    if (h.n_kv_heads != Cfg::n_kv_heads) return field("n_kv_heads", h.n_kv_heads, Cfg::n_kv_heads);
    if (h.head_dim != 0 && h.head_dim != Cfg::head_dim) return field("head_dim", h.head_dim, Cfg::head_dim);
    if (h.vocab_size != Cfg::vocab_size) return field("vocab_size", h.vocab_size, Cfg::vocab_size);
    if (h.context != 0 && h.context != Cfg::context) return field("context", h.context, Cfg::context);
    auto differs = [](float file, float cfg) { return file != 0 && std::fabs(file - cfg) > 1e-3f * std::fabs(cfg); };
    if (differs(h.rope_theta, Cfg::rope_theta)) return field("rope_theta", h.rope_theta, Cfg::rope_theta);
    if (differs(h.norm_eps, Cfg::norm_eps)) return field("norm_eps", h.norm_eps, Cfg::norm_eps);
    return {};
}

// Whether one of Candidates (a std::tuple of configs) has the file's shape.
template <class Candidates = KnownConfigs>
bool has_config_among(const FileHyperParams& h) {
    return []<class... C>(std::tuple<C...>*, const FileHyperParams& hp) { return (first_mismatch<C>(hp).empty() || ...); }(
        (Candidates*)nullptr, h);
}

// Candidates is the tuple of configs tried, KnownConfigs unless a tool needs fewer (a TLM trunk is tried
// only among the configs that can be one: compiling fn for every config pair would be wasted work).
template <class Candidates = KnownConfigs, class Fn>
decltype(auto) with_config(const FileHyperParams& h, const std::string& source, Fn&& fn) {
    using Result = decltype(fn.template operator()<Stories260K>());
    std::string closest;
    int closest_rank = -1;
    bool found = false;
    auto try_one = [&]<ModelConfig Cfg>(Result* out) {
        if (found) return;
        const std::string why = first_mismatch<Cfg>(h);
        if (why.empty()) {
            found = true;
            if constexpr (std::is_void_v<Result>) fn.template operator()<Cfg>();
            else *out = fn.template operator()<Cfg>();
            return;
        }
        // Rank configs by how many leading fields matched (dim first), to report the nearest one.
        const int rank = int(h.dim == Cfg::dim) * 4 + int(h.n_layers == Cfg::n_layers) * 2 + int(h.vocab_size == Cfg::vocab_size);
        if (rank > closest_rank) { closest_rank = rank; closest = why; }
    };
    if constexpr (std::is_void_v<Result>) {
        [&]<class... C>(std::tuple<C...>*) { (try_one.template operator()<C>(nullptr), ...); }((Candidates*)nullptr);
        require(found, source, "no compiled config has this model's shape (nearest: " + closest + ")");
    } else {
        Result r{};
        [&]<class... C>(std::tuple<C...>*) { (try_one.template operator()<C>(&r), ...); }((Candidates*)nullptr);
        require(found, source, "no compiled config has this model's shape (nearest: " + closest + ")");
        return r;
    }
}

}  // namespace elastilm
