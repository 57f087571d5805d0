// Where the time of a run of parallel_chunks calls goes (ThreadPool::Trace): per call, from its first
// chunk's start to its last chunk's end, the time all threads were working, the time some had started
// and others not yet, and the time some had finished and waited for the rest; and the time outside any
// call (the caller's serial work between products: norms, RoPE, attention, the hand-off).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "elastilm/runtime/thread_pool.hpp"

namespace elastilm::bench {

struct TraceSummary {
    double total_ms = 0, all_working_ms = 0, start_skew_ms = 0, waiting_ms = 0, outside_ms = 0;
    std::vector<double> waited_ms;  // per thread: time it had finished a call and waited for the others
    std::vector<double> call_waits_us;  // per call: from the first thread's end to the last one's, sorted
    int calls = 0;
};

// `begin`, `end`: the traced run's wall-clock interval.
inline TraceSummary summarize(const ThreadPool::Trace& trace, std::chrono::steady_clock::time_point begin,
                              std::chrono::steady_clock::time_point end) {
    using tp = std::chrono::steady_clock::time_point;
    auto ms = [](tp a, tp b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    const std::size_t threads = trace.chunks.size(), calls = std::size_t(trace.calls);
    // Per call and thread: the first chunk's start and the last chunk's end (none: the thread took no chunk).
    std::vector<std::vector<std::pair<tp, tp>>> span(calls, std::vector<std::pair<tp, tp>>(threads, {tp::max(), tp::min()}));
    for (std::size_t t = 0; t < threads; ++t)
        for (const auto& c : trace.chunks[t]) {
            auto& s = span[std::size_t(c.call)][t];
            s.first = std::min(s.first, c.start), s.second = std::max(s.second, c.end);
        }
    TraceSummary r;
    r.total_ms = ms(begin, end);
    r.calls = int(calls);
    r.waited_ms.assign(threads, 0);
    double inside = 0;
    for (const auto& call : span) {
        tp first_start = tp::max(), last_start = tp::min(), first_end = tp::max(), last_end = tp::min();
        for (const auto& [s, e] : call) {
            if (s == tp::max()) continue;
            first_start = std::min(first_start, s), last_start = std::max(last_start, s);
            first_end = std::min(first_end, e), last_end = std::max(last_end, e);
        }
        if (first_start == tp::max()) continue;
        inside += ms(first_start, last_end);
        r.start_skew_ms += ms(first_start, last_start);
        r.waiting_ms += ms(first_end, last_end);
        r.call_waits_us.push_back(1e3 * ms(first_end, last_end));
        r.all_working_ms += std::max(0.0, ms(last_start, first_end));
        for (std::size_t t = 0; t < threads; ++t)
            if (call[t].first != tp::max()) r.waited_ms[t] += ms(call[t].second, last_end);
    }
    r.outside_ms = r.total_ms - inside;
    std::sort(r.call_waits_us.begin(), r.call_waits_us.end());
    return r;
}

inline void print(const TraceSummary& s, const std::string& what) {
    std::printf("%s: %.2f ms, %d products | all threads working %.2f ms (%.1f %%) | some started, others not yet %.2f ms | "
                "some finished, waiting for the rest %.2f ms (%.1f %%; per thread:",
                what.c_str(), s.total_ms, s.calls, s.all_working_ms, 100 * s.all_working_ms / s.total_ms, s.start_skew_ms, s.waiting_ms,
                100 * s.waiting_ms / s.total_ms);
    for (double w : s.waited_ms) std::printf(" %.2f", w);
    std::printf(") | outside the products %.2f ms (%.1f %%)\n", s.outside_ms, 100 * s.outside_ms / s.total_ms);
    // Whether the waiting is every product's or a few long stalls': its spread over the products, and the
    // part of it in the tenth of them that waited longest.
    const std::vector<double>& w = s.call_waits_us;
    if (w.empty()) return;
    auto at = [&](double q) { return w[std::min(w.size() - 1, std::size_t(q * double(w.size())))]; };
    const auto longest_tenth = w.end() - std::ptrdiff_t(w.size() / 10);
    const double all = std::accumulate(w.begin(), w.end(), 0.0), top = std::accumulate(longest_tenth, w.end(), 0.0);
    std::printf(
        "  waiting per product, µs: median %.1f, 90th percentile %.1f, 99th %.1f, longest %.1f; the tenth of the products "
        "that waited longest hold %.0f %% of it\n",
        at(0.5), at(0.9), at(0.99), w.back(), all > 0 ? 100 * top / all : 0.0);
}

}  // namespace elastilm::bench
