// One model file opened for a tool: its weights and the tokenizer that goes with it, then its compiled
// config. Every tool that takes -m does the same four things — load, find the tokenizer, pick the
// config, check vocabularies — so they are written once here. A GGUF is opened once for both its
// weights and its embedded vocabulary.
#pragma once

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "cli/tool.hpp"
#include "elastilm/formats/load.hpp"
#include "elastilm/tokenizer/gguf_keys.hpp"

namespace elastilm::cli {

struct ModelFile {
    ModelWeights weights;
    std::optional<Tokenizer> tokenizer;
    std::string tokenizer_source;  // where the tokenizer came from, for messages
};

struct OpenOptions {
    // A GGUF's own tokenizer.ggml.* vocabulary is used when --tokenizer is not given.
    bool gguf_vocabulary = false;
    // Without a tokenizer the tool cannot run (else `tokenizer` stays empty when none is found).
    bool tokenizer_required = true;
    // Mapped (zero-copy) or copied into memory on huge pages (--no-mmap; io/mapped_file.hpp).
    io::Residency residency = io::Residency::mapped;
};

inline bool is_gguf(const std::filesystem::path& path) {
    if (std::filesystem::is_directory(path)) return false;
    char magic[4] = {};
    std::ifstream(path, std::ios::binary).read(magic, 4);
    return std::memcmp(magic, "GGUF", 4) == 0;
}

// `tokenizer_path` is --tokenizer (empty: the GGUF's vocabulary if allowed, else tokenizer.model beside
// the model or in ../shared/models).
inline ModelFile open_model(const std::string& model_path, const std::string& tokenizer_path, OpenOptions opt = {}) {
    ModelFile f;
    if (is_gguf(model_path)) {
        const io::GgufFile g = io::GgufFile::open(model_path, opt.residency);
        f.weights = detail::load_gguf(g);
        if (opt.gguf_vocabulary && tokenizer_path.empty() && g.has("tokenizer.ggml.tokens")) {
            f.tokenizer.emplace(tokenizer_from_gguf(g));
            f.tokenizer_source = model_path;
        }
    } else {
        f.weights = load_weights(model_path, opt.residency);
    }
    if (!f.tokenizer) {
        const auto path = find_tokenizer(model_path, tokenizer_path);
        if (!path.empty()) {
            f.tokenizer.emplace(Tokenizer::from_model_file(path));
            f.tokenizer_source = path.string();
        }
    }
    require(f.tokenizer || !opt.tokenizer_required, model_path,
            opt.gguf_vocabulary ? "no vocabulary in the file and no tokenizer.model found; pass --tokenizer"
                                : "no tokenizer.model found; pass --tokenizer");
    return f;
}

// Runs body.template operator()<Cfg>() for the file's compiled config, after checking the file against
// it and the tokenizer's vocabulary against the model's.
template <class Body>
decltype(auto) with_model(const ModelFile& f, Body&& body) {
    return with_config(f.weights.hparams, f.weights.source, [&]<ModelConfig Cfg>() -> decltype(auto) {
        check_against<Cfg>(f.weights);
        if (f.tokenizer) require_same_vocabulary(f.tokenizer->vocab_size(), Cfg::vocab_size, f.tokenizer_source);
        return body.template operator()<Cfg>();
    });
}

}  // namespace elastilm::cli
