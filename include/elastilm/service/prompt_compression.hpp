// Prompt compression (ElastiLM §4, prompt elasticity): keep the most important tokens of a prompt, in
// their original order, so prefill runs on fewer tokens.
//
// Importance comes from the TLM's score head (service/tlm.hpp) or, without a trained head, from the
// LLMLingua-style baseline: a token the small model finds surprising carries information, so its
// surprisal −log p(token | prefix) is its importance. Or from position alone (PromptCut::recency): the
// latest tokens, what a continuation of the prompt's last lines depends on most, at no cost at all.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/error.hpp"
#include "elastilm/ops/softmax.hpp"

namespace elastilm {

// Tokens compression never drops. Defaults are the LLaMA/SentencePiece ids; from(tokenizer) reads them.
struct SpecialTokens {
    int unk = 0, bos = 1, eos = 2;

    template <class Tok>
    static SpecialTokens from(const Tok& tok) {
        SpecialTokens s{0, tok.bos_id(), tok.eos_id()};
        if constexpr (requires { tok.vocabulary().unk_id; }) s.unk = tok.vocabulary().unk_id;
        return s;
    }
    bool contains(int id) const { return id == unk || id == bos || id == eos; }
};

// How a compressing plan chooses the tokens it keeps.
enum class PromptCut : std::uint8_t {
    scores,   // the highest importances the TLM gives (it must read the prompt first)
    recency,  // the most recent tokens: no TLM, nothing to pay before prefill
};

// Importances by position alone, later higher: compress() with them keeps the most recent tokens.
inline std::vector<float> recency_scores(std::size_t length) {
    std::vector<float> s(length);
    std::iota(s.begin(), s.end(), 0.0f);
    return s;
}

struct CompressedPrompt {
    std::vector<int> ids;   // the kept tokens, in prompt order
    std::vector<int> kept;  // their positions in the original prompt, ascending
};

// How many tokens a prompt of `length` keeps at `keep_percent`% when `forced` of them must stay:
// round(keep_percent × length / 100), half up, but never fewer than the forced ones.
inline int kept_count(int length, int keep_percent, int forced) {
    return std::max(forced, (keep_percent * length + 50) / 100);
}

// Keeps the highest-scoring tokens of `prompt`. Special tokens and tokens whose `protected_mask` entry
// is non-zero (the instruction or question the caller must not lose) are always kept; the rest compete
// on score, ties going to the earlier token; a NaN score ranks lowest. `protected_mask` is empty (none
// protected) or one entry per token.
inline CompressedPrompt compress(std::span<const int> prompt, int keep_percent, std::span<const float> scores,
                                 std::span<const std::uint8_t> protected_mask = {}, const SpecialTokens& special = {}) {
    const int n = int(prompt.size());
    require(n > 0, "compress", "the prompt is empty");
    require(ratio_index(keep_percent) >= 0, "compress",
            "keep ratio " + std::to_string(keep_percent) + "% is not one of the compiled ratios (20, 30, …, 100)");
    require(int(scores.size()) == n, "compress",
            "got " + std::to_string(scores.size()) + " scores for a prompt of " + std::to_string(n) + " tokens");
    require(protected_mask.empty() || int(protected_mask.size()) == n, "compress",
            "protected mask has " + std::to_string(protected_mask.size()) + " entries for a prompt of " + std::to_string(n) + " tokens");
    std::vector<char> keep(n, 0);
    std::vector<int> candidates;
    int forced = 0;
    for (int i = 0; i < n; ++i) {
        if (special.contains(prompt[i]) || (!protected_mask.empty() && protected_mask[i])) {
            keep[i] = 1;
            ++forced;
        } else {
            candidates.push_back(i);
        }
    }
    const int target = kept_count(n, keep_percent, forced);
    auto rank = [&](int i) { return std::isnan(scores[i]) ? -std::numeric_limits<float>::infinity() : scores[i]; };
    const int extra = std::min(int(candidates.size()), target - forced);
    std::partial_sort(candidates.begin(), candidates.begin() + extra, candidates.end(), [&](int a, int b) {
        return rank(a) != rank(b) ? rank(a) > rank(b) : a < b;
    });
    for (int k = 0; k < extra; ++k) keep[candidates[k]] = 1;
    CompressedPrompt out;
    for (int i = 0; i < n; ++i)
        if (keep[i]) {
            out.ids.push_back(prompt[i]);
            out.kept.push_back(i);
        }
    return out;
}

// The tokens a plan keeps of `prompt` at `keep_percent`%, cut as `cut` says: by `tlm_scores` (which a
// PromptCut::scores cut needs; the other cuts ignore them) or by recency. 100 % keeps the prompt whole.
// `keep_mask` marks the tokens never dropped, special tokens included, so no special ids are needed here.
inline std::vector<int> cut_prompt(std::span<const int> prompt, int keep_percent, PromptCut cut, std::span<const float> tlm_scores,
                                   std::span<const std::uint8_t> keep_mask = {}) {
    if (keep_percent == 100) return {prompt.begin(), prompt.end()};
    const std::vector<float> recency = cut == PromptCut::recency ? recency_scores(prompt.size()) : std::vector<float>{};
    const std::span<const float> scores = cut == PromptCut::recency ? std::span<const float>(recency) : tlm_scores;
    return compress(prompt, keep_percent, scores, keep_mask, SpecialTokens{-1, -1, -1}).ids;
}

// log softmax(row)[id].
inline double log_softmax_at(std::span<const float> row, int id) { return double(row[id]) - log_sum_exp(row.data(), int(row.size())); }

// −log p(tokens[i] | tokens[<i]) from the logits a model produced while reading `tokens`:
// `logits` holds one row of `vocab` per token, row i predicting token i + 1. Token 0 has no prefix; it
// gets `first` (the caller's choice: the previous chunk's prediction, or a neutral value).
inline std::vector<float> token_surprisal(std::span<const float> logits, std::span<const int> tokens, int vocab, float first = 0) {
    require(logits.size() == tokens.size() * std::size_t(vocab), "token_surprisal", "needs one logit row per token");
    std::vector<float> out(tokens.size());
    if (tokens.empty()) return out;
    out[0] = first;
    for (std::size_t i = 1; i < tokens.size(); ++i) out[i] = float(-log_softmax_at(logits.subspan((i - 1) * vocab, vocab), tokens[i]));
    return out;
}

}  // namespace elastilm
