// The orchestrator's choices under a fake latency model whose times are simple functions of width and
// length, so every expectation can be worked out by hand.
#include <gtest/gtest.h>

#include <cmath>

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
    const Plan p = choose_plan(request(100, 0.01, 0.01), LinearLatency{}, std::nullopt);
    EXPECT_FALSE(p.ttft_feasible);
    EXPECT_FALSE(p.tpot_feasible);
    EXPECT_EQ(p.prompt_percent, 20);
    EXPECT_EQ(p.prefill_percent, 20);
    EXPECT_EQ(p.decode_percent, 20);
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
