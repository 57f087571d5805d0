// A folder of per-ratio adapters, as `recover` writes it: lora-20.gguf, lora-30.gguf, … (one per ratio;
// any subset). attach_adapters() loads each one found and attaches it to the model, so every compiled
// variant runs with its own recovery adapter.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "elastilm/lora/adapter_gguf.hpp"
#include "elastilm/model/model.hpp"

namespace elastilm {

inline std::filesystem::path adapter_file(const std::filesystem::path& dir, int percent) {
    return dir / ("lora-" + std::to_string(percent) + ".gguf");
}

// Attaches every lora-P.gguf in `dir`; returns the ratios attached. An adapter that does not fit the
// model (other model, other anchors, wrong shapes, NaN) is an Error naming the file and tensor.
template <ModelConfig Cfg>
std::vector<int> attach_adapters(Model<Cfg>& model, const std::filesystem::path& dir) {
    require(std::filesystem::is_directory(dir), dir.string(), "is not a folder of adapters (lora-P.gguf files)");
    std::vector<int> attached;
    for (int percent : kRatios) {
        const auto path = adapter_file(dir, percent);
        if (!std::filesystem::exists(path)) continue;
        model.set_adapter(std::make_shared<const LoraAdapter>(load_adapter_gguf<Cfg>(path, model.anchors(), percent)));
        attached.push_back(percent);
    }
    require(!attached.empty(), dir.string(), "holds no lora-P.gguf adapter");
    return attached;
}

}  // namespace elastilm
