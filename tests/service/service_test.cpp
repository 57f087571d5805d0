// elastilm::Service driven from several threads on a synthetic model: every request is answered with
// the tokens a direct generate() gives for its plan, streams what it returns, queue limits and
// cancellation behave, and bad requests fail alone while the service keeps serving.
#include <gtest/gtest.h>

#include <latch>
#include <thread>
#include <tuple>

#include "elastilm/model/synthetic.hpp"
#include "elastilm/service/service.hpp"

namespace elastilm {
namespace {

using Cfg = Stories260K;

// Times proportional to the work: TTFT 0.01 ms × tokens × width, TPOT 1 ms × width.
struct FakeLatency {
    double ttft_ms(int percent, int tokens) const { return 0.01 * tokens * percent / 100.0; }
    double tpot_ms(int percent, int) const { return percent / 100.0; }
};

std::vector<int> ids(int n, int salt) {
    std::vector<int> t(n);
    for (int i = 0; i < n; ++i) t[i] = 3 + (i * 29 + salt * 7) % (Cfg::vocab_size - 3);
    return t;
}

// A scorer that prefers later tokens (pairs by the orchestrator's prior), costing 0.0002 ms a token:
// cheap enough that compressing pays for it (66 tokens: 0.013 ms against 0.66 ms of full prefill).
const PromptScorer later_is_better{[](std::span<const int> prompt, std::span<const std::uint8_t>) {
                                       PromptAnalysis a;
                                       for (std::size_t i = 0; i < prompt.size(); ++i) a.scores.push_back(float(i));
                                       return a;
                                   },
                                   [](int tokens) { return 0.0002 * tokens; }};

ServiceOptions queue_of(int capacity) {
    ServiceOptions o;
    o.queue_capacity = capacity;
    return o;
}

struct Fixture {
    Model<Cfg> model{synthetic_weights<Cfg>({DType::f32, 5})};
    ThreadPool pool{1};
    FakeLatency latency;
};

ServiceRequest request(std::vector<int> context, std::vector<int> question, Slo slo, int new_tokens = 6) {
    ServiceRequest r;
    r.prompt = {PromptPart{{}, std::move(context), false}, PromptPart{{}, std::move(question), true}};
    r.slo = slo;
    r.max_new_tokens = new_tokens;
    return r;
}

TEST(Service, AnswersFromManyThreadsLikeADirectRun) {
    Fixture f;
    Service<Cfg, FakeLatency> service(f.model, nullptr, f.pool, f.latency, later_is_better, queue_of(64));
    constexpr int kThreads = 4, kPerThread = 5;
    std::vector<std::vector<Ticket>> tickets(kThreads);
    std::vector<std::vector<std::vector<int>>> streamed(kThreads, std::vector<std::vector<int>>(kPerThread));
    std::vector<std::thread> apps;
    for (int t = 0; t < kThreads; ++t)
        apps.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; ++i) {
                // SLOs from tight (compress and shrink) to generous (full model, whatever the queueing).
                const int k = (t + i) % 5;
                const double level = k == 4 ? 1e6 : 0.2 + 0.2 * k;
                ServiceRequest r = request(ids(60, t * 10 + i), ids(5, 99), {0.01 * 66 * level, level + 0.05});
                r.on_token = [&, t, i](int id, const std::string&) {
                    streamed[t][i].push_back(id);
                    return true;
                };
                tickets[t].push_back(service.submit(std::move(r)));
            }
        });
    for (auto& a : apps) a.join();

    ThreadPool pool(1);
    Session<Cfg> direct(f.model, pool);
    for (int t = 0; t < kThreads; ++t)
        for (int i = 0; i < kPerThread; ++i) {
            const ServiceResult& r = tickets[t][i].wait();
            ASSERT_EQ(r.status, RequestStatus::done) << r.error;
            EXPECT_EQ(r.tokens, streamed[t][i]);
            EXPECT_EQ(int(r.tokens.size()), 6);
            EXPECT_EQ(int(r.kept_ids.size()), r.plan.kept_tokens);
            EXPECT_LE(r.plan.decode_percent, r.plan.prefill_percent);
            // The question (protected) survives compression, in order, at the end.
            const auto q = ids(5, 99);
            EXPECT_TRUE(std::equal(q.begin(), q.end(), r.kept_ids.end() - 5));
            // Same tokens as running the chosen plan directly.
            direct.reset();
            GenerateOptions g;
            g.max_new_tokens = 6;
            g.eos_id = -1;
            g.prefill_percent = r.plan.prefill_percent;
            g.decode_percent = r.plan.decode_percent;
            EXPECT_EQ(generate(direct, r.kept_ids, g).tokens, r.tokens);
        }
    // The tight SLOs compressed the prompt (with the TLM) or narrowed the model; the loose ones ran it whole.
    bool compressed = false, narrowed = false, full = false;
    for (auto& ts : tickets)
        for (auto& tk : ts) {
            const Plan& p = tk.wait().plan;
            compressed |= p.prompt_percent < 100 && p.uses_tlm;
            narrowed |= p.prefill_percent < 100;
            full |= p.prompt_percent == 100 && p.prefill_percent == 100 && !p.uses_tlm;
        }
    EXPECT_TRUE(compressed);
    EXPECT_TRUE(narrowed);
    EXPECT_TRUE(full);
}

