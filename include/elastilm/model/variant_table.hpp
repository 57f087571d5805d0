// The variant table: one precompiled forward pass per width ratio, indexed at run time.
//
// Built at compile time from kRatios with an index_sequence, so choosing a sub-model for a request is
// one array index — no allocation, no weight movement, no shape logic between request and kernels.
#pragma once

#include <array>
#include <string>
#include <utility>

#include "elastilm/model/forward.hpp"

namespace elastilm {

template <ModelConfig Cfg>
using ForwardFn = void (*)(const Model<Cfg>&, KvCache<Cfg>&, std::span<const int>, int, Activations<Cfg>&, float*,
                           Logits, ThreadPool&);

template <ModelConfig Cfg>
using VariantTable = std::array<ForwardFn<Cfg>, kRatios.size()>;

// A config's nine forward passes. A class with an out-of-line member, so that a program can compile them
// once: `template struct Variants<Cfg>;` in one translation unit and `extern template struct
// Variants<Cfg>;` in the others (the forward passes are most of the code a tool generates per config).
template <ModelConfig Cfg>
struct Variants {
    static const VariantTable<Cfg>& table();
};

template <ModelConfig Cfg>
const VariantTable<Cfg>& Variants<Cfg>::table() {
    static constexpr VariantTable<Cfg> t = []<std::size_t... I>(std::index_sequence<I...>) {
        return VariantTable<Cfg>{&forward<Cfg, kRatios[I]>...};
    }(std::make_index_sequence<kRatios.size()>{});
    return t;
}

// elastilm's own programs (tools, benches, tests) link the known configs' forward passes from one small
// library, examples/cli/variants.cpp.in, instead of compiling all of them in each program: a build-system
// switch, since "compiled elsewhere" is not something a template can say. A host app defines nothing and
// compiles the configs it uses.
#if defined(ELASTILM_EXTERN_VARIANTS)
extern template struct Variants<Stories260K>;
extern template struct Variants<TinyGqa15M>;
extern template struct Variants<Docs95M>;
extern template struct Variants<DocsTlm15M>;
extern template struct Variants<TinyLlama1B>;
extern template struct Variants<OpenLlama3B>;
extern template struct Variants<Llama2_7B>;
#endif

// The forward pass for `percent`, or an Error naming the compiled ratios.
template <ModelConfig Cfg>
ForwardFn<Cfg> variant(int percent) {
    const int i = ratio_index(percent);
    if (i < 0) {
        std::string list;
        for (int r : kRatios) list += (list.empty() ? "" : ", ") + std::to_string(r);
        throw Error("ratio", std::to_string(percent) + "% is not a compiled width ratio (compiled: " + list + ")");
    }
    return Variants<Cfg>::table()[i];
}

// Runtime mirrors of the constexpr widths, for reporting and for the orchestrator.
struct WidthInfo {
    int percent, heads, kv_heads, hidden;
};

template <ModelConfig Cfg>
inline constexpr std::array<WidthInfo, kRatios.size()> width_table = []<std::size_t... I>(std::index_sequence<I...>) {
    return std::array<WidthInfo, kRatios.size()>{WidthInfo{kRatios[I], Width<Cfg, kRatios[I]>::heads,
                                                           Width<Cfg, kRatios[I]>::kv_heads, Width<Cfg, kRatios[I]>::hidden}...};
}(std::make_index_sequence<kRatios.size()>{});

}  // namespace elastilm
