// The orchestrator (ElastiLM §4): for one request, choose the prompt compression ratio and the model
// ratios for prefill and decode that meet the SLO with the best expected answer quality.
//
//   TTFT(p, m) = [p < 100: TLM time over the whole prompt] + prefill at m% of the prompt compressed to p%
//   TPOT(d)    = decode step at d% with the prompt's context
// Every pair is charged its true cost: a plan that keeps the whole prompt (p = 100) needs no scores, so
// the TLM's time is not in it; only compressing plans pay for the TLM that chooses their tokens. When the
// ratings rate it (PairRatings::recency), a compressing plan may instead keep the prompt's most recent
// tokens (PromptCut::recency): no TLM, so nothing but the prefill is charged, and its own rating. The
// ratings rank the pairs (the decision head's for this prompt once the TLM ran, before that a
// prompt-agnostic prior); the orchestrator masks the pairs the latency model says miss the TTFT
// objective and takes the best-rated one left. So the TLM runs only when the best plan by predicted
// times and prior ratings compresses (service.hpp, prepare_prompt): when scoring cannot pay for
// itself, the model-only plans win and no TLM runs.
// Ratings may say what a narrower decode costs (PairRatings::decode): a pair is then rated with the
// decode width TPOT leaves it, since the answer's tokens come from that sub-model.
// Decode takes the widest ratio that meets TPOT, capped at the prefill ratio: a wider decode would find
// no K/V for its extra heads and re-run the whole prompt (Session's rule), which would land on the first
// decode step.
// Feasible means within the objective with the request's margins (PlanRequest::margin, headroom): a
// prediction is an estimate with a spread, and a plan predicted to land just under its objective misses
// it about half the time.
// If nothing is feasible the plan is the fastest pair, flagged — serving never throws on an SLO.
// A prompt too long for the context beside the answer is compressed until it fits, when it can be.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <span>
#include <string>

#include "elastilm/service/prompt_compression.hpp"
#include "elastilm/service/slo.hpp"

namespace elastilm {

// (prompt ratio, model ratio) pairs, prompt-major: pair = ratio_index(prompt) · 9 + ratio_index(model).
inline constexpr int kPairs = int(kRatios.size() * kRatios.size());
inline int pair_index(int prompt_percent, int model_percent) {
    const int p = ratio_index(prompt_percent), m = ratio_index(model_percent);
    require(p >= 0 && m >= 0, "pair_index",
            std::to_string(prompt_percent) + "%/" + std::to_string(model_percent) + "% is not a pair of compiled ratios");
    return p * int(kRatios.size()) + m;
}
constexpr int pair_prompt_percent(int pair) { return kRatios[pair / kRatios.size()]; }
constexpr int pair_model_percent(int pair) { return kRatios[pair % kRatios.size()]; }

// The decision head's output: the predicted mean log-likelihood of the continuation for every pair;
// higher is better.
struct PairRatings {
    std::array<float, kPairs> value{};
    // How the rating moves when the answer is decoded at d % rather than at the prefill's m % (d ≤ m; the
    // orchestrator narrows decode to meet TPOT): rating(p, m, d) = value(p, m) + decode[d] − decode[m].
    // Per compiled ratio; all zero (the decision head's ratings) when it is not modelled.
    std::array<float, kRatios.size()> decode{};
    // How the rating moves when a plan keeping p % of the prompt keeps its most recent tokens rather than
    // those the TLM scores highest: rating(p, m, d, recency) = rating(p, m, d) + recency[p]. Absent: such
    // cuts are not rated, and not planned.
    std::optional<std::array<float, kRatios.size()>> recency;

    float at(int prompt_percent, int model_percent) const { return value[pair_index(prompt_percent, model_percent)]; }
    // The best pair among those `feasible` marks (all when empty; kPairs entries otherwise), -1 if none;
    // ties go to the lower index (the smaller prompt ratio, then the smaller model).
    // A prompt-agnostic prior from two one-dimensional measurements of the same quality (e.g. mean
    // log-likelihood of a continuation on calibration text, per compiled ratio in order): the model at
    // m % on whole prompts, and the full model on prompts compressed to p %. Their losses are taken to add:
    // rating(p, m) = model[m] + prompt[p] − model[100 %].
    static PairRatings additive(std::span<const double> model, std::span<const double> prompt) {
        require(model.size() == kRatios.size() && prompt.size() == kRatios.size(), "PairRatings::additive",
                "needs one value per compiled ratio (" + std::to_string(kRatios.size()) + ")");
        PairRatings r;
        for (std::size_t pi = 0; pi < kRatios.size(); ++pi)
            for (std::size_t mi = 0; mi < kRatios.size(); ++mi) {
                const double v = model[mi] + prompt[pi] - model.back();
                require(std::isfinite(v), "PairRatings::additive", "measurements must be finite");
                r.value[pi * kRatios.size() + mi] = float(v);
            }
        return r;
    }

