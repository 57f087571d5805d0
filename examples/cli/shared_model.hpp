// The trained model of ../shared/models, elasticized in memory the way cmake/demo.sh's `elasticize` call
// does it (calibration: valid.txt from token 16384, 8192 tokens, one anchor), for tools that run without
// a model argument. Takes a few seconds; the result is identical to the GGUF the script writes.
#pragma once

#include <optional>

#include "cli/tool.hpp"
#include "elastilm/elastic/elasticize.hpp"
#include "elastilm/formats/load.hpp"
#include "elastilm/model/perplexity.hpp"
#include "elastilm/tokenizer/tokenizer.hpp"

namespace elastilm::cli {

inline std::filesystem::path shared_tiny_gqa() { return shared_dir() / "models" / "tiny-gqa-15M"; }

// The elastic tiny-gqa-15M, or nothing when ../shared/models lacks it.
inline std::optional<ModelWeights> elastic_tiny_gqa(const Tokenizer& tok, int threads) {
    const auto dir = shared_tiny_gqa();
    if (!std::filesystem::exists(dir / "model.safetensors") || !std::filesystem::exists(dir / "valid.txt")) return std::nullopt;
    const ModelWeights plain = load_model<TinyGqa15M>(dir);
    const auto stream = paragraph_stream(tok, read_text((dir / "valid.txt").string()));
    constexpr std::size_t skip = 16384, tokens = 8192;
    require(stream.size() > skip + 256, (dir / "valid.txt").string(), "is too short to calibrate on");
    const auto calib = std::span<const int>(stream).subspan(skip, std::min(tokens, stream.size() - skip));
    ThreadPool pool(threads);
    return make_elastic<TinyGqa15M>(plain, measure_importance<TinyGqa15M>(plain, calib, 256, pool), ElasticizeOptions{});
}

}  // namespace elastilm::cli
