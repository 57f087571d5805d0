// The generation loop: prefill the prompt, then decode token by token, streaming each one.
// Times are what a user feels: TTFT from the call until the first generated token is known, TPOT the
// mean time per further token.
#pragma once

#include <chrono>
#include <functional>
#include <span>
#include <vector>

#include "elastilm/generate/sampler.hpp"
#include "elastilm/model/session.hpp"

namespace elastilm {

struct GenerateOptions {
    int max_new_tokens = 64;
    int eos_id = 2;             // stop when sampled (not emitted); -1 never stops early
    int prefill_percent = 100;  // width of the sub-model for the prompt
    int decode_percent = 100;   // width for generated tokens
    SamplerOptions sampling;
};

struct GenerateResult {
    std::vector<int> tokens;    // generated ids (without the prompt, without EOS)
    bool stopped_at_eos = false;
    int prompt_tokens = 0;
    double ttft_ms = 0;         // prompt prefill + first token choice
    double tpot_ms = 0;         // mean per generated token after the first
    double prefill_tok_s = 0;   // prompt tokens / prefill time
};

// Calls on_token(id) as each token is chosen; returning false stops generation.
template <ModelConfig Cfg>
GenerateResult generate(Session<Cfg>& session, std::span<const int> prompt, const GenerateOptions& opts,
                        const std::function<bool(int)>& on_token = {}) {
    using clock = std::chrono::steady_clock;
    auto ms = [](clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
    require(opts.max_new_tokens >= 0, "generate", "max_new_tokens must be >= 0");
    require(session.position() + int(prompt.size()) + opts.max_new_tokens <= session.context(), "generate",
            "prompt of " + std::to_string(prompt.size()) + " tokens + " + std::to_string(opts.max_new_tokens) +
                " new tokens exceed the context of " + std::to_string(session.context()) + " (minus " +
                std::to_string(session.position()) + " already used)");
    Sampler sample(opts.sampling);
    GenerateResult r;
    r.prompt_tokens = int(prompt.size());

    const auto t0 = clock::now();
    std::span<const float> logits = session.append(prompt, opts.prefill_percent);
    const auto t_prefill = clock::now();
    r.prefill_tok_s = prompt.size() / std::max(1e-9, ms(t_prefill - t0) / 1e3);
    int next = sample(logits);
    r.ttft_ms = ms(clock::now() - t0);

    const auto t_first = clock::now();
    for (int i = 0; i < opts.max_new_tokens; ++i) {
        if (next == opts.eos_id) { r.stopped_at_eos = true; break; }
        r.tokens.push_back(next);
        if (on_token && !on_token(next)) break;
        if (i + 1 == opts.max_new_tokens) break;
        next = sample(session.append(next, opts.decode_percent));
    }
    if (r.tokens.size() > 1) r.tpot_ms = ms(clock::now() - t_first) / double(r.tokens.size() - 1);
    return r;
}

}  // namespace elastilm