    // The same from three curves over the compiled ratios, concatenated as model[r], prompt[r], decode[r]
    // (kCurveValues; service/pair_prior.hpp measures them, a decision head may predict them per prompt):
    // rating(p, m, d) = model[m] + prompt[p] − model[100 %] + decode[d] − decode[m].
    static constexpr int kCurveValues = 3 * int(kRatios.size());
    static PairRatings from_curves(std::span<const double> curves) {
        require(curves.size() == std::size_t(kCurveValues), "PairRatings::from_curves",
                "needs model, prompt and decode curves of " + std::to_string(kRatios.size()) + " values each");
        const std::size_t n = kRatios.size();
        PairRatings r = additive(curves.first(n), curves.subspan(n, n));
        for (std::size_t k = 0; k < n; ++k) {
            require(std::isfinite(curves[2 * n + k]), "PairRatings::from_curves", "measurements must be finite");
            r.decode[k] = float(curves[2 * n + k]);
        }
        return r;
    }

    int best(std::span<const std::uint8_t> feasible = {}) const {
        require(feasible.empty() || feasible.size() == std::size_t(kPairs), "PairRatings::best",
                "feasible mask needs " + std::to_string(kPairs) + " entries");
        int b = -1;
        for (int i = 0; i < kPairs; ++i)
            if ((feasible.empty() || feasible[i]) && (b < 0 || value[i] > value[b])) b = i;
        return b;
    }
};


// Which elasticity dimensions a plan may use (the evaluation's baselines are the restricted ones).
enum class Elasticity : std::uint8_t { prompt_and_model, model_only, prompt_only, none };

constexpr std::string_view to_string(Elasticity e) {
    switch (e) {
        case Elasticity::prompt_and_model: return "prompt x model";
        case Elasticity::model_only: return "model only";
        case Elasticity::prompt_only: return "prompt only";
        case Elasticity::none: return "full model";
    }
    return "?";
}

struct Plan {
    int prompt_percent = 100;   // share of prompt tokens kept
    int prefill_percent = 100;  // model width for the prompt
    int decode_percent = 100;   // model width for generated tokens
    int kept_tokens = 0;        // prompt tokens after compression
    PromptCut cut = PromptCut::scores;  // how a compressing plan chooses its tokens
    bool uses_tlm = false;      // the TLM scores the prompt (its predicted time is inside predicted_ttft_ms)
    double predicted_ttft_ms = 0;
    double predicted_tpot_ms = 0;
    bool ttft_feasible = true;  // the prediction, taken with the request's margin, meets the objective
    bool tpot_feasible = true;
    bool feasible() const { return ttft_feasible && tpot_feasible; }
};

struct PlanRequest {
    int prompt_tokens = 0;        // before compression
    int protected_tokens = 0;     // special + caller-protected tokens: never dropped
    int new_tokens = 64;          // tokens to generate (TPOT is predicted at the mid-answer context)
    Slo slo;                      // absolute objective
    double elapsed_ms = 0;        // already spent (queueing) — counts against TTFT
    Elasticity elasticity = Elasticity::prompt_and_model;
    double tlm_ms = 0;            // TLM time a compressing plan still has to pay (predicted on the whole prompt;
                                  // 0 once the prompt is scored: that time is then inside elapsed_ms)
    int max_kept = 1 << 30;       // most prompt tokens that fit the context beside the answer
    // How many times its predicted time each part may take and the plan still meet the objective: a plan
    // is feasible when TLM·margin.tlm + prefill·margin.prefill fits the TTFT budget and a decode step
    // times margin.decode the TPOT one (LatencyFeedback::margin: from the spread of recent errors). 1: the
    // predictions as they are. The plan's predicted times are reported without it.
    LatencyScale margin;
    double headroom = 1.0;        // and plan to this share of each objective (a fixed margin on top)
    // Whether a compressing plan may keep the most recent tokens instead of the TLM's choice, when the
    // ratings rate that cut. Off: every cut is the TLM's (ElastiLM's planner as the paper has it).
    bool recency_cuts = true;
};

// `ratings` may be empty (no trained decision head, or the TLM has not run): pairs are then ranked by a
// fixed prior — wider model first, then more prompt kept — which is what a user expects when nothing
// better is known.
template <LatencyPredictor L>
Plan choose_plan(const PlanRequest& r, const L& latency, const std::optional<PairRatings>& ratings) {
    check(r.slo);
    require(r.prompt_tokens > 0, "orchestrator", "empty prompt");
    require(r.headroom > 0 && r.headroom <= 1, "orchestrator", "headroom must be in (0, 1]");
    for (double f : {r.margin.prefill, r.margin.decode, r.margin.tlm})
        require(std::isfinite(f) && f >= 1, "orchestrator", "a latency margin must be a finite factor >= 1, got " + std::to_string(f));
    require(std::isfinite(r.tlm_ms) && r.tlm_ms >= 0, "orchestrator",
            "predicted TLM time must be a finite number of milliseconds >= 0, got " + std::to_string(r.tlm_ms));
    const double ttft_budget = r.slo.ttft_ms * r.headroom - std::max(0.0, r.elapsed_ms);
    const double tpot_budget = r.slo.tpot_ms * r.headroom;
    const int n = r.prompt_tokens;
    auto tpot_at = [&](int m, int kept) { return latency.tpot_ms(m, kept + r.new_tokens / 2); };
    // The objectives are checked against the times a part may take: its prediction times its margin.
    auto ttft_fits = [&](double tlm, double prefill) { return tlm * r.margin.tlm + prefill * r.margin.prefill <= ttft_budget; };
    auto tpot_fits = [&](double tpot) { return tpot * r.margin.decode <= tpot_budget; };

    // The full model on the whole prompt needs no decision: when it fits, nothing beats it.
    Plan full;
    full.kept_tokens = n;
    full.predicted_ttft_ms = latency.ttft_ms(100, n);
    full.predicted_tpot_ms = tpot_at(100, n);
    full.ttft_feasible = ttft_fits(0, full.predicted_ttft_ms);
    full.tpot_feasible = tpot_fits(full.predicted_tpot_ms);
    if (r.elasticity == Elasticity::none || (full.feasible() && n <= r.max_kept)) return full;

    const bool vary_prompt = r.elasticity == Elasticity::prompt_and_model || r.elasticity == Elasticity::prompt_only;
    const bool vary_model = r.elasticity == Elasticity::prompt_and_model || r.elasticity == Elasticity::model_only;
    const double tlm_ms = vary_prompt ? r.tlm_ms : 0.0;

    auto rating = [&](std::size_t pi, std::size_t mi, int decode_percent, PromptCut cut) {
        if (ratings) {
            const int di = ratio_index(decode_percent);
            const double recency = cut == PromptCut::recency ? double((*ratings->recency)[pi]) : 0.0;
            return double(ratings->value[pi * kRatios.size() + mi]) + double(ratings->decode[std::size_t(di)]) -
                   double(ratings->decode[mi]) + recency;
        }
        return double(mi) * 100.0 + double(pi);  // prior: model width first, then prompt kept
    };
    const bool recency_rated = r.recency_cuts && vary_prompt && ratings && ratings->recency;

    // One pair, its prompt cut one way, at its true cost: the TLM only when it chooses the tokens.
    auto candidate = [&](int p, int m, PromptCut cut) {
        Plan c;
        c.prompt_percent = p;
        c.prefill_percent = m;
        c.cut = cut;
        c.uses_tlm = p < 100 && cut == PromptCut::scores;  // the whole prompt or its latest tokens: no TLM, none charged
        c.kept_tokens = kept_count(n, p, r.protected_tokens);
        const double charged_tlm = c.uses_tlm ? tlm_ms : 0.0, prefill = latency.ttft_ms(m, c.kept_tokens);
        c.predicted_ttft_ms = charged_tlm + prefill;
        c.ttft_feasible = ttft_fits(charged_tlm, prefill);
        // Decode: the widest ratio meeting TPOT, no wider than the prefill (see the file comment).
        c.decode_percent = vary_model ? kRatios.front() : 100;
        if (vary_model)
            for (int d : kRatios)
                if (d <= m && tpot_fits(tpot_at(d, c.kept_tokens))) c.decode_percent = d;
        c.predicted_tpot_ms = tpot_at(c.decode_percent, c.kept_tokens);
        c.tpot_feasible = tpot_fits(c.predicted_tpot_ms);
        return c;
    };

    std::optional<Plan> best, fastest;
    double best_rating = -std::numeric_limits<double>::infinity();
    for (std::size_t pi = 0; pi < kRatios.size(); ++pi) {
        const int p = kRatios[pi];
        if (!vary_prompt && p != 100) continue;
        if (kept_count(n, p, r.protected_tokens) > r.max_kept) continue;  // would not fit the context: not a candidate at all
        for (const PromptCut cut : {PromptCut::scores, PromptCut::recency}) {
            if (cut == PromptCut::recency && (p == 100 || !recency_rated)) continue;
            for (std::size_t mi = 0; mi < kRatios.size(); ++mi) {
                if (!vary_model && kRatios[mi] != 100) continue;
                const Plan c = candidate(p, kRatios[mi], cut);
                if (!fastest || c.predicted_ttft_ms + c.predicted_tpot_ms * r.new_tokens <
                                    fastest->predicted_ttft_ms + fastest->predicted_tpot_ms * r.new_tokens)
                    fastest = c;
                if (!c.ttft_feasible) continue;
                // Among TTFT-feasible pairs: those that also meet TPOT first, then the decision head's rating.
                const double score = rating(pi, mi, c.decode_percent, cut) + (c.tpot_feasible ? 1e9 : 0.0);
                if (score > best_rating) {
                    best_rating = score;
                    best = c;
                }
            }
        }
    }
    if (best) return *best;
    return fastest ? *fastest : full;  // nothing fits the context: the caller reports it
}

}  // namespace elastilm
