// Self-induced labels for the TLM heads: the target LLM labels its own calibration data (ElastiLM §4.2),
// so no human annotation and no bigger teacher are needed.
//
// A calibration example is a prompt P (starting at a paragraph's BOS) followed by the text's own
// continuation Y. Two label kinds:
//  * token importance (score head): label_i = NLL_100%(Y | P without token i) − NLL_100%(Y | P), the
//    full model's mean loss increase on Y when token i is dropped. With span s > 1 the prompt is cut into
//    s-token spans, each span is dropped at once and every token in it shares that label (s× cheaper).
//  * pair quality (decision head): for every (prompt ratio p, model ratio m), the mean log-likelihood of
//    Y when P is compressed to p% with the score head and both prefill and teacher-forced Y run at m%.
#pragma once

#include <array>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "elastilm/model/session.hpp"
#include "elastilm/service/prompt_compression.hpp"
#include "elastilm/service/tlm.hpp"

namespace elastilm {

struct CalibrationExample {
    std::vector<int> prompt, continuation;
};

// Up to `count` examples from a paragraph stream (BOS + ids per paragraph): each starts at a BOS and
// takes prompt_len + cont_len consecutive tokens (it may run into the next paragraphs); the next one
// starts at the first BOS after it, so examples never overlap.
inline std::vector<CalibrationExample> calibration_examples(std::span<const int> stream, int count, int prompt_len, int cont_len,
                                                            int bos = 1) {
    require(prompt_len >= 2 && cont_len >= 1, "calibration_examples", "needs prompt_len >= 2 and cont_len >= 1");
    std::vector<CalibrationExample> out;
    const std::size_t len = std::size_t(prompt_len) + cont_len;
    std::size_t i = 0;
    while (int(out.size()) < count) {
        while (i < stream.size() && stream[i] != bos) ++i;
        if (i + len > stream.size()) break;
        out.push_back({{stream.begin() + i, stream.begin() + i + prompt_len}, {stream.begin() + i + prompt_len, stream.begin() + i + len}});
        i += len;
    }
    return out;
}

// As above, with prompt lengths cycling through `prompt_lens` (example k takes prompt_lens[k % size]):
// prompts of one length make log(length) a constant the decision head cannot learn from, while the
// service sees every length.
inline std::vector<CalibrationExample> calibration_examples(std::span<const int> stream, int count, std::span<const int> prompt_lens,
                                                            int cont_len, int bos = 1) {
    require(!prompt_lens.empty() && cont_len >= 1, "calibration_examples", "needs prompt lengths and cont_len >= 1");
    for (int l : prompt_lens) require(l >= 2, "calibration_examples", "every prompt length must be >= 2");
    std::vector<CalibrationExample> out;
    std::size_t i = 0;
    while (int(out.size()) < count) {
        const std::size_t prompt_len = std::size_t(prompt_lens[out.size() % prompt_lens.size()]), len = prompt_len + cont_len;
        while (i < stream.size() && stream[i] != bos) ++i;
        if (i + len > stream.size()) break;
        out.push_back({{stream.begin() + i, stream.begin() + i + prompt_len}, {stream.begin() + i + prompt_len, stream.begin() + i + len}});
        i += len;
    }
    return out;
}

// Mean NLL (nats per token) of `cont` given the logits that predict its first token and a session that
// has read everything before it. Appends cont[0 .. C−1) to the session.
template <ModelConfig Cfg>
double continuation_nll_after(std::span<const float> first_logits, Session<Cfg>& s, std::span<const int> cont, int percent) {
    double nll = -log_softmax_at(first_logits, cont[0]);
    if (cont.size() > 1) {
        const auto logits = s.append_all_logits(cont.first(cont.size() - 1), percent);
        for (std::size_t t = 1; t < cont.size(); ++t)
            nll -= log_softmax_at(std::span<const float>(logits).subspan((t - 1) * Cfg::vocab_size, Cfg::vocab_size), cont[t]);
    }
    return nll / double(cont.size());
}

// Mean NLL of `cont` after `prompt`, both run at `percent`% width in `s` (which is reset first).
template <ModelConfig Cfg>
double continuation_nll(Session<Cfg>& s, std::span<const int> prompt, std::span<const int> cont, int percent = 100) {
    require(!prompt.empty() && !cont.empty(), "continuation_nll", "needs a non-empty prompt and continuation");
    s.reset();
    const auto first = s.append(prompt, percent);
    const std::vector<float> first_logits(first.begin(), first.end());
    return continuation_nll_after(std::span<const float>(first_logits), s, cont, percent);
}

// Token-importance labels for `ex.prompt` (see the file comment); NaN for tokens that are never dropped
// (special tokens) and so get no label. Runs the full model once per span, sharing the KV cache of the
// prefix before each span (the session is copied, not re-run).
template <ModelConfig Cfg>
std::vector<float> drop_labels(const Model<Cfg>& llm, ThreadPool& pool, const CalibrationExample& ex, int span = 1,
                               const SpecialTokens& special = {}) {
    const int n = int(ex.prompt.size()), c = int(ex.continuation.size());
    require(span >= 1, "drop_labels", "span must be >= 1");
    require(n >= 1 && c >= 1 && n + c <= Cfg::context, "drop_labels",
            "prompt + continuation must be non-empty and fit the context of " + std::to_string(Cfg::context));
    const int ctx = n + c, chunk = std::min(ctx, 256);
    Session<Cfg> scratch(llm, pool, ctx, chunk);
    const std::span<const int> cont(ex.continuation);
    const double base = continuation_nll(scratch, std::span<const int>(ex.prompt), cont, 100);

    std::vector<float> labels(n, std::numeric_limits<float>::quiet_NaN());
    Session<Cfg> prefix(llm, pool, ctx, chunk);  // holds prompt[0, start)
    std::vector<float> prefix_logits;            // its logits after the last token read
    std::vector<int> rest;
    for (int start = 0; start < n; start += span) {
        const int end = std::min(n, start + span);
        rest.clear();
        bool any = false;
        for (int i = start; i < end; ++i) {
            if (special.contains(ex.prompt[i])) rest.push_back(ex.prompt[i]);
            else any = true;
        }
        if (any) {
            rest.insert(rest.end(), ex.prompt.begin() + end, ex.prompt.end());
            double nll = std::numeric_limits<double>::quiet_NaN();
            if (!rest.empty()) {
                Session<Cfg> s = prefix;
                const auto first = s.append(rest, 100);
                const std::vector<float> first_logits(first.begin(), first.end());
                nll = continuation_nll_after(std::span<const float>(first_logits), s, cont, 100);
            } else if (!prefix_logits.empty()) {
                Session<Cfg> s = prefix;
                nll = continuation_nll_after(std::span<const float>(prefix_logits), s, cont, 100);
            }
            for (int i = start; i < end; ++i)
                if (!special.contains(ex.prompt[i])) labels[i] = float(nll - base);
        }
        const auto l = prefix.append(std::span<const int>(ex.prompt).subspan(start, end - start), 100);
        prefix_logits.assign(l.begin(), l.end());
    }
    return labels;
}

// Pair-quality labels: mean log-likelihood of the continuation for every (prompt ratio, model ratio)
// pair, indexed by pair_index; `scores` are the score head's importances for ex.prompt.
template <ModelConfig Cfg>
std::array<float, kPairs> pair_labels(const Model<Cfg>& llm, ThreadPool& pool, const CalibrationExample& ex, std::span<const float> scores,
                                      const SpecialTokens& special = {}) {
    const int ctx = int(ex.prompt.size() + ex.continuation.size());
    require(ctx <= Cfg::context, "pair_labels", "prompt + continuation exceed the context of " + std::to_string(Cfg::context));
    Session<Cfg> s(llm, pool, ctx, std::min(ctx, 256));
    std::array<float, kPairs> out{};
    for (int p : kRatios) {
        const CompressedPrompt c = compress(ex.prompt, p, scores, {}, special);
        for (int m : kRatios) out[pair_index(p, m)] = float(-continuation_nll(s, std::span<const int>(c.ids), ex.continuation, m));
    }
    return out;
}

}  // namespace elastilm