TEST(Service, FullQueueRejectsAndCancellationWorks) {
    Fixture f;
    Service<Cfg, FakeLatency> service(f.model, nullptr, f.pool, f.latency, {}, queue_of(2));
    std::latch started(1), release(1);
    ServiceRequest blocker = request(ids(8, 1), {}, {1e6, 1e6}, 20);
    blocker.on_token = [&, first = true](int, const std::string&) mutable {
        if (first) { first = false; started.count_down(); release.wait(); }
        return true;
    };
    Ticket running = service.submit(std::move(blocker));
    started.wait();  // the worker is inside the first request: the queue is empty
    Ticket queued1 = service.submit(request(ids(8, 2), {}, {1e6, 1e6}));
    Ticket queued2 = service.submit(request(ids(8, 3), {}, {1e6, 1e6}));
    Ticket rejected = service.submit(request(ids(8, 4), {}, {1e6, 1e6}));
    EXPECT_EQ(rejected.wait().status, RequestStatus::rejected);
    EXPECT_NE(rejected.wait().error.find("queue full"), std::string::npos);
    queued1.cancel();
    running.cancel();
    release.count_down();
    EXPECT_EQ(running.wait().status, RequestStatus::cancelled);
    EXPECT_LT(running.wait().tokens.size(), 20u);
    EXPECT_EQ(queued1.wait().status, RequestStatus::cancelled);
    EXPECT_EQ(queued2.wait().status, RequestStatus::done);
}

TEST(Service, BadRequestsFailAloneAndTheServiceGoesOn) {
    Fixture f;
    Service<Cfg, FakeLatency> service(f.model, nullptr, f.pool, f.latency, later_is_better, queue_of(16));
    auto fails = [&](ServiceRequest r, const std::string& needle) {
        const ServiceResult& res = service.submit(std::move(r)).wait();
        EXPECT_EQ(res.status, RequestStatus::failed);
        EXPECT_NE(res.error.find(needle), std::string::npos) << "wanted '" << needle << "' in: " << res.error;
    };
    fails(request({}, {}, {10, 10}), "empty prompt");
    fails(request({5, Cfg::vocab_size}, {}, {10, 10}), "outside the vocabulary");
    fails(request(ids(5, 1), {}, {std::nan(""), 10}), "TTFT objective");
    fails(request(ids(5, 1), {}, {10, 0}), "TPOT objective");
    ServiceRequest rel = request(ids(5, 1), {}, {10, 10});
    rel.slo = RelativeSlo{0, 50};
    fails(std::move(rel), "relative level");
    ServiceRequest text;
    text.prompt = {PromptPart{"hello", {}, false}};
    fails(std::move(text), "no tokenizer");
    // Longer than the context even at 20%: refused clearly; a long prompt that can shrink is served.
    fails(request(ids(600, 1), ids(550, 2), {1e6, 1e6}), "exceed the context");
    const ServiceResult& shrunk = service.submit(request(ids(900, 3), ids(4, 2), {1e6, 1e6})).wait();
    ASSERT_EQ(shrunk.status, RequestStatus::done) << shrunk.error;
    EXPECT_LE(int(shrunk.kept_ids.size()) + 6, Cfg::context);
    // Impossible SLO: served with the fastest plan and flagged, no exception.
    const ServiceResult& impossible = service.submit(request(ids(40, 1), {}, {1e-6, 1e-6})).wait();
    ASSERT_EQ(impossible.status, RequestStatus::done) << impossible.error;
    EXPECT_FALSE(impossible.plan.feasible());
    EXPECT_FALSE(impossible.slo_met());
    EXPECT_EQ(impossible.plan.prefill_percent, 20);
}

