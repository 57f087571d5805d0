// A request's latency objective (ElastiLM §2): time to first token and time per output token.
//
// Apps state it either in milliseconds or, as the paper's demo does, as a level of the full model's own
// latency on this prompt (20% … 100%): "answer with at most half the full model's TTFT".
#pragma once

#include <cmath>
#include <string>

#include "elastilm/config.hpp"
#include "elastilm/error.hpp"

namespace elastilm {

// Absolute objective; both must be positive and finite.
struct Slo {
    double ttft_ms = 0;
    double tpot_ms = 0;
};

// Levels in percent of the full model's predicted latency for this prompt (any value in (0, 100]; the
// demo offers the nine compiled ratios).
struct RelativeSlo {
    double ttft_percent = 100;
    double tpot_percent = 100;
};

// One number per part of a request's time: the prefill (the TLM's time excluded), one decode step, the
// TLM's scoring. LatencyFeedback's corrections (above 1: that part has run slower than profiled) and the
// margins a plan keeps (a part may run this many times its prediction and the plan still meet its SLO).
struct LatencyScale {
    double prefill = 1.0, decode = 1.0, tlm = 1.0;
};

// A latency predictor: the on-device latency model (service/latency_model.hpp) or a test's fake.
template <class L>
concept LatencyPredictor = requires(const L& l, int percent, int tokens) {
    { l.ttft_ms(percent, tokens) } -> std::convertible_to<double>;
    { l.tpot_ms(percent, tokens) } -> std::convertible_to<double>;
};

inline void check(const Slo& s) {
    require(std::isfinite(s.ttft_ms) && s.ttft_ms > 0, "SLO",
            "TTFT objective must be a positive number of milliseconds, got " + std::to_string(s.ttft_ms));
    require(std::isfinite(s.tpot_ms) && s.tpot_ms > 0, "SLO",
            "TPOT objective must be a positive number of milliseconds, got " + std::to_string(s.tpot_ms));
}

inline void check(const RelativeSlo& s) {
    for (double v : {s.ttft_percent, s.tpot_percent})
        require(std::isfinite(v) && v > 0 && v <= 100, "SLO",
                "relative level must be in (0, 100] percent of the full model's latency, got " + std::to_string(v));
}

// The absolute objective a relative one means for a prompt of `prompt_tokens`, decoding `new_tokens`.
template <LatencyPredictor L>
Slo absolute(const RelativeSlo& r, const L& latency, int prompt_tokens, int new_tokens) {
    check(r);
    return {r.ttft_percent / 100.0 * latency.ttft_ms(100, prompt_tokens),
            r.tpot_percent / 100.0 * latency.tpot_ms(100, prompt_tokens + new_tokens / 2)};
}

}  // namespace elastilm
