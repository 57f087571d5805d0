// The service under load (issue 12, part 7): 8 client threads submit thousands of mixed requests to one
// Service on a tiny synthetic model — valid ones with tight and loose SLOs, invalid ones, some cancelled
// at once or mid-answer — each client keeping many tickets in flight so the queue fills and rejects.
// Every ticket must end with a status that fits what was asked, no request may run twice or vanish,
// and resident memory may not grow from after the first thousand requests to the end. Prints the
// service's planning latency (p50 / p99), which the README reports.
//
// ELASTILM_SOAK_REQUESTS overrides the count (default 4000; 400 under ELASTILM_EMULATED, 500 under TSan,
// resident memory is checked from 2000 requests on; TSan's own bookkeeping grows with every synchronisation).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <mutex>
#include <thread>
#include <unistd.h>

#include "elastilm/model/synthetic.hpp"
#include "elastilm/service/latency_model.hpp"
#include "elastilm/service/service.hpp"

#if defined(__SANITIZE_THREAD__)
#define ELASTILM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ELASTILM_TSAN 1
#endif
#endif

namespace elastilm {
namespace {

using Cfg = Stories260K;
constexpr int kQueue = 24;  // the service's queue capacity

// The service's own LatencyModel (so planning runs the code it runs when serving), with coefficients a
// tiny model could have: TTFT = 0.001 ms × tokens × width, TPOT = 0.05 ms × width.
LatencyModel tiny_latency() {
    std::vector<RatioLatency> ratios;
    for (int p : kRatios) {
        RatioLatency r;
        r.percent = p;
        r.ttft = {0.0, 0.001 * p / 100.0, 0.0};
        r.tpot = {0.05 * p / 100.0, 0.0};
        ratios.push_back(r);
    }
    return LatencyModel({}, ratios, "soak");
}

// Resident set size in bytes (/proc/self/statm's second field), 0 where /proc is missing.
std::size_t resident_bytes() {
    std::ifstream f("/proc/self/statm");
    std::size_t pages = 0, resident = 0;
    if (!(f >> pages >> resident)) return 0;
    return resident * std::size_t(sysconf(_SC_PAGESIZE));
}

int soak_requests() {
    if (const char* e = std::getenv("ELASTILM_SOAK_REQUESTS")) return std::max(100, std::atoi(e));
#ifdef ELASTILM_TSAN
    return 500;  // TSan slows every synchronisation ~10x; races show within a few hundred requests
#else
    return std::getenv("ELASTILM_EMULATED") ? 400 : 4000;  // qemu: ~10x slower
#endif
}

enum class Kind : std::uint8_t { valid, invalid, cancel_queued, cancel_running };

// What request `i` is: deterministic, so a failure can be replayed.
Kind kind_of(int i) {
    switch (i % 10) {
        case 3: return Kind::invalid;
        case 6: return Kind::cancel_queued;
        case 8: return Kind::cancel_running;
        default: return Kind::valid;
    }
}

struct Books {
    explicit Books(int n) : started(n), results(n), streamed(n) {}
    std::vector<std::atomic<int>> started;   // times the worker began answering request i
    std::vector<std::atomic<int>> results;   // times a client received request i's result
    std::vector<std::atomic<int>> streamed;  // tokens streamed for request i
    std::mutex mutex;
    std::vector<double> plan_ms;
    int status_count[4] = {};
    std::vector<std::string> problems;
    void problem(std::string s) {
        std::lock_guard lock(mutex);
        if (problems.size() < 20) problems.push_back(std::move(s));
    }
};

ServiceRequest make_request(int i, Books& books) {
    ServiceRequest r;
    std::vector<int> context(20 + i % 61), question(3 + i % 5);
    for (std::size_t t = 0; t < context.size(); ++t) context[t] = 3 + int((t * 31 + std::size_t(i) * 7) % (Cfg::vocab_size - 3));
    for (std::size_t t = 0; t < question.size(); ++t) question[t] = 3 + int((t * 13 + std::size_t(i)) % (Cfg::vocab_size - 3));
    r.prompt = {PromptPart{{}, context, false}, PromptPart{{}, question, true}};
    r.max_new_tokens = 1 + i % 4;
    const double level = 20 + 10 * (i % 9);  // the nine SLO levels, as percent of the full model
    r.slo = RelativeSlo{level, 100.0 - 10.0 * ((i / 9) % 9)};
    r.elasticity = static_cast<Elasticity>((i / 3) % 4);
    if (kind_of(i) == Kind::invalid) {
        switch ((i / 10) % 4) {
            case 0: r.prompt[0].ids.push_back(Cfg::vocab_size + i); break;  // outside the vocabulary
            case 1: r.slo = Slo{std::nan(""), 1.0}; break;
            case 2: r.prompt.clear(); break;
            default: r.max_new_tokens = 0; break;
        }
    }
    if (kind_of(i) == Kind::cancel_running) r.max_new_tokens = 6;
    r.on_token = [&books, i, first = true](int, const std::string&) mutable {
        if (first) books.started[i].fetch_add(1);
        first = false;
        books.streamed[i].fetch_add(1);
        return true;
    };
    return r;
}

// Checks one finished request against what it was.
void settle(int i, const ServiceResult& r, Books& books) {
    books.results[i].fetch_add(1);
    const Kind k = kind_of(i);
    auto bad = [&](const std::string& why) { books.problem("request " + std::to_string(i) + ": " + why + " (" + r.error + ")"); };
    switch (r.status) {
        case RequestStatus::done:
            if (k == Kind::invalid) bad("invalid request answered");
            if (r.tokens.empty()) bad("done without tokens");
            if (books.streamed[i].load() != int(r.tokens.size())) bad("streamed tokens differ from the result's");
            break;
        case RequestStatus::failed:
            if (k != Kind::invalid) bad("valid request failed");
            if (r.error.empty()) bad("failed without a message");
            break;
        case RequestStatus::cancelled:
            if (k != Kind::cancel_queued && k != Kind::cancel_running) bad("cancelled but never cancelled");
            break;
        case RequestStatus::rejected:
            if (r.error.find("queue full") == std::string::npos) bad("rejected for another reason than a full queue");
            if (books.started[i].load() != 0) bad("rejected, yet it ran");
            break;
    }
    std::lock_guard lock(books.mutex);
    ++books.status_count[int(r.status)];
    if (r.status == RequestStatus::done) books.plan_ms.push_back(r.plan_ms);
}

// Clients take request numbers [first, last) in turn; each keeps up to 12 tickets in flight.
void run_clients(Service<Cfg, LatencyModel>& service, Books& books, int first, int last) {
    constexpr int kClients = 8, kInFlight = 12;  // 96 tickets in flight against a queue of 24: it fills
    std::atomic<int> next{first};
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c)
        clients.emplace_back([&] {
            std::deque<std::pair<int, Ticket>> flight;
            auto drain_one = [&] {
                auto [i, t] = flight.front();
                flight.pop_front();
                const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
                while (!t.ready() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::microseconds(200));
                if (!t.ready()) {
                    books.problem("request " + std::to_string(i) + " never ended");
                    return;
                }
                settle(i, t.wait(), books);
            };
            for (int i; (i = next.fetch_add(1)) < last;) {
                Ticket t = service.submit(make_request(i, books));
                const bool rejected = t.ready() && t.wait().status == RequestStatus::rejected;
                if (kind_of(i) == Kind::cancel_queued) t.cancel();
                flight.emplace_back(i, t);
                if (kind_of(i) == Kind::cancel_running) {
                    // Cancel once it streams (or ends): exercises the cancel-while-running path.
                    for (int spin = 0; spin < 2000 && books.started[i].load() == 0 && !t.ready(); ++spin)
                        std::this_thread::sleep_for(std::chrono::microseconds(20));
                    t.cancel();
                }
                if (rejected)  // back off until the queue is half empty (a polite app does the same)
                    while (service.queued() > kQueue / 2) std::this_thread::sleep_for(std::chrono::microseconds(200));
                if (int(flight.size()) >= kInFlight) drain_one();
            }
            while (!flight.empty()) drain_one();
        });
    for (auto& c : clients) c.join();
}

double percentile(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, std::size_t(q * double(v.size())))];
}