// prepare_prompt decides on the TLM before running it: a scorer that counts its calls.
struct CountingScorer {
    int calls = 0;
    double ms_per_token = 0.002;
    PromptScorer scorer() {
        return {[this](std::span<const int> prompt, std::span<const std::uint8_t>) {
                    ++calls;
                    PromptAnalysis a;
                    for (std::size_t i = 0; i < prompt.size(); ++i) a.scores.push_back(float(i));
                    return a;
                },
                [this](int tokens) { return ms_per_token * tokens; }};
    }
};

TokenizedPrompt tokenized(int context, int question) {
    TokenizedPrompt p;
    p.ids = {1};
    p.keep = {1};
    for (int id : ids(context, 1)) p.ids.push_back(id), p.keep.push_back(0);
    for (int id : ids(question, 2)) p.ids.push_back(id), p.keep.push_back(1);
    return p;
}

PlanRequest objective(double ttft_ms, double tpot_ms) {
    PlanRequest r;
    r.new_tokens = 4;
    r.slo = {ttft_ms, tpot_ms};
    r.headroom = 1.0;
    return r;
}

TEST(PreparePrompt, LooseSloGetsTheFullModelAndNoTlm) {
    CountingScorer c;
    const TokenizedPrompt p = tokenized(300, 9);  // 310 tokens: 3.1 ms at full width under FakeLatency
    const PreparedPrompt out = prepare_prompt(p, objective(50, 10), FakeLatency{}, c.scorer(), [] { return 0.0; });
    EXPECT_EQ(c.calls, 0);
    EXPECT_FALSE(out.plan.uses_tlm);
    EXPECT_EQ(out.plan.prompt_percent, 100);
    EXPECT_EQ(out.plan.prefill_percent, 100);
    EXPECT_EQ(out.plan.decode_percent, 100);
    EXPECT_EQ(out.kept, p.ids);
}

TEST(PreparePrompt, ScoringThatCannotPayForItselfDoesNotRun) {
    // TTFT 2.9 ms: the full model (3.1 ms) misses, 90% (2.79 ms) fits. Scoring takes 0.01 ms a token =
    // 3.1 ms, more than the whole budget: no compressing plan can meet it, so the TLM must not run.
    CountingScorer c;
    c.ms_per_token = 0.01;
    const TokenizedPrompt p = tokenized(300, 9);
    const PreparedPrompt out = prepare_prompt(p, objective(2.9, 10), FakeLatency{}, c.scorer(), [] { return 0.0; });
    EXPECT_EQ(c.calls, 0);
    EXPECT_FALSE(out.plan.uses_tlm);
    EXPECT_EQ(out.plan.prompt_percent, 100);
    EXPECT_EQ(out.plan.prefill_percent, 90);
    EXPECT_TRUE(out.plan.feasible());
    EXPECT_EQ(out.kept, p.ids);
}

TEST(PreparePrompt, TightTtftOnALongPromptCompresses) {
    // 1010 tokens: 10.1 ms at full width. TTFT 3.5 ms; scoring 2.02 ms. Widest model first: m = 100
    // keeps p = 10… → 20% (202 tokens, 2.02 + 2.02 = 4.04 ms) misses; m = 70: 2.02 + 0.7·0.01·202 = 3.43 ✓.
    CountingScorer c;
    const TokenizedPrompt p = tokenized(1000, 9);
    const PreparedPrompt out = prepare_prompt(p, objective(3.5, 10), FakeLatency{}, c.scorer(), [] { return 0.0; });
    EXPECT_EQ(c.calls, 1);
    EXPECT_TRUE(out.plan.uses_tlm);
    EXPECT_LT(out.plan.prompt_percent, 100);
    EXPECT_EQ(int(out.kept.size()), out.plan.kept_tokens);
    EXPECT_LT(out.kept.size(), p.ids.size());
    EXPECT_TRUE(std::equal(p.ids.end() - 9, p.ids.end(), out.kept.end() - 9));  // the question survives
    EXPECT_TRUE(out.plan.feasible());
    // The model-only plan for the same objective would have to shrink the model further.
    PlanRequest mo = objective(3.5, 10);
    mo.elasticity = Elasticity::model_only;
    CountingScorer none;
    const PreparedPrompt narrow = prepare_prompt(p, mo, FakeLatency{}, none.scorer(), [] { return 0.0; });
    EXPECT_EQ(none.calls, 0);
    EXPECT_LT(narrow.plan.prefill_percent, out.plan.prefill_percent);
}

