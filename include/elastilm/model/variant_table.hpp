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
inline constexpr std::array<ForwardFn<Cfg>, kRatios.size()> variant_table =
    []<std::size_t... I>(std::index_sequence<I...>) {
        return std::array<ForwardFn<Cfg>, kRatios.size()>{&forward<Cfg, kRatios[I]>...};
    }(std::make_index_sequence<kRatios.size()>{});

// The forward pass for `percent`, or an Error naming the compiled ratios.
template <ModelConfig Cfg>
ForwardFn<Cfg> variant(int percent) {
    const int i = ratio_index(percent);
    if (i < 0) {
        std::string list;
        for (int r : kRatios) list += (list.empty() ? "" : ", ") + std::to_string(r);
        throw Error("ratio", std::to_string(percent) + "% is not a compiled width ratio (compiled: " + list + ")");
    }
    return variant_table<Cfg>[i];
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
