// ThreadPool::parallel_chunks: every item exactly once, in chunks whose boundaries are multiples of the
// grain, each chunk's `next` the chunk the same thread runs after it; the static split as parallel_for's.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "elastilm/runtime/thread_pool.hpp"

namespace {

using elastilm::ThreadPool;

struct Seen {
    std::thread::id thread;
    ThreadPool::Range chunk, next;
};

// The chunks of one call, in the order each thread ran them.
std::vector<Seen> run(ThreadPool& pool, int n, int grain, ThreadPool::Split split, std::vector<std::atomic<int>>& hits) {
    std::mutex m;
    std::vector<Seen> seen;
    pool.parallel_chunks(
        n,
        [&](ThreadPool::Range chunk, ThreadPool::Range next) {
            for (int i = chunk.begin; i < chunk.end; ++i) hits[std::size_t(i)].fetch_add(1, std::memory_order_relaxed);
            std::lock_guard lock(m);
            seen.push_back({std::this_thread::get_id(), chunk, next});
        },
        grain, split);
    return seen;
}

TEST(ThreadPool, ParallelChunksCoverEveryItemOnceWithNextOfTheSameThread) {
    for (int threads : {1, 2, 3})
        for (ThreadPool::Split split : {ThreadPool::Split::dynamic, ThreadPool::Split::static_shares}) {
            ThreadPool pool(threads);
            for (int n : {0, 1, 15, 16, 17, 100, 1000, 5632 + 2048})
                for (int grain : {1, 16}) {
                    std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
                    const std::vector<Seen> seen = run(pool, n, grain, split, hits);
                    for (int i = 0; i < n; ++i) ASSERT_EQ(hits[std::size_t(i)].load(), 1) << "item " << i << " of " << n;
                    for (std::size_t k = 0; k < seen.size(); ++k) {
                        const Seen& s = seen[k];
                        ASSERT_FALSE(s.chunk.empty());
                        EXPECT_TRUE(s.chunk.begin % grain == 0 && (s.chunk.end % grain == 0 || s.chunk.end == n)) << s.chunk.begin << ".." << s.chunk.end;
                        // `next` is what this thread runs after this chunk: its next chunk, or empty when it has none.
                        ThreadPool::Range after{n, n};
                        for (std::size_t j = k + 1; j < seen.size(); ++j)
                            if (seen[j].thread == s.thread) {
                                after = seen[j].chunk;
                                break;
                            }
                        if (after.empty()) {
                            EXPECT_TRUE(s.next.empty()) << "n " << n << " threads " << threads;
                        } else {
                            EXPECT_EQ(s.next.begin, after.begin) << "n " << n << " threads " << threads;
                            EXPECT_EQ(s.next.end, after.end) << "n " << n << " threads " << threads;
                        }
                        if (split == ThreadPool::Split::static_shares) {
                            EXPECT_TRUE(s.next.empty());
                        }
                    }
                    if (split == ThreadPool::Split::static_shares) {
                        EXPECT_LE(seen.size(), std::size_t(threads));
                    }
                }
        }
}

// Dynamic chunks shrink: with 2 threads a 1000-item range is neither one chunk per thread nor one per grain.
TEST(ThreadPool, DynamicChunksShrinkTowardsTheGrain) {
    ThreadPool pool(2);
    std::vector<std::atomic<int>> hits(1000);
    const std::vector<Seen> seen = run(pool, 1000, 16, ThreadPool::Split::dynamic, hits);
    EXPECT_GT(seen.size(), 4u);
    EXPECT_LT(seen.size(), 1000u / 16);
    int largest = 0, smallest = 1000;
    for (const Seen& s : seen) largest = std::max(largest, s.chunk.end - s.chunk.begin), smallest = std::min(smallest, s.chunk.end - s.chunk.begin);
    EXPECT_EQ(largest, 1000 / 4 / 16 * 16);  // the first: half of one thread's share
    EXPECT_LE(smallest, 16);
}

TEST(ThreadPool, TraceRecordsEveryChunkPerThreadAndNumbersTheCalls) {
    ThreadPool pool(2);
    ThreadPool::Trace trace;
    pool.set_trace(&trace);
    std::vector<std::atomic<int>> hits(500);
    const std::size_t first = run(pool, 500, 16, ThreadPool::Split::dynamic, hits).size();
    const std::size_t second = run(pool, 500, 16, ThreadPool::Split::static_shares, hits).size();
    pool.set_trace(nullptr);
    run(pool, 500, 16, ThreadPool::Split::dynamic, hits);  // not traced
    EXPECT_EQ(trace.calls, 2);
    ASSERT_EQ(trace.chunks.size(), 2u);
    std::size_t recorded[2] = {0, 0};
    for (const auto& per_thread : trace.chunks)
        for (const auto& c : per_thread) {
            ASSERT_TRUE(c.call == 0 || c.call == 1);
            EXPECT_LE(c.start, c.end);
            ++recorded[c.call];
        }
    EXPECT_EQ(recorded[0], first);
    EXPECT_EQ(recorded[1], second);
}

}  // namespace
