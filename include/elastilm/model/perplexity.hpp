// Perplexity of a width ratio on held-out text: the quality measure of every elasticity table.
//
// Protocol (the one ../shared/models/tiny-gqa-15M/reference.json was computed with): the text becomes
// one token stream — each non-empty paragraph (split on blank lines) as BOS + its ids — and is scored in
// non-overlapping windows: window w feeds tokens [wT, wT + T) and predicts [wT + 1, wT + T + 1).
#pragma once

#include <chrono>
#include <cmath>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "elastilm/model/session.hpp"

namespace elastilm {

// BOS + ids of every non-empty paragraph. `Tok` is any tokenizer with encode(text, add_bos).
template <class Tok>
std::vector<int> paragraph_stream(const Tok& tok, std::string_view text) {
    std::vector<int> ids;
    std::size_t start = 0;
    while (start <= text.size()) {
        const std::size_t end = std::min(text.find("\n\n", start), text.size());
        const std::string_view para = text.substr(start, end - start);
        if (para.find_first_not_of(" \t\n\r\f\v") != std::string_view::npos) {
            const auto p = tok.encode(para, true);
            ids.insert(ids.end(), p.begin(), p.end());
        }
        if (end == text.size()) break;
        start = end + 2;
    }
    return ids;
}

struct PerplexityResult {
    double perplexity = 0;
    double mean_nll = 0;     // nats per token
    long long tokens = 0;    // predictions scored
    double seconds = 0;
};

// Scores the first `max_tokens` (rounded down to whole windows) of `stream` at `percent`% width.
// on_window(done, total) reports progress.
template <ModelConfig Cfg>
PerplexityResult perplexity(const Model<Cfg>& model, ThreadPool& pool, std::span<const int> stream, int window,
                            int percent = 100, long long max_tokens = -1,
                            const std::function<void(int, int)>& on_window = {}) {
    require(window > 1 && window <= Cfg::context, "perplexity",
            "window " + std::to_string(window) + " must be in 2.." + std::to_string(Cfg::context));
    const long long usable = max_tokens < 0 ? (long long)stream.size() : std::min<long long>(stream.size(), max_tokens);
    // Window starts i = 0, T, 2T, … while i < usable − T − 1 (the reference protocol).
    const int windows = usable > window + 1 ? int((usable - window - 1 + window - 1) / window) : 0;
    require(windows > 0, "perplexity",
            "needs more than " + std::to_string(window + 1) + " tokens of text, got " + std::to_string(usable));
    const auto t0 = std::chrono::steady_clock::now();
    Session<Cfg> session(model, pool, window, std::min(window, 256));
    double nll = 0;
    long long n = 0;
    for (int w = 0; w < windows; ++w) {
        const std::size_t i = std::size_t(w) * window;
        session.reset();
        const auto logits = session.append_all_logits(stream.subspan(i, window), percent);
        for (int t = 0; t < window; ++t) {
            const float* row = logits.data() + std::size_t(t) * Cfg::vocab_size;
            float mx = row[0];
            for (int v = 1; v < Cfg::vocab_size; ++v) mx = std::max(mx, row[v]);
            double sum = 0;
            for (int v = 0; v < Cfg::vocab_size; ++v) sum += std::exp(double(row[v] - mx));
            nll += std::log(sum) + mx - row[stream[i + t + 1]];
            ++n;
        }
        if (on_window) on_window(w + 1, windows);
    }
    PerplexityResult r;
    r.tokens = n;
    r.mean_nll = nll / double(n);
    r.perplexity = std::exp(r.mean_nll);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace elastilm
