// A small fixed pool of std::threads that splits a range of work items across cores.
//
// Decode runs ~7 matrix-vector products per layer per token, each a few hundred microseconds, so the
// hand-off must be cheap: workers spin on an epoch counter before sleeping, and the calling thread takes
// a share of the work itself (a pool of n threads has n-1 workers). Both sides spin with the CPU's
// spin-wait hint (`pause` / `yield`), which paces the loop to ~0.1 µs per check and spares the memory
// system: the worker then waits ~1 ms before it sleeps, long enough to bridge the serial work between
// a token's products (norms, attention, the LM head) without a wake-up through the scheduler, which in a
// VM costs tens of microseconds; the caller spins the same way before it yields.
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace elastilm {

// One spin-wait step: tells the core this is a busy-wait loop.
inline void spin_pause() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

class ThreadPool {
public:
    // n_threads counts the caller: 1 means "run everything on the calling thread".
    explicit ThreadPool(int n_threads = 1) : n_threads_(n_threads < 1 ? 1 : n_threads), left_(std::size_t(n_threads_)) {
        for (int t = 1; t < n_threads_; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
    }
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;
    ~ThreadPool() {
        {
            std::lock_guard lock(mutex_);
            post_.job = Job{};  // no call: stop
            post_.epoch.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        for (auto& w : workers_) w.join();
    }

    int size() const { return n_threads_; }

    // Calls fn(begin, end) on disjoint sub-ranges covering [0, n), split into size() contiguous chunks
    // whose boundaries are multiples of `grain` (except the last). Returns when all chunks are done.
    template <class Fn>
    void parallel_for(int n, Fn&& fn, int grain = 1) {
        if (n <= 0) return;
        const int chunks = std::min(n_threads_, (n + grain - 1) / grain);
        if (chunks <= 1) { fn(0, n); return; }
        auto run_chunk = [&](int c) {
            const auto [begin, end] = share(n, grain, chunks, c);
            if (begin < end) fn(begin, end);
        };
        Job job{[](void* ctx, int c) { (*static_cast<decltype(run_chunk)*>(ctx))(c); }, &run_chunk, chunks};
        {
            std::lock_guard lock(mutex_);  // a worker going to sleep checks the epoch under it
            post_.job = job;
            pending_.store(n_threads_ - 1, std::memory_order_relaxed);
            post_.epoch.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        run_chunk(0);
        for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
            if (spin < kSpins) spin_pause();
            else std::this_thread::yield();
        }
    }

    // [begin, end): a chunk of a parallel_chunks range; empty when begin == end.
    struct Range {
        int begin = 0, end = 0;
        bool empty() const { return begin >= end; }
    };

    // The chunk a thread runs after the one parallel_chunks hands it (empty: none), so that a kernel can
    // prefetch on into it and a thread's reads stay one stream across its chunks. get() claims it the
    // first time it is called, unless the split claimed it already: a kernel asks when its prefetch
    // reaches the end of the current chunk, a few KB before its last row, and until then the rest of the
    // thread's share stays open to a helper (Split::stealing).
    class Next {
    public:
        explicit Next(Range taken) : range_(taken), taken_(true) {}
        Next(Range (*claim)(void*), void* ctx) : claim_(claim), ctx_(ctx) {}
        Range get() {
            if (!taken_) range_ = claim_(ctx_), taken_ = true;
            return range_;
        }

    private:
        Range (*claim_)(void*) = nullptr;
        void* ctx_ = nullptr;
        Range range_;
        bool taken_ = false;
    };

    // How parallel_chunks splits a range: stealing (the default, below), or, kept for comparison,
    // stealing_committed (stealing as it was until session 31, below), dynamic — every chunk from one
    // shared counter, each half of a thread's share of what remains — or static — one contiguous share
    // per thread, parallel_for's split.
    enum class Split { stealing, stealing_committed, dynamic, static_shares };

    // Calls fn(chunk, next) for disjoint chunks covering [0, n); `next` (a Next&) is the chunk the same
    // thread runs after this one. Split::stealing: thread t owns share t of [0, n) — the static split —
    // and runs it front to back, half of what is left of it at a time (at least `grain` items; boundaries
    // are multiples of `grain` except at n), claiming each chunk only when the previous asks for its
    // `next`. A thread whose share is done takes the back half of what is left of the fullest other
    // share, so a thread that runs slower — its core shared with other work, its memory further away —
    // is relieved of its share's tail and all finish within about one small chunk of each other.
    // Why halves, claimed late: a thread holds at most half of what is left of its share, so the other
    // can take up to the rest. Split::stealing_committed held more: its first chunk was all of the share
    // but the last eighth, and each next chunk was claimed before the current one ran, so a thread held
    // 15/16 of its share from the start. On a Zen 5 VM with its two cores far apart, the threads' read
    // rates differed product by product by up to ±40 %, and the faster waited for the slower's committed
    // chunks: 3–14 % of Q4_0 decode was spent waiting at a product's end against 1.4–2.3 % now, and
    // decode ran 1–4 % faster token for token; with the cores close, level (bench/model_speed.cpp --trace,
    // which rotates the splits).
    // Why not static shares alone: the fastest thread then waits for the slowest at every call (in decode
    // the calling thread waited 2–20 % of the time). Why not the dynamic split (the default until session
    // 26): with both threads reading adjacent chunks, a dozen chunk switches per product, Q4_0 decode on a
    // Zen 5 with ~80 GB/s of memory ran 2–4 % slower than with static shares; a thread's chunks of its own
    // share are one stream. Returns when all chunks are done. Not reentrant: one call at a time per pool,
    // as for parallel_for.
    template <class Fn>
    void parallel_chunks(int n, Fn&& fn, int grain = 1, Split split = Split::stealing) {
        if (n <= 0) return;
        grain = std::max(grain, 1);
        const int threads = std::min(n_threads_, (n + grain - 1) / grain);
        if (threads <= 1) {
            Next none(Range{n, n});
            fn(Range{0, n}, none);
            return;
        }
        const int call = trace_ ? trace_->calls++ : 0;
        auto timed = [&](int thread, Range chunk, Next& after) {
            if (!trace_) return fn(chunk, after);
            const auto start = std::chrono::steady_clock::now();
            fn(chunk, after);
            trace_->chunks[std::size_t(thread)].push_back({call, start, std::chrono::steady_clock::now()});
        };
        // Each thread runs the chunks `take(thread, first)` gives it: the next claimed before it runs one
        // (claim_late false) or when that one asks for it.
        auto run_chunks = [&](bool claim_late, auto take) {
            parallel_for(threads, [&](int t, int) {
                auto claim = [&] { return take(t, false); };
                for (Range chunk = take(t, true); !chunk.empty();) {
                    Next after = claim_late ? Next([](void* c) { return (*static_cast<decltype(claim)*>(c))(); }, &claim) : Next(claim());
                    timed(t, chunk, after);
                    chunk = after.get();
                }
            });
        };
        switch (split) {
            case Split::static_shares:
                return run_chunks(false, [&](int t, bool first) { return first ? share(n, grain, threads, t) : Range{n, n}; });
            case Split::dynamic: {
                std::atomic<int> next{0};
                return run_chunks(false, [&](int, bool) { return take_shared(next, n, grain, threads); });
            }
            case Split::stealing:
            case Split::stealing_committed: {
                for (int t = 0; t < threads; ++t) {
                    const Range r = share(n, grain, threads, t);
                    left_[std::size_t(t)].v.store(pack(r.begin, r.end), std::memory_order_relaxed);
                }
                const bool committed = split == Split::stealing_committed;
                return run_chunks(!committed, [&](int t, bool first) {
                    const Range own = take_own(t, first && committed, n, grain);
                    return own.empty() ? take_from_fullest(t, threads, n, grain) : own;
                });
            }
        }
    }

    // When set, parallel_chunks numbers its calls and records each chunk's start and end per thread (0:
    // the caller): where a decode step's time goes (bench/pool_trace.hpp).
    struct Trace {
        struct Chunk {
            int call;
            std::chrono::steady_clock::time_point start, end;
        };
        int calls = 0;
        std::vector<std::vector<Chunk>> chunks;  // [thread]
    };
    void set_trace(Trace* trace) {
        if (trace) trace->chunks.resize(std::size_t(n_threads_));
        trace_ = trace;
    }

private:
    // Split::dynamic's next chunk: half of one thread's share of what remains past `next`.
    static Range take_shared(std::atomic<int>& next, int n, int grain, int threads) {
        int begin = next.load(std::memory_order_relaxed);
        for (;;) {
            if (begin >= n) return Range{n, n};
            const int size = std::max(grain, (n - begin) / (2 * threads) / grain * grain);
            const int end = std::min(n, begin + size);
            if (next.compare_exchange_weak(begin, end, std::memory_order_relaxed)) return Range{begin, end};
        }
    }

    // Split::stealing. What is left of thread t's share, [front, back), is one word, left_[t], so that its
    // owner (from the front) and a helper (from the back) each claim with one compare-and-swap.
    static std::uint64_t pack(int front, int back) { return std::uint64_t(std::uint32_t(front)) << 32 | std::uint32_t(back); }
    static int front_of(std::uint64_t v) { return int(std::uint32_t(v >> 32)); }
    static int back_of(std::uint64_t v) { return int(std::uint32_t(v)); }

    // The owner's next chunk from the front of its share: half of what is left, or all but the last
    // eighth when `most` (Split::stealing_committed's first chunk).
    Range take_own(int t, bool most, int n, int grain) {
        std::atomic<std::uint64_t>& word = left_[std::size_t(t)].v;
        for (std::uint64_t v = word.load(std::memory_order_relaxed);;) {
            const int front = front_of(v), back = back_of(v);
            if (front >= back) return Range{n, n};
            const int rest = back - front, size = most ? rest - rest / 8 : rest / 2;
            const int end = std::min(back, std::max(front + grain, (front + size) / grain * grain));
            if (word.compare_exchange_weak(v, pack(end, back), std::memory_order_relaxed)) return Range{front, end};
        }
    }

    // A helper's chunk: the back half of what is left of the fullest other share (empty: all are done).
    Range take_from_fullest(int t, int threads, int n, int grain) {
        for (;;) {
            int fullest = -1, most = 0;
            for (int s = 0; s < threads; ++s) {
                const std::uint64_t v = left_[std::size_t(s)].v.load(std::memory_order_relaxed);
                if (s != t && back_of(v) - front_of(v) > most) fullest = s, most = back_of(v) - front_of(v);
            }
            if (fullest < 0) return Range{n, n};
            std::atomic<std::uint64_t>& word = left_[std::size_t(fullest)].v;
            std::uint64_t v = word.load(std::memory_order_relaxed);
            const int front = front_of(v), back = back_of(v);
            if (front >= back) continue;
            const int begin = std::max(front, (back - (back - front + 1) / 2) / grain * grain);
            if (word.compare_exchange_weak(v, pack(front, begin), std::memory_order_relaxed)) return Range{begin, back};
        }
    }

    // Share c of [0, n) split into `chunks` contiguous parts whose boundaries are multiples of `grain`
    // (except at n): parallel_for's split, and parallel_chunks' static one.
    static Range share(int n, int grain, int chunks, int c) {
        const int units = (n + grain - 1) / grain;
        const int begin = std::min(n, int(std::int64_t(units) * c / chunks) * grain);
        const int end = c + 1 == chunks ? n : std::min(n, int(std::int64_t(units) * (c + 1) / chunks) * grain);
        return {begin, end};
    }

    struct Job {
        void (*call)(void*, int) = nullptr;
        void* ctx = nullptr;
        int chunks = 0;
    };

    // A worker reads every job: the caller posts the next only once all workers have counted this one
    // off in pending_, participants after their chunk and the rest at once. So a worker that saw the new
    // epoch reads the job without the mutex, which only a worker about to sleep takes.
    void worker_loop(int index) {
        std::uint64_t seen = 0;
        for (;;) {
            // Spin first: the next product usually arrives within microseconds.
            std::uint64_t now = post_.epoch.load(std::memory_order_acquire);
            for (int spin = 0; now == seen && spin < kSpins; ++spin) {
                spin_pause();
                now = post_.epoch.load(std::memory_order_acquire);
            }
            if (now == seen) {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [&] { return (now = post_.epoch.load(std::memory_order_acquire)) != seen; });
            }
            seen = now;
            const Job job = post_.job;
            if (!job.call) return;  // the destructor's
            if (index < job.chunks) job.call(job.ctx, index);
            pending_.fetch_sub(1, std::memory_order_acq_rel);
        }
    }

    static constexpr int kSpins = 20000;  // × one spin_pause (~40–140 cycles on x86): about 1 ms

    int n_threads_;
    struct alignas(64) Left {  // a cache line each: the owners claim from their words without contention
        std::atomic<std::uint64_t> v{0};
    };
    std::vector<Left> left_;  // Split::stealing: what is left of each thread's share
    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_;
    // What a worker reads to start a job, in one cache line: a hand-off moves this line and pending_'s
    // between the cores, and little else (the mutex and condition variable stay with the caller while
    // the workers spin). Before, each worker also took the mutex: on a Zen 5 VM an empty parallel_for
    // took 1.2–2.1 µs, now 0.85 (bench/kernels.cpp, pool_handoff/…).
    struct alignas(64) Post {
        std::atomic<std::uint64_t> epoch{0};
        Job job;
    } post_;
    alignas(64) std::atomic<int> pending_{0};  // workers that have not yet counted off the posted job
    Trace* trace_ = nullptr;
};

}  // namespace elastilm
