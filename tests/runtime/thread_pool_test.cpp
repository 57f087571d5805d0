// ThreadPool::parallel_chunks: every item exactly once, in chunks whose boundaries are multiples of the
// grain, each chunk's `next` the chunk the same thread runs after it; the static split as parallel_for's;
// the stealing split starting each thread on its own share, relieving a slow one and claiming a chunk
// only when it is asked for.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
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
        [&](ThreadPool::Range chunk, ThreadPool::Next& next) {
            for (int i = chunk.begin; i < chunk.end; ++i) hits[std::size_t(i)].fetch_add(1, std::memory_order_relaxed);
            const ThreadPool::Range after = next.get();  // as a kernel's prefetch asks for it at the chunk's end
            std::lock_guard lock(m);
            seen.push_back({std::this_thread::get_id(), chunk, after});
        },
        grain, split);
    return seen;
}

TEST(ThreadPool, ParallelChunksCoverEveryItemOnceWithNextOfTheSameThread) {
    for (int threads : {1, 2, 3})
        for (ThreadPool::Split split : {ThreadPool::Split::stealing, ThreadPool::Split::stealing_committed, ThreadPool::Split::dynamic,
                                        ThreadPool::Split::static_shares}) {
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

// Stealing: each thread starts at the front of its own share (the static split) with half of it, then
// the chunks shrink towards the grain. Split::stealing_committed starts with all of it but the last eighth.
TEST(ThreadPool, StealingStartsEachThreadOnItsOwnShare) {
    for (ThreadPool::Split split : {ThreadPool::Split::stealing, ThreadPool::Split::stealing_committed}) {
        ThreadPool pool(2);
        std::vector<std::atomic<int>> hits(1000);
        const std::vector<Seen> seen = run(pool, 1000, 16, split, hits);
        EXPECT_GT(seen.size(), 2u);
        int smallest = 1000;
        for (const Seen& s : seen) smallest = std::min(smallest, s.chunk.end - s.chunk.begin);
        EXPECT_LE(smallest, 16);
        // Shares: [0, 496) and [496, 1000). The caller's first chunk begins at 0 and the worker's at 496
        // whenever each starts, because a helper takes from a share's back, never its front; the caller's
        // is [0, 240) ([0, 432) committed) unless the worker, done first, has already taken part of its share.
        const int first_end = split == ThreadPool::Split::stealing ? 496 / 2 / 16 * 16 : (496 - 496 / 8) / 16 * 16;
        const std::thread::id caller = std::this_thread::get_id();
        bool caller_first = true, worker_first = true;
        for (const Seen& s : seen) {
            if (s.thread == caller && caller_first) {
                EXPECT_EQ(s.chunk.begin, 0);
                EXPECT_LE(s.chunk.end, first_end);
                EXPECT_EQ(s.chunk.end % 16, 0);
                caller_first = false;
            } else if (s.thread != caller && worker_first) {
                EXPECT_EQ(s.chunk.begin, 496);
                EXPECT_LE(s.chunk.end, 496 + first_end);
                worker_first = false;
            }
        }
    }
}

// Split::stealing claims a thread's next chunk only when its `next` is asked for (or the chunk is done):
// a worker held up in its first chunk, which does not ask, keeps only that chunk — half its share — and
// the caller runs the rest. Split::stealing_committed claimed the next chunk up front: the worker kept
// 15/16 of its share.
TEST(ThreadPool, StealingClaimsTheNextChunkOnlyWhenAsked) {
    ThreadPool pool(2);
    const std::thread::id caller = std::this_thread::get_id();
    for (ThreadPool::Split split : {ThreadPool::Split::stealing, ThreadPool::Split::stealing_committed}) {
        std::vector<std::atomic<int>> hits(4096);
        std::atomic<int> by_caller{0}, worker_chunks{0};
        std::atomic<bool> worker_started{false};
        pool.parallel_chunks(
            4096,
            [&](ThreadPool::Range chunk, ThreadPool::Next&) {
                if (std::this_thread::get_id() != caller) {
                    if (worker_chunks++ == 0) {
                        worker_started = true;
                        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // held up in its first chunk
                    }
                } else {
                    while (!worker_started) std::this_thread::yield();  // both start on their own shares
                    by_caller += chunk.end - chunk.begin;
                }
                for (int i = chunk.begin; i < chunk.end; ++i) hits[std::size_t(i)].fetch_add(1, std::memory_order_relaxed);
            },
            16, split);
        for (int i = 0; i < 4096; ++i) ASSERT_EQ(hits[std::size_t(i)].load(), 1) << i;
        if (split == ThreadPool::Split::stealing) {
            EXPECT_EQ(worker_chunks.load(), 1);
            EXPECT_EQ(by_caller.load(), 4096 - 1024);
        } else {
            EXPECT_EQ(by_caller.load(), 2048 + 128);  // its share and the worker's last 1/16, all the worker had not claimed
        }
    }
}

// A thread that is held up has the tail of its share taken by the other: every item still runs once, and
// the other thread runs most of the range.
TEST(ThreadPool, StealingRelievesASlowThread) {
    ThreadPool pool(2);
    std::vector<std::atomic<int>> hits(4096);
    std::mutex m;
    std::vector<Seen> seen;
    const std::thread::id caller = std::this_thread::get_id();
    std::atomic<bool> worker_started{false};
    pool.parallel_chunks(
        4096,
        [&](ThreadPool::Range chunk, ThreadPool::Next& next) {
            if (std::this_thread::get_id() != caller) {
                worker_started = true;
                std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a slow worker
            } else {
                // Both start on their own shares: a worker not yet awake would otherwise leave all of it to the caller.
                while (!worker_started) std::this_thread::yield();
            }
            for (int i = chunk.begin; i < chunk.end; ++i) hits[std::size_t(i)].fetch_add(1, std::memory_order_relaxed);
            const ThreadPool::Range after = next.get();
            std::lock_guard lock(m);
            seen.push_back({std::this_thread::get_id(), chunk, after});
        },
        16, ThreadPool::Split::stealing);
    for (int i = 0; i < 4096; ++i) ASSERT_EQ(hits[std::size_t(i)].load(), 1) << i;
    int by_caller = 0;
    for (const Seen& s : seen) by_caller += s.thread == caller ? s.chunk.end - s.chunk.begin : 0;
    EXPECT_GT(by_caller, 2048);  // its own share and part of the worker's
    EXPECT_LT(by_caller, 4096);  // the worker ran its first chunk
    // The static split cannot: the caller runs exactly its share.
    std::vector<std::atomic<int>> again(4096);
    by_caller = 0;
    for (const Seen& s : run(pool, 4096, 16, ThreadPool::Split::static_shares, again))
        by_caller += s.thread == caller ? s.chunk.end - s.chunk.begin : 0;
    EXPECT_EQ(by_caller, 2048);
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