TEST(PreparePrompt, ARatedRecencyCutKeepsTheLatestTokensWithoutTheTlm) {
    // The same 1010 tokens and 3.5 ms: cutting by recency costs no scoring, so m = 100 keeps p = 30
    // (303 tokens, 3.03 ms), rated above every plan the TLM's 2.02 ms leaves (m ≤ 70 at p = 20).
    CountingScorer c;
    PromptScorer scorer = c.scorer();
    const std::vector<double> rising{1, 2, 3, 4, 5, 6, 7, 8, 9};
    scorer.prior = PairRatings::additive(rising, rising);
    scorer.prior->recency.emplace();
    scorer.prior->recency->fill(0.0f);
    const TokenizedPrompt p = tokenized(1000, 9);
    const PreparedPrompt out = prepare_prompt(p, objective(3.5, 10), FakeLatency{}, scorer, [] { return 0.0; });
    EXPECT_EQ(c.calls, 0);
    EXPECT_FALSE(out.plan.uses_tlm);
    EXPECT_EQ(out.plan.cut, PromptCut::recency);
    EXPECT_EQ(out.plan.prompt_percent, 30);
    EXPECT_EQ(out.plan.prefill_percent, 100);
    EXPECT_EQ(out.tlm_ms, 0.0);
    // BOS, the last 293 context tokens, the question: 303 in prompt order.
    std::vector<int> expected{p.ids.front()};
    expected.insert(expected.end(), p.ids.end() - 9 - 293, p.ids.end());
    EXPECT_EQ(out.kept, expected);
    EXPECT_EQ(int(out.kept.size()), out.plan.kept_tokens);
    EXPECT_TRUE(out.plan.feasible());
}

// ServiceOptions::recency_cuts: on, a Service whose prior rates recency cuts serves a tight TTFT with one
// and no TLM run; off, the same request is cut by the TLM's scores. The latency is 100× FakeLatency's, so
// the milliseconds the Service itself spends before planning (more under ThreadSanitizer) cannot move
// the plan: the objective leaves ~16 ms to spare.
TEST(Service, RecencyCutsFollowTheOption) {
    struct SlowLatency {
        double ttft_ms(int percent, int tokens) const { return 1.0 * tokens * percent / 100.0; }
        double tpot_ms(int percent, int) const { return percent / 100.0; }
    } latency;
    Fixture f;
    CountingScorer c;
    PromptScorer scorer = c.scorer();
    // Width matters much more than prompt kept: compressing to keep the full width beats model-only plans;
    // recency cuts are rated a little above the TLM's at every ratio.
    scorer.prior = PairRatings::additive(std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 9}, std::vector<double>{8.2, 8.3, 8.4, 8.5, 8.6, 8.7, 8.8, 8.9, 9});
    scorer.prior->recency.emplace();
    scorer.prior->recency->fill(0.05f);
    auto serve = [&](bool recency_cuts) {
        ServiceOptions o;
        o.recency_cuts = recency_cuts;
        o.latency_feedback = 0;  // plan by FakeLatency as it is, so both runs see the same predictions
        o.confidence = 0;
        Service<Cfg, SlowLatency> service(f.model, nullptr, f.pool, latency, scorer, o);
        // ~206 tokens: 206 ms at full width. TTFT 120 ms: a recency cut keeps 50 % at full width (~104 ms);
        // so does a TLM cut (its predicted 0.41 ms and real microseconds barely count); model only would
        // need 50 % width, rated far lower.
        return service.submit(request(ids(200, 1), ids(6, 2), {120, 10})).wait();
    };
    // Either way half the prompt at full width; only the cut, and whether the TLM ran, differ.
    for (const auto& [recency_cuts, cut, tlm_calls] : {std::tuple{true, PromptCut::recency, 0}, std::tuple{false, PromptCut::scores, 1}}) {
        const ServiceResult r = serve(recency_cuts);
        ASSERT_EQ(r.status, RequestStatus::done) << r.error;
        EXPECT_EQ(r.plan.cut, cut) << recency_cuts;
        EXPECT_EQ(r.plan.prompt_percent, 50) << recency_cuts;
        EXPECT_EQ(r.plan.prefill_percent, 100) << recency_cuts;
        EXPECT_EQ(c.calls, tlm_calls) << recency_cuts;
    }
}

}  // namespace
}  // namespace elastilm