TEST(ServiceSoak, EveryTicketEndsOnceAndMemoryStaysFlat) {
    const int n = soak_requests();
    Model<Cfg> model(synthetic_weights<Cfg>({DType::f32, 23}));
    ThreadPool pool(1);
    const LatencyModel latency = tiny_latency();
    const PromptScorer scorer{[](std::span<const int> prompt, std::span<const std::uint8_t>) {
                                  PromptAnalysis a;
                                  for (std::size_t i = 0; i < prompt.size(); ++i) a.scores.push_back(float((i * 7) % 11));
                                  return a;
                              },
                              [](int tokens) { return 0.0002 * tokens; }};
    ServiceOptions options;
    options.queue_capacity = kQueue;
    Books books(n);
    const auto t0 = std::chrono::steady_clock::now();
    std::size_t rss_first = 0, rss_last = 0;
    {
        Service<Cfg, LatencyModel> service(model, nullptr, pool, latency, scorer, options);
        const int first = std::min(1000, n / 2);
        run_clients(service, books, 0, first);
        rss_first = resident_bytes();
        run_clients(service, books, first, n);
        rss_last = resident_bytes();
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    for (const std::string& p : books.problems) ADD_FAILURE() << p;
    int lost = 0, twice = 0, ran_twice = 0;
    for (int i = 0; i < n; ++i) {
        lost += books.results[i].load() == 0;
        twice += books.results[i].load() > 1;
        ran_twice += books.started[i].load() > 1;
    }
    EXPECT_EQ(lost, 0);
    EXPECT_EQ(twice, 0);
    EXPECT_EQ(ran_twice, 0);
    const int* s = books.status_count;
    EXPECT_EQ(s[0] + s[1] + s[2] + s[3], n);
    // The mix really happened: answers, failures, cancellations and a full queue.
    EXPECT_GT(s[int(RequestStatus::done)], n / 4);
    EXPECT_GT(s[int(RequestStatus::failed)], 0);
    EXPECT_GT(s[int(RequestStatus::cancelled)], 0);
    EXPECT_GT(s[int(RequestStatus::rejected)], 0);

    const double p50 = percentile(books.plan_ms, 0.5), p99 = percentile(books.plan_ms, 0.99);
    std::printf("soak: %d requests from 8 threads in %.1f s: %d done, %d cancelled, %d rejected (queue full), %d failed (invalid)\n"
                "soak: planning latency p50 %.3f ms, p99 %.3f ms (%zu answered requests); RSS after %d requests %.1f MB, at the end %.1f MB\n",
                n, seconds, s[0], s[1], s[2], s[3], p50, p99, books.plan_ms.size(), std::min(1000, n / 2), rss_first / 1e6, rss_last / 1e6);
    RecordProperty("plan_ms_p50", std::to_string(p50));
    RecordProperty("plan_ms_p99", std::to_string(p99));
#ifndef ELASTILM_TSAN  // TSan's own bookkeeping grows with every synchronisation it records
    if (rss_first > 0 && n >= 2000) {
        EXPECT_LE(rss_last, rss_first + (std::size_t(1) << 20))
            << "resident memory grew by " << (double(rss_last) - double(rss_first)) / 1e6 << " MB";
    }
#endif
}

}  // namespace
}  // namespace elastilm
