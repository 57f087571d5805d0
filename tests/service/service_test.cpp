// elastilm::Service driven from several threads on a synthetic model: every request is answered with
// the tokens a direct generate() gives for its plan, streams what it returns, queue limits and
// cancellation behave, and bad requests fail alone while the service keeps serving.
#include <gtest/gtest.h>

#include <latch>
#include <thread>

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

// A scorer that prefers later tokens (pairs by the orchestrator's prior), costing 0.002 ms a token.
const PromptScorer later_is_better{[](std::span<const int> prompt) {
                                       PromptAnalysis a;
                                       for (std::size_t i = 0; i < prompt.size(); ++i) a.scores.push_back(float(i));
                                       return a;
                                   },
                                   [](int tokens) { return 0.002 * tokens; }};

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
    // The tight SLOs compressed the prompt and narrowed the model; the loose ones ran it whole.
    bool compressed = false, full = false;
    for (auto& ts : tickets)
        for (auto& tk : ts) {
            compressed |= tk.wait().plan.prompt_percent < 100 && tk.wait().plan.prefill_percent < 100;
            full |= tk.wait().plan.prompt_percent == 100 && tk.wait().plan.prefill_percent == 100;
        }
    EXPECT_TRUE(compressed);
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

}  // namespace
}  // namespace elastilm
