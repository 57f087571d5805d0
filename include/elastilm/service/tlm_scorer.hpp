// The TLM as the Service sees it (a PromptScorer): per-token importances and the decision head's pair
// ratings for one prompt.
//
// The trunk is by default the served model's own 20% variant; a separate small model of any compiled
// config with the same vocabulary can be the trunk instead (TlmScorer<Cfg, TrunkCfg>). With heads (`train_tlm`'s output, checked to belong to
// this model) both heads are used; without, the scores are the trunk's surprisal — the LLMLingua baseline —
// and the pairs are left to the orchestrator's prior. A prompt longer than the trunk's context is read in
// context-sized windows whose features are joined (each window's position feature then counts to its
// own end: an approximation only long prompts see).
//
// Its own latency is measured at construction (a few prompt lengths, fitted a + b·L + c·L²): the TLM
// computes logits at every prompt position (surprisal needs them), so it is not a 20% prefill, and the
// orchestrator must know what it costs before deciding to run it. A decision head that reads the
// prompt's context dependence (service/context_dependence.hpp) costs four more reads of the prompt by
// the trunk; they run only when its ratings are asked for, so the time is measured both ways.
#pragma once

#include <array>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include "elastilm/service/context_dependence.hpp"
#include "elastilm/service/nonnegative_fit.hpp"
#include "elastilm/service/service.hpp"
#include "elastilm/service/tlm.hpp"

namespace elastilm {

// Where train_tlm writes heads by default: beside the model, "<model>.tlm.gguf".
inline std::filesystem::path default_heads_path(const std::filesystem::path& model) {
    std::filesystem::path p = model;
    if (std::filesystem::is_directory(p)) return p / "tlm-heads.gguf";
    return p.replace_extension(".tlm.gguf");
}

template <ModelConfig Cfg, ModelConfig TrunkCfg = Cfg>
class TlmScorer {
public:
    // The served model's own sub-model as the trunk. `heads` may be empty or name a file that does not
    // exist: the surprisal baseline is used then. Heads that belong to another model are an Error.
    TlmScorer(const Model<Cfg>& model, ThreadPool& pool, const std::filesystem::path& heads, int trunk_percent = 20)
        requires std::same_as<Cfg, TrunkCfg>
        : TlmScorer(model, model, pool, heads, trunk_percent) {}

    // A separate trunk model; its vocabulary must be the served model's.
    TlmScorer(const Model<Cfg>& llm, const Model<TrunkCfg>& trunk, ThreadPool& pool, const std::filesystem::path& heads,
              int trunk_percent = 20)
        : tlm_((Tlm<TrunkCfg>::template require_same_vocabulary<Cfg>(), trunk), pool, trunk_percent) {
        const std::string what = (static_cast<const void*>(&llm) == static_cast<const void*>(&trunk)
                                      ? std::string("this model")
                                      : std::string(TrunkCfg::name)) +
                                 " at " + std::to_string(trunk_percent) + "%";
        if (!heads.empty() && std::filesystem::exists(heads)) {
            tlm_.use_heads(TlmHeads::load(heads), llm, heads.string());
            description_ = "trunk = " + what + (has_decision_head() ? ", trained score + decision heads (" : ", trained score head (") +
                           heads.string() + ", " + std::string(to_string(tlm_.feature_mode())) + " features)";
        } else {
            description_ = "trunk = " + what + ", no trained heads: surprisal scores (LLMLingua-style baseline), pairs by the prior";
        }
        measure_latency();
    }

    bool has_heads() const { return tlm_.heads() != nullptr; }
    bool has_decision_head() const { return has_heads() && tlm_.heads()->decision.trained(); }
    const std::string& description() const { return description_; }

    // Predicted time of analyze() on a prompt of `tokens`, from this device's measurement, with or
    // without the decision head's ratings.
    double predicted_ms(int tokens, bool decision_head = true) const {
        return eval_polynomial(latency_[rates_with_context(decision_head)], double(tokens));
    }

    // The scorer a Service takes; it refers to this object, which must outlive the service. With
    // `decision_head` false the trained decision head's ratings are withheld, so the orchestrator ranks
    // pairs by the PromptScorer's prior (a measured one: service/pair_prior.hpp says why that can be
    // the better choice); the score head still chooses the tokens.
    PromptScorer as_prompt_scorer(bool decision_head = true) {
        return {[this, decision_head](std::span<const int> ids, std::span<const std::uint8_t> keep) {
                    return analyze(ids, decision_head, keep);
                },
                [this, decision_head](int n) { return predicted_ms(n, decision_head); }};
    }

    // `keep`: the tokens no cut may remove (TokenizedPrompt::keep; empty: the first only), which a
    // decision head reading the context dependence needs.
    PromptAnalysis analyze(std::span<const int> ids, bool decision_head = true, std::span<const std::uint8_t> keep = {}) {
        PromptFeatures f;
        for (std::size_t done = 0; done < ids.size(); done += TrunkCfg::context) {
            PromptFeatures w = tlm_.features(ids.subspan(done, std::min<std::size_t>(TrunkCfg::context, ids.size() - done)));
            f.width = w.width;
            f.tokens += w.tokens;
            f.values.insert(f.values.end(), w.values.begin(), w.values.end());
        }
        PromptAnalysis a;
        a.scores = tlm_.scores(f);
        if (!has_decision_head() || !decision_head) return a;
        const DecisionHead& head = tlm_.heads()->decision;
        if (!head.reads_context()) {
            a.ratings = tlm_.rate(f, a.scores);
            return a;
        }
        std::vector<float> pooled = DecisionHead::pooled(f, a.scores);
        const auto context = context_dependence(tlm_, ids, keep, std::span<const float>(a.scores));
        pooled.insert(pooled.end(), context.begin(), context.end());
        a.ratings = head.rate_pooled(pooled);
        return a;
    }

private:
    bool rates_with_context(bool decision_head) const {
        return decision_head && has_decision_head() && tlm_.heads()->decision.reads_context();
    }

    // Without the decision head's context reads, and with them when the head has them.
    void measure_latency() {
        latency_[0] = measure_analyze(false);
        latency_[1] = rates_with_context(true) ? measure_analyze(true) : latency_[0];
    }

    // Median of 3 timings at 4 lengths up to 256 tokens (or the context), after a warm-up run. Longer
    // prompts are extrapolated: measuring a 1B model's TLM at 2048 tokens would take a minute at start-up.
    std::vector<double> measure_analyze(bool decision_head) {
        using clock = std::chrono::steady_clock;
        constexpr int longest = std::min(TrunkCfg::context, 256);
        std::vector<int> probe(longest);
        for (int i = 0; i < longest; ++i) probe[i] = 3 + (i * 7919) % (TrunkCfg::vocab_size - 3);
        analyze(std::span<const int>(probe).first(std::min(longest, 16)), decision_head);
        std::vector<double> lengths, ms;
        for (int L : {std::min(longest, 16), std::max(1, longest / 4), std::max(1, longest / 2), longest}) {
            std::vector<double> t;
            for (int r = 0; r < 3; ++r) {
                const auto t0 = clock::now();
                analyze(std::span<const int>(probe).first(L), decision_head);
                t.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
            }
            std::sort(t.begin(), t.end());
            lengths.push_back(L);
            ms.push_back(std::max(t[1], 1e-6));
        }
        return fit_nonnegative_polynomial(lengths, ms, 2);
    }

    Tlm<TrunkCfg> tlm_;
    std::string description_;
    std::array<std::vector<double>, 2> latency_;  // [rated with the context features]: ms = Σ latency_[i]·L^i
};

}  // namespace elastilm
