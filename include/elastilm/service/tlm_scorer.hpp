// The TLM as the Service sees it (a PromptScorer): per-token importances and the decision head's pair
// ratings for one prompt.
//
// The trunk is the served model's own 20% variant. With heads (`train_tlm`'s output, checked to belong to
// this model) both heads are used; without, the scores are the trunk's surprisal — the LLMLingua baseline —
// and the pairs are left to the orchestrator's prior. A prompt longer than the trunk's context is read in
// context-sized windows whose features are joined (each window's position feature then counts to its
// own end: an approximation only long prompts see).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "elastilm/service/service.hpp"
#include "elastilm/service/tlm.hpp"

namespace elastilm {

// Where train_tlm writes heads by default: beside the model, "<model>.tlm.gguf".
inline std::filesystem::path default_heads_path(const std::filesystem::path& model) {
    std::filesystem::path p = model;
    if (std::filesystem::is_directory(p)) return p / "tlm-heads.gguf";
    return p.replace_extension(".tlm.gguf");
}

template <ModelConfig Cfg>
class TlmScorer {
public:
    // `heads` may be empty or name a file that does not exist: the surprisal baseline is used then.
    // A heads file that exists but belongs to another model is an Error.
    TlmScorer(const Model<Cfg>& model, ThreadPool& pool, const std::filesystem::path& heads, int trunk_percent = 20)
        : tlm_(model, pool, trunk_percent) {
        if (!heads.empty() && std::filesystem::exists(heads)) {
            tlm_.use_heads(TlmHeads::load(heads), model, heads.string());
            description_ = "trunk = this model at " + std::to_string(trunk_percent) + "%, trained score + decision heads (" +
                           heads.string() + ")";
        } else {
            description_ = "trunk = this model at " + std::to_string(trunk_percent) +
                           "%, no trained heads: surprisal scores (LLMLingua-style baseline), pairs by the prior";
        }
    }

    bool has_heads() const { return tlm_.heads() != nullptr; }
    const std::string& description() const { return description_; }

    PromptAnalysis analyze(std::span<const int> ids) {
        PromptFeatures f;
        for (std::size_t done = 0; done < ids.size(); done += Cfg::context) {
            PromptFeatures w = tlm_.features(ids.subspan(done, std::min<std::size_t>(Cfg::context, ids.size() - done)));
            f.width = w.width;
            f.tokens += w.tokens;
            f.values.insert(f.values.end(), w.values.begin(), w.values.end());
        }
        PromptAnalysis a;
        a.scores = tlm_.scores(f);
        if (has_heads()) a.ratings = tlm_.rate(f);
        return a;
    }

private:
    Tlm<Cfg> tlm_;
    std::string description_;
};

}  // namespace elastilm
