// How the quantized decode kernels prefetch the rows ahead of the one they read: with which hint, and
// how far ahead. Each weight byte is read once per token and the model is hundreds of megabytes, so
// a row is never read again before it would have left every cache anyway.
//
// Hint: cached, at the level each kernel was tuned for (prefetcht1 into L2 for the AVX-512 VNNI
// kernels, prefetcht0 into L1 for the one-block kernel), or non-temporal (prefetchnta). The default
// depends on the CPU:
//   AMD: non-temporal. On a Zen 5 VM (TinyLlama Q4_0 and Q8_0, 2 threads, the hints taking turns
//        token by token: bench/model_speed.cpp --share --prefetch both) decode read 2-5 points more of
//        the read loop's bandwidth with the VM's two cores far apart and about the same with them close
//        together (README, "Quantized weights"). A likely reason: a line brought in non-temporally is
//        not moved into the L3 (a victim cache on Zen) when it leaves the L2, traffic that a line read
//        once does not need.
//   Others: cached, as measured on Sapphire Rapids against L1 and whole-row prefetches (the kernels'
//        comments). Non-temporal is far slower on Intel: on an Emerald Rapids VM (TinyLlama, 2 threads,
//        --share --prefetch both, two runs per type) decode read 42-49 % of the read loop with it,
//        against 82-91 % cached: as for the fp16 matvec (simd/matvec.hpp), prefetchnta keeps the lines
//        out of L2 there, which starves the L2 streamer.
//
// Distance: the bytes in flight must cover the memory's latency at the rate a thread reads (Little's
// law: bytes ahead = rate × latency), so each thread measures the rate at which it streams its rows
// and sets its distance from it (PrefetchAhead). Why not one constant: on the Zen 5 VM the best
// distance moved with the placement of its two cores. Close together (they share a path to memory,
// ~24 GB/s each) 4 KB and the adaptive ~5.5 KB read 1-4 points more of the read loop than 8 KB
// (bench/model_speed.cpp --share --prefetch non-temporal:4096,non-temporal,non-temporal:8192); far
// apart (~38 GB/s each) shorter distances read less (experiment builds), and the adaptive ~8.5 KB read
// as much as 8 KB. That holds on AMD. On Intel the default is a fixed 8 KB: on an Emerald Rapids VM
// (2 cores, ~13 GB/s each; TinyLlama, 2 threads, --share --prefetch cached,cached:8192, the two taking
// turns token by token) the rate law settled at 2-3 KB, and 8 KB read 1.2-7.0 points more of the read
// loop for Q4_0 and 1.0-1.7 for Q8_0 in every one of three runs, while 4-12 KB read within about two
// points of each other. A distance that is too short is self-confirming under the law: a thread that
// prefetches too little reads slowly, and its slow rate asks for a short distance again.
//
// Both are settings, not constants, so that a benchmark can compare them in one run.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>

namespace elastilm {

enum class PrefetchHint { cached, non_temporal };

inline const char* to_string(PrefetchHint h) { return h == PrefetchHint::cached ? "cached" : "non-temporal"; }

// The defaults below differ by CPU vendor: AMD, or any other x86 (Intel), or not x86.
enum class PrefetchFamily { amd, other_x86, not_x86 };
inline PrefetchFamily prefetch_family() {
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_is("amd") ? PrefetchFamily::amd : PrefetchFamily::other_x86;
#else
    return PrefetchFamily::not_x86;
#endif
}

inline PrefetchHint default_prefetch_hint() {
    return prefetch_family() == PrefetchFamily::amd ? PrefetchHint::non_temporal : PrefetchHint::cached;
}

inline std::atomic<PrefetchHint>& quant_prefetch_hint_setting() {
    static std::atomic<PrefetchHint> h{default_prefetch_hint()};
    return h;
}
inline PrefetchHint quant_prefetch_hint() { return quant_prefetch_hint_setting().load(std::memory_order_relaxed); }
inline void set_quant_prefetch_hint(PrefetchHint h) { quant_prefetch_hint_setting().store(h, std::memory_order_relaxed); }

// One thread's prefetch distance, from the rate at which it has been reading: every `window` bytes it
// reads, the distance becomes rate × latency, in whole cache lines within [min_bytes, max_bytes].
// Until the first window is full it is `initial`.
class PrefetchAhead {
public:
    static constexpr double latency_s = 220e-9;
    static constexpr std::size_t min_bytes = 2048, max_bytes = 16384, initial = 8192;
    static constexpr double window = double(std::size_t(4) << 20);

    // The distance for a thread reading `bytes_per_second`.
    static std::size_t for_rate(double bytes_per_second) {
        const double ahead = bytes_per_second * latency_s;
        if (!(ahead >= double(min_bytes))) return min_bytes;  // also a rate that is NaN
        if (ahead >= double(max_bytes)) return max_bytes;
        return std::max(min_bytes, std::size_t(ahead) / 64 * 64);
    }
    // The thread read `bytes` of rows in `seconds`.
    void record(double bytes, double seconds) {
        bytes_ += bytes, seconds_ += seconds;
        if (bytes_ < window) return;
        bytes_ahead_ = for_rate(bytes_ / seconds_);
        bytes_ = seconds_ = 0;
    }
    std::size_t bytes_ahead() const { return bytes_ahead_; }

private:
    std::size_t bytes_ahead_ = initial;
    double bytes_ = 0, seconds_ = 0;
};

// The calling thread's PrefetchAhead: one per thread, shared by every quantized product it runs.
inline PrefetchAhead& thread_prefetch_ahead() {
    thread_local PrefetchAhead a;
    return a;
}

// The CPU's default distance: 0, each thread's own rate-derived distance (PrefetchAhead), on AMD and
// off x86; a fixed 8 KB on other x86 CPUs (Intel: see above).
inline constexpr std::size_t kIntelPrefetchBytes = 8192;
inline std::size_t default_prefetch_distance() { return prefetch_family() == PrefetchFamily::other_x86 ? kIntelPrefetchBytes : 0; }

// The distance setting: 0 for each thread's own rate-derived distance, or a fixed number of bytes for
// every thread; default_prefetch_distance() until set.
inline std::atomic<std::size_t>& quant_prefetch_distance_setting() {
    static std::atomic<std::size_t> d{default_prefetch_distance()};
    return d;
}
inline std::size_t quant_prefetch_distance() { return quant_prefetch_distance_setting().load(std::memory_order_relaxed); }
inline void set_quant_prefetch_distance(std::size_t bytes) { quant_prefetch_distance_setting().store(bytes, std::memory_order_relaxed); }

}  // namespace elastilm
