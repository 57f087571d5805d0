// How much a prompt's continuation depends on the context a cut would remove, as the TLM's trunk sees
// it: features for the decision head that the pooled statistics of DecisionHead::pooled lack.
//
// The decision head must say, per prompt, how much this prompt loses when compressed or answered by a
// narrower model. Pooled statistics of the score head's importances and of the hidden states explained
// almost none of that out of fold (README, 240 labelled items), and the head tied the measured prior.
// What compression costs an answer is how far the continuation's distribution moves when the cut tokens
// are gone, and the trunk is a language model that can say so directly: run it on the cut prompt and
// compare its next-token distribution with the whole prompt's (the whole prompt's is the one the
// trunk's feature pass just computed). The trunk is 6.6× smaller than docs-95M; the four extra reads it
// makes of each prompt are in the time TlmScorer measures for its ratings.
//
//   0 entropy of p(next | whole prompt)              how predictable the continuation is
//   1 log(1 + KL(p_whole ‖ p_cut to 50 % by the scores))   what the TLM's own half cut changes
//   2 log(1 + KL(p_whole ‖ p_cut to 20 % by the scores))
//   3 log(1 + KL(p_whole ‖ p_latest 50 %))               what a recency cut changes
//   4 log(1 + KL(p_whole ‖ p_protected tokens only))     how much the context matters at all
// The logarithm compresses the divergences' range, which a linear (ridge) fit is sensitive to: on 240
// items the head with log(1 + KL) beat the prior at 7 of 9 budgets, with the plain divergences at 6
// (README).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "elastilm/service/prompt_compression.hpp"
#include "elastilm/service/tlm.hpp"

namespace elastilm {

// Σ p log(p/q) of two log-probability rows of the same vocabulary.
inline double kl_divergence(std::span<const float> log_p, std::span<const float> log_q) {
    require(log_p.size() == log_q.size(), "kl_divergence", "the two distributions must cover one vocabulary");
    double kl = 0;
    for (std::size_t i = 0; i < log_p.size(); ++i) kl += std::exp(double(log_p[i])) * (double(log_p[i]) - double(log_q[i]));
    return std::max(kl, 0.0);  // rounding may leave −1e-9 when the two are equal
}

inline double entropy_of(std::span<const float> log_p) {
    double h = 0;
    for (float l : log_p) h -= std::exp(double(l)) * double(l);
    return h;
}

// The features of the file comment for the prompt `ids`, whose `keep` flags mark the tokens no cut may
// remove (empty: only the first token, BOS), with the score head's importances `scores` choosing the
// TLM's cuts.
template <ModelConfig TrunkCfg>
std::array<float, kContextDependenceFeatures> context_dependence(Tlm<TrunkCfg>& tlm, std::span<const int> ids,
                                                                 std::span<const std::uint8_t> keep, std::span<const float> scores) {
    require(!ids.empty(), "context_dependence", "the prompt is empty");
    std::vector<std::uint8_t> first_only;
    if (keep.empty()) {
        first_only.assign(ids.size(), 0);
        first_only[0] = 1;
        keep = first_only;
    }
    require(keep.size() == ids.size(), "context_dependence", "needs a keep flag per prompt token");
    require(scores.size() == ids.size(), "context_dependence", "needs an importance per prompt token");
    // A prompt longer than the trunk's context is read by its latest context-sized window, as is any cut.
    auto next_after = [&](std::span<const int> s) {
        return tlm.next_token_log_probs(s.last(std::min<std::size_t>(s.size(), std::size_t(TrunkCfg::context))));
    };
    const std::vector<float> whole = next_after(ids);
    auto moved_by = [&](const std::vector<int>& cut) { return float(std::log1p(kl_divergence(whole, next_after(cut)))); };
    std::vector<int> protected_only;
    for (std::size_t i = 0; i < ids.size(); ++i)
        if (keep[i]) protected_only.push_back(ids[i]);
    if (protected_only.empty()) protected_only.push_back(ids.back());  // nothing protected: the last token alone
    return {float(entropy_of(whole)),  // one feature a line, as the file comment lists them
            moved_by(cut_prompt(ids, 50, PromptCut::scores, scores, keep)),
            moved_by(cut_prompt(ids, 20, PromptCut::scores, scores, keep)),
            moved_by(cut_prompt(ids, 50, PromptCut::recency, {}, keep)),
            moved_by(protected_only)};
}

}  // namespace elastilm
