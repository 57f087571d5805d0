// The orchestrator's choices under a fake latency model whose times are simple functions of width and
// length, so every expectation can be worked out by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "elastilm/service/orchestrator.hpp"

namespace elastilm {
namespace {

// TTFT = 0.1 ms per token per percent/100 of width, TPOT = 1 ms × percent / 100 (+ 0.001 per token).
struct LinearLatency {
    double ttft_ms(int percent, int tokens) const { return 0.1 * tokens * percent / 100.0; }
    double tpot_ms(int percent, int context) const { return percent / 100.0 + 0.001 * context; }
};

PlanRequest request(int n, double ttft_ms, double tpot_ms) {
    PlanRequest r;
    r.prompt_tokens = n;
    r.new_tokens = 0;
    r.slo = {ttft_ms, tpot_ms};
    r.tlm_ms = 0.02 * n;  // as the 20% model's prefill would take under LinearLatency
    r.headroom = 1.0;     // plan to the objective exactly: the expectations are worked out that way
    return r;
}

TEST(Orchestrator, FullModelWhenItFits) {
    const Plan p = choose_plan(request(100, 10.5, 1.2), LinearLatency{}, std::nullopt);
    EXPECT_EQ(p.prompt_percent, 100);
    EXPECT_EQ(p.prefill_percent, 100);
    EXPECT_EQ(p.decode_percent, 100);
    EXPECT_FALSE(p.uses_tlm);  // no decision needed, so the TLM does not run
    EXPECT_TRUE(p.feasible());
}

TEST(Orchestrator, BestRatedFeasiblePairWins) {
    // n = 100: TLM (20%) costs 2 ms; pair (p, m) costs 2 + 0.1·(p)·(m/100) ms. Budget 5 ms leaves 3 ms.
    PairRatings ratings{};
    for (int i = 0; i < kPairs; ++i) ratings.value[i] = -float(i);  // favours small
    ratings.value[pair_index(60, 50)] = 10;   // 2 + 0.1·60·0.5 = 5.0: feasible, rated best
    ratings.value[pair_index(100, 100)] = 20;  // rated higher but infeasible (12 ms)
    const Plan p = choose_plan(request(100, 5.0, 10.0), LinearLatency{}, ratings);
    EXPECT_EQ(p.prompt_percent, 60);
    EXPECT_EQ(p.prefill_percent, 50);
    EXPECT_EQ(p.kept_tokens, 60);
    EXPECT_TRUE(p.uses_tlm);
    EXPECT_NEAR(p.predicted_ttft_ms, 5.0, 1e-9);
    EXPECT_TRUE(p.feasible());
}

TEST(Orchestrator, PriorPrefersWidestModelThatFits) {
    // Without a decision head: widest model first. Budget 2 (TLM) + 4.5: m = 100 needs 0.1·p ≤ 4.5 → p = 40.
    const Plan p = choose_plan(request(100, 6.5, 10.0), LinearLatency{}, std::nullopt);
    EXPECT_EQ(p.prefill_percent, 100);
    EXPECT_EQ(p.prompt_percent, 40);
    // Budget 2 + 3.5: m = 100 allows p ≤ 35 (30), m = 90 needs 0.09·p ≤ 3.5 → p = 30 too: widest wins.
    const Plan q = choose_plan(request(100, 5.5, 10.0), LinearLatency{}, std::nullopt);
    EXPECT_EQ(q.prefill_percent, 100);
    EXPECT_EQ(q.prompt_percent, 30);
}

TEST(Orchestrator, DecodeIsWidestMeetingTpotAndNoWiderThanPrefill) {
    // TPOT 0.75 ms at context 100: percent/100 + 0.1 ≤ 0.75 → decode ≤ 60 (0.7), prefill may be wider.
    PlanRequest r = request(100, 1000, 0.75);
    r.elasticity = Elasticity::model_only;
    const Plan p = choose_plan(r, LinearLatency{}, std::nullopt);
    EXPECT_EQ(p.prefill_percent, 100);
    EXPECT_EQ(p.decode_percent, 60);
    EXPECT_TRUE(p.feasible());
    // Prefill forced narrow by TTFT (≤ 30% at budget 3 ms): decode may not exceed it.
    r.slo = {3.0, 10.0};
    const Plan q = choose_plan(r, LinearLatency{}, std::nullopt);
    EXPECT_EQ(q.prefill_percent, 30);
    EXPECT_EQ(q.decode_percent, 30);
}

TEST(Orchestrator, QueueingCountsAgainstTtft) {
    PlanRequest r = request(100, 10.5, 10.0);
    EXPECT_EQ(choose_plan(r, LinearLatency{}, std::nullopt).prefill_percent, 100);
    r.elapsed_ms = 6.0;  // 4.5 ms left
    const Plan p = choose_plan(r, LinearLatency{}, std::nullopt);
    EXPECT_LE(p.predicted_ttft_ms, 4.5);
    EXPECT_LT(p.prefill_percent * p.prompt_percent, 100 * 100);
}

TEST(Orchestrator, ImpossibleSloGivesFastestPairFlagged) {
    PlanRequest r = request(100, 0.01, 0.01);
    r.tlm_ms = 0.1;  // cheap scoring: 0.1 + 0.1·20·0.2 = 0.5 ms beats the whole prompt at 20% (2 ms)
    const Plan p = choose_plan(r, LinearLatency{}, std::nullopt);
    EXPECT_FALSE(p.ttft_feasible);
    EXPECT_FALSE(p.tpot_feasible);
    EXPECT_EQ(p.prompt_percent, 20);
    EXPECT_EQ(p.prefill_percent, 20);
    EXPECT_EQ(p.decode_percent, 20);
    EXPECT_TRUE(p.uses_tlm);
    // Scoring at 2 ms costs more than compression saves (2 + 0.4 > 2.0): the fastest plan keeps the prompt.
    const Plan q = choose_plan(request(100, 0.01, 0.01), LinearLatency{}, std::nullopt);
    EXPECT_EQ(q.prompt_percent, 100);
    EXPECT_EQ(q.prefill_percent, 20);
    EXPECT_FALSE(q.uses_tlm);
    EXPECT_NEAR(q.predicted_ttft_ms, 2.0, 1e-9);
}

TEST(Orchestrator, KeepingTheWholePromptIsChargedNoTlm) {
    // Full model: 10 ms > 9.5. Every compressing plan pays the TLM's 2 ms; the model-only ones do not.
    const Plan p = choose_plan(request(100, 9.5, 10.0), LinearLatency{}, std::nullopt);
    // Prior: widest model first. m = 100 with p = 70 costs 2 + 7 = 9 ms: compression wins over p = 100, m = 90.
    EXPECT_EQ(p.prefill_percent, 100);
    EXPECT_EQ(p.prompt_percent, 70);
    EXPECT_TRUE(p.uses_tlm);
    EXPECT_NEAR(p.predicted_ttft_ms, 9.0, 1e-9);
    // Prompt-agnostic ratings that favour the whole prompt: p = 100 at 90% (9 ms, no TLM) is chosen, and
    // its predicted TTFT holds no TLM time.
    PairRatings whole{};
    for (int i = 0; i < kPairs; ++i) whole.value[i] = float(pair_prompt_percent(i) + pair_model_percent(i));
    whole.value[pair_index(100, 90)] = 1000;
    const Plan q = choose_plan(request(100, 9.5, 10.0), LinearLatency{}, whole);
    EXPECT_EQ(q.prompt_percent, 100);
    EXPECT_EQ(q.prefill_percent, 90);
    EXPECT_FALSE(q.uses_tlm);
    EXPECT_NEAR(q.predicted_ttft_ms, 9.0, 1e-9);
}

TEST(Orchestrator, ScoringThatCannotPayForItselfIsNotPlanned) {
    // The TLM alone takes the whole budget: no compressing plan is feasible, so the plan keeps the prompt
    // and narrows the model (0.1·100·0.9 = 9 ms ≤ 9.5), and needs no TLM.
    PlanRequest r = request(100, 9.5, 10.0);
    r.tlm_ms = 9.5;
    const Plan p = choose_plan(r, LinearLatency{}, std::nullopt);
    EXPECT_FALSE(p.uses_tlm);
    EXPECT_EQ(p.prompt_percent, 100);
    EXPECT_EQ(p.prefill_percent, 90);
    EXPECT_TRUE(p.feasible());
    // Prompt-only elasticity has nothing else: the full model, infeasible, still without the TLM
    // (the fastest plan is the whole prompt at 10 ms, against 9.5 + 2 at 20%).
    r.elasticity = Elasticity::prompt_only;
    const Plan q = choose_plan(r, LinearLatency{}, std::nullopt);
    EXPECT_FALSE(q.uses_tlm);
    EXPECT_FALSE(q.ttft_feasible);
    r.tlm_ms = -1;
    EXPECT_THROW(choose_plan(r, LinearLatency{}, std::nullopt), Error);
}

TEST(Orchestrator, TightTtftOnALongPromptCompresses) {
    // n = 1000: full model 100 ms; budget 30 ms with the TLM at 2 ms. Widest model first: m = 100 needs
    // 2 + 0.1·kept ≤ 30 → p = 20 (22 ms), which beats p = 100 at 30% (30 ms, rated lower by the prior).
    PlanRequest r = request(1000, 30, 10.0);
    r.tlm_ms = 2.0;
    const Plan p = choose_plan(r, LinearLatency{}, std::nullopt);
    EXPECT_TRUE(p.uses_tlm);
    EXPECT_EQ(p.prompt_percent, 20);
    EXPECT_EQ(p.prefill_percent, 100);
    EXPECT_EQ(p.kept_tokens, 200);
    EXPECT_NEAR(p.predicted_ttft_ms, 22.0, 1e-9);
    // A loose objective on the same prompt: the full model, no TLM.
    r.slo.ttft_ms = 150;
    const Plan f = choose_plan(r, LinearLatency{}, std::nullopt);
    EXPECT_EQ(f.prompt_percent + f.prefill_percent + f.decode_percent, 300);
    EXPECT_FALSE(f.uses_tlm);
}

TEST(Orchestrator, BaselinesStayInTheirDimension) {
    PlanRequest r = request(100, 4.0, 0.5);
    r.elasticity = Elasticity::model_only;
    EXPECT_EQ(choose_plan(r, LinearLatency{}, std::nullopt).prompt_percent, 100);
    r.elasticity = Elasticity::prompt_only;
    const Plan p = choose_plan(r, LinearLatency{}, std::nullopt);
    EXPECT_EQ(p.prefill_percent, 100);
    EXPECT_EQ(p.decode_percent, 100);
    EXPECT_LT(p.prompt_percent, 100);
    r.elasticity = Elasticity::none;
    const Plan f = choose_plan(r, LinearLatency{}, std::nullopt);
    EXPECT_EQ(f.prompt_percent + f.prefill_percent + f.decode_percent, 300);
    EXPECT_FALSE(f.feasible());
}

// A cut to the prompt's most recent tokens needs no TLM: it is charged none, and planned only when the
// ratings rate it (PairRatings::recency), by its own rating.
TEST(Orchestrator, RecencyCutsAreChargedNoTlmAndPlannedWhenRated) {
    // n = 100, budget 5 ms: a TLM cut pays 2 ms, so at m = 100 it keeps p ≤ 30 (2 + 3); a recency cut
    // keeps p ≤ 50 (5). Rated by width first, then prompt kept; recency rated like the TLM's choice.
    PairRatings ratings{};
    for (std::size_t pi = 0; pi < kRatios.size(); ++pi)
        for (std::size_t mi = 0; mi < kRatios.size(); ++mi) ratings.value[pi * kRatios.size() + mi] = float(kRatios[mi]) + 0.001f * float(kRatios[pi]);
    ratings.recency.emplace();
    ratings.recency->fill(0.0f);
    const Plan p = choose_plan(request(100, 5.0, 10.0), LinearLatency{}, ratings);
    EXPECT_EQ(p.cut, PromptCut::recency);
    EXPECT_FALSE(p.uses_tlm);
    EXPECT_EQ(p.prompt_percent, 50);
    EXPECT_EQ(p.prefill_percent, 100);
    EXPECT_NEAR(p.predicted_ttft_ms, 5.0, 1e-9);  // the prefill alone
    EXPECT_TRUE(p.feasible());
    // Rated a point below the TLM's choice at every ratio: the TLM's cut wins, and pays for its TLM.
    ratings.recency->fill(-1.0f);
    const Plan q = choose_plan(request(100, 5.0, 10.0), LinearLatency{}, ratings);
    EXPECT_EQ(q.cut, PromptCut::scores);
    EXPECT_TRUE(q.uses_tlm);
    EXPECT_EQ(q.prompt_percent, 30);
    EXPECT_NEAR(q.predicted_ttft_ms, 5.0, 1e-9);
    // Not rated at all: never planned, even where only it could meet the objective (1 ms < the TLM's 2).
    ratings.recency.reset();
    const Plan r = choose_plan(request(100, 1.0, 10.0), LinearLatency{}, ratings);
    EXPECT_EQ(r.cut, PromptCut::scores);
    EXPECT_FALSE(r.feasible());
    // Rated, that objective is met by the recency cut; model-only plans still never cut.
    ratings.recency.emplace();
    ratings.recency->fill(0.0f);
    PlanRequest tight = request(100, 1.0, 10.0);
    const Plan s = choose_plan(tight, LinearLatency{}, ratings);
    EXPECT_EQ(s.cut, PromptCut::recency);
    EXPECT_TRUE(s.feasible());
    EXPECT_LE(s.predicted_ttft_ms, 1.0);
    tight.recency_cuts = false;  // the paper's planner: TLM cuts only
    EXPECT_EQ(choose_plan(tight, LinearLatency{}, ratings).cut, PromptCut::scores);
    tight.recency_cuts = true;
    tight.elasticity = Elasticity::model_only;
    EXPECT_EQ(choose_plan(tight, LinearLatency{}, ratings).prompt_percent, 100);
}

TEST(Orchestrator, ProtectedTokensAreNeverCompressedAway) {
    EXPECT_EQ(kept_count(100, 20, 0), 20);
    EXPECT_EQ(kept_count(100, 20, 35), 35);
    EXPECT_EQ(kept_count(7, 20, 1), 1);
    PlanRequest r = request(100, 3.0, 10.0);
    r.protected_tokens = 50;
    const Plan p = choose_plan(r, LinearLatency{}, std::nullopt);
    EXPECT_GE(p.kept_tokens, 50);
}

TEST(Orchestrator, LongPromptsAreCompressedToFitTheContext) {
    PlanRequest r = request(100, 1000, 1000);  // the full model fits the SLO easily…
    r.max_kept = 45;                             // …but only 45 prompt tokens fit beside the answer
    const Plan p = choose_plan(r, LinearLatency{}, std::nullopt);
    EXPECT_LE(p.kept_tokens, 45);
    EXPECT_EQ(p.prompt_percent, 40);
    EXPECT_EQ(p.prefill_percent, 100);
    r.max_kept = 10;  // not even 20% fits: the caller gets a plan it must refuse
    EXPECT_GT(choose_plan(r, LinearLatency{}, std::nullopt).kept_tokens, 10);
}

TEST(Orchestrator, HeadroomPlansBelowTheObjective) {
    PlanRequest r = request(100, 10.5, 10.0);
    EXPECT_EQ(choose_plan(r, LinearLatency{}, std::nullopt).prefill_percent, 100);  // 10 ms ≤ 10.5
    r.headroom = 0.9;                                                               // 10 ms > 9.45
    const Plan p = choose_plan(r, LinearLatency{}, std::nullopt);
    EXPECT_LE(p.predicted_ttft_ms, 9.45);
    EXPECT_TRUE(p.uses_tlm);
    r.headroom = 0;
    EXPECT_THROW(choose_plan(r, LinearLatency{}, std::nullopt), Error);
}

// A margin takes each part's predicted time that many times over before the objective is checked; the
// plan still reports its time as predicted.
TEST(Orchestrator, MarginsPlanEachPartBelowTheObjective) {
    PlanRequest r = request(100, 10.5, 10.0);  // the full model: 10 ms, the TLM 2 ms
    r.margin.prefill = 1.1;                     // 11 ms > 10.5
    Plan p = choose_plan(r, LinearLatency{}, std::nullopt);
    EXPECT_NE(p.prefill_percent * p.prompt_percent, 100 * 100);
    ASSERT_TRUE(p.feasible());
    EXPECT_LE((p.uses_tlm ? 2.0 : 0.0) + (p.predicted_ttft_ms - (p.uses_tlm ? 2.0 : 0.0)) * 1.1, 10.5 + 1e-9);
    r.margin.tlm = 5;  // scoring would take 10 ms with its margin: the widest model-only pair that fits wins
    p = choose_plan(r, LinearLatency{}, std::nullopt);
    EXPECT_FALSE(p.uses_tlm);
    EXPECT_EQ(p.prefill_percent, 90);  // 9 ms x 1.1 = 9.9 <= 10.5; 100 %: 11 > 10.5
    EXPECT_NEAR(p.predicted_ttft_ms, 9.0, 1e-9);
    // TPOT: the full model's 1.1 ms fits 1.2, but not with 1.2x margin; decode narrows to 90 % (1.0 x 1.2).
    PlanRequest d = request(100, 1000, 1.2);
    EXPECT_EQ(choose_plan(d, LinearLatency{}, std::nullopt).decode_percent, 100);
    d.margin.decode = 1.2;
    const Plan q = choose_plan(d, LinearLatency{}, std::nullopt);
    EXPECT_EQ(q.decode_percent, 90);
    EXPECT_EQ(q.prefill_percent, 100);
    EXPECT_NEAR(q.predicted_tpot_ms, 1.0, 1e-9);
    for (double bad : {0.5, 0.0, std::nan("")}) {
        PlanRequest b = request(100, 10.5, 10.0);
        b.margin.decode = bad;
        EXPECT_THROW(choose_plan(b, LinearLatency{}, std::nullopt), Error) << bad;
    }
}

TEST(Orchestrator, AdditivePriorCombinesTheTwoDimensions) {
    std::vector<double> model, prompt;
    for (int r : kRatios) {
        model.push_back(-2.0 - (100 - r) * 0.01);   // narrowing costs 0.01 per percent
        prompt.push_back(-2.0 - (100 - r) * 0.03);  // compressing costs 0.03 per percent
    }
    const PairRatings prior = PairRatings::additive(model, prompt);
    EXPECT_NEAR(prior.at(100, 100), -2.0, 1e-6);
    EXPECT_NEAR(prior.at(50, 100), -3.5, 1e-6);
    EXPECT_NEAR(prior.at(50, 70), -3.8, 1e-6);
    // With this prior, a 9.5 ms budget (full: 10 ms) narrows the model to 90 % rather than compress at
    // 100 % (p = 70: −2.9 against −2.1): unlike the fixed prior, which prefers the wider model.
    const Plan p = choose_plan(request(100, 9.5, 10.0), LinearLatency{}, prior);
    EXPECT_EQ(p.prompt_percent, 100);
    EXPECT_EQ(p.prefill_percent, 90);
    EXPECT_FALSE(p.uses_tlm);
    model.pop_back();
    EXPECT_THROW(PairRatings::additive(model, prompt), Error);
}

TEST(Orchestrator, PairsAreRatedAtTheDecodeWidthThatAnswers) {
    // n = 100, TTFT 6 ms (TLM 2 ms): whole prompt allows m ≤ 60; compressing allows p·m ≤ 4000 (p 40 at m 100).
    // TPOT 0.45 ms: decode ≤ 30 with the whole prompt, ≤ 40 with 40–50 tokens kept.
    std::vector<double> model, prompt;
    for (int r : kRatios) {
        model.push_back(-2.0 - (100 - r) * 0.01);    // narrowing prefill and decode: 0.01 per percent
        prompt.push_back(-2.0 - (100 - r) * 0.005);  // compressing: 0.005 per percent
    }
    PairRatings prior = PairRatings::additive(model, prompt);
    PlanRequest r = request(100, 6.0, 0.45);
    // Without a decode curve the wide prefill of a compressed prompt looks best: −2.3 against −2.4 (p 100, m 60).
    const Plan blind = choose_plan(r, LinearLatency{}, prior);
    EXPECT_EQ(blind.prompt_percent, 40);
    EXPECT_EQ(blind.prefill_percent, 100);
    EXPECT_EQ(blind.decode_percent, 40);
    // Decoding narrow after a full prefill costs 0.008 per percent: the answer comes from the decode width, so
    // m 100 / d 40 on 40 % of the prompt rates −2.78, the whole prompt at m 60 / d 30 −2.64.
    for (std::size_t k = 0; k < kRatios.size(); ++k) prior.decode[k] = float(-2.0 - (100 - kRatios[k]) * 0.008);
    const Plan p = choose_plan(r, LinearLatency{}, prior);
    EXPECT_EQ(p.prompt_percent, 100);
    EXPECT_EQ(p.prefill_percent, 60);
    EXPECT_EQ(p.decode_percent, 30);
    EXPECT_FALSE(p.uses_tlm);
    EXPECT_TRUE(p.feasible());
}

TEST(Orchestrator, BadObjectivesAreErrors) {
    EXPECT_THROW(choose_plan(request(10, 0, 1), LinearLatency{}, std::nullopt), Error);
    EXPECT_THROW(choose_plan(request(10, 5, -1), LinearLatency{}, std::nullopt), Error);
    EXPECT_THROW(choose_plan(request(10, std::nan(""), 1), LinearLatency{}, std::nullopt), Error);
    EXPECT_THROW(choose_plan(request(0, 5, 1), LinearLatency{}, std::nullopt), Error);
    EXPECT_THROW(absolute(RelativeSlo{0, 50}, LinearLatency{}, 10, 10), Error);
    EXPECT_THROW(absolute(RelativeSlo{50, 120}, LinearLatency{}, 10, 10), Error);
    const Slo s = absolute(RelativeSlo{50, 20}, LinearLatency{}, 100, 0);
    EXPECT_NEAR(s.ttft_ms, 5.0, 1e-12);
    EXPECT_NEAR(s.tpot_ms, 0.2 * 1.1, 1e-12);
}

}  // namespace
}  // namespace elastilm
