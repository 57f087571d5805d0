// The machine's ceilings, measured in the same run as the benchmarks that are compared with them:
//   streaming read bandwidth — decode is memory-bound, so its GB/s is judged against this;
//   fp32 FMA peak — the fp32 prefill GEMM is compute-bound, so its GFLOP/s is judged against this;
//   reduced-precision peak — of the instruction a reduced prefill GEMM issues (AVX-512 BF16
//   `vdpbf16ps`: 4 flops per fp32 lane; NEON `vfmaq_f16` and AVX512-FP16 `vfmadd231ph`: 2 flops per
//   fp16 lane), 0 when the build has none.
// The peaks use the SIMD width our kernels are compiled for; the read loops the widest loads the CPU has
// (AVX-512 on x86 where the CPU has it, whatever the build's -march). All use `threads` threads.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <new>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "elastilm/simd/f16_widen.hpp"
#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/simd/decode_prefetch.hpp"
#include "elastilm/simd/matmul.hpp"

namespace elastilm::bench {

namespace detail {
template <class Fn>
double median_seconds(int threads, int reps, Fn&& per_thread) {
    std::vector<double> times;
    for (int r = 0; r < reps; ++r) {
        std::atomic<int> ready{0};
        std::vector<std::thread> pool;
        std::chrono::steady_clock::time_point start;
        std::atomic<bool> go{false};
        for (int t = 0; t < threads; ++t)
            pool.emplace_back([&, t] {
                ready.fetch_add(1);
                while (!go.load(std::memory_order_acquire)) {}
                per_thread(t);
            });
        while (ready.load() != threads) {}
        start = std::chrono::steady_clock::now();
        go.store(true, std::memory_order_release);
        for (auto& th : pool) th.join();
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    // The median: this machine's memory bandwidth has rare fast outliers a best-of-N would report.
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}
// Floats each of `threads` readers reads of a buffer of n: whole steps of 64 floats (four 512-bit loads).
inline std::size_t read_part_size(std::size_t n, int threads) { return n / threads / 64 * 64; }
// How a read loop prefetches. Three loops, because which reads faster depends on the machine and, on a
// Zen 5 VM, on where its two cores sit; every figure takes the loop that read fastest over its run, all
// of them measured side by side: a ceiling below what decode reaches is not a ceiling. (Over its run, not
// the fastest in each round: that picks each round's luckiest read, ~2.5 % high on the Emerald Rapids VM.)
//   one_line_in_four: prefetcht0 2 KB ahead, one line in four, as the F16 matvec does (simd/matvec.hpp).
//     On Intel the L2 streamer alone left the loop at ~20 GB/s on 2 cores while decode, with this
//     hint, read ~24 GB/s. On the Zen 5 VM with its cores far apart it read 2.5-5 % more than the other.
//   every_line: every line 8 KB ahead, non-temporal where the decode kernels prefetch so (AMD,
//     simd/decode_prefetch.hpp), else into L1 (prefetcht0). On the Zen 5 VM with its cores close together
//     it read 2-8 % more than the first (bench/model_speed.cpp --read-loops), and Q4_0 decode with a 4 KB
//     non-temporal prefetch had read up to 100.4 % of the first alone.
//   every_line_l2: every line 8 KB ahead into L2 (prefetcht1), the quantized decode kernels' hint on
//     Intel. On the Emerald Rapids VM it read ~5 % more than every_line; without it the portable build's
//     interleaved decode passes read up to 101 % of the ceiling (session 36).
enum class ReadPrefetch { one_line_in_four, every_line, every_line_l2 };
inline constexpr ReadPrefetch kReadPrefetches[] = {ReadPrefetch::one_line_in_four, ReadPrefetch::every_line, ReadPrefetch::every_line_l2};
inline const char* to_string(ReadPrefetch p) {
    switch (p) {
        case ReadPrefetch::one_line_in_four: return "prefetcht0 2 KB ahead, one line in four";
        case ReadPrefetch::every_line: return "every line 8 KB ahead, prefetcht0 (prefetchnta where decode uses it)";
        case ReadPrefetch::every_line_l2: return "every line 8 KB ahead, prefetcht1";
    }
    return "?";
}

// The prefetches of one step of 64 floats at p + i. Locality: __builtin_prefetch's, 0 non-temporal, 2
// into L2, 3 into L1 (a constant, hence a template parameter).
template <ReadPrefetch P, int Locality>
[[gnu::always_inline]] inline void prefetch_step(const float* p, std::size_t i) {
    constexpr std::size_t line = 64 / sizeof(float);
    if constexpr (P == ReadPrefetch::one_line_in_four) {
        __builtin_prefetch(p + i + 2048 / sizeof(float), 0, Locality);
    } else {
        for (std::size_t l = 0; l < 64; l += line) __builtin_prefetch(p + i + l + 8192 / sizeof(float), 0, Locality);
    }
}

// One reader's streaming read of p[0, count) (count from read_part_size); the sum, so it is not elided.
// With the build's vectors (xsimd), 64 floats a step in four chains.
template <ReadPrefetch P, int Locality>
float read_part_simd(const float* p, std::size_t count) {
    using simd::fbatch;
    constexpr std::size_t S = simd::lanes;
    fbatch a0{}, a1{}, a2{}, a3{};
    for (std::size_t i = 0; i < count; i += 64) {
        prefetch_step<P, Locality>(p, i);
        for (std::size_t k = 0; k < 64; k += 4 * S) {
            a0 += fbatch::load_unaligned(p + i + k);
            a1 += fbatch::load_unaligned(p + i + k + S);
            a2 += fbatch::load_unaligned(p + i + k + 2 * S);
            a3 += fbatch::load_unaligned(p + i + k + 3 * S);
        }
    }
    return xsimd::hadd(a0 + a1 + a2 + a3);
}
#if defined(__x86_64__) && defined(__GNUC__)
// The same with 512-bit loads, compiled for AVX-512F whatever the build's -march and run where the CPU has
// it: on the Emerald Rapids VM a 256-bit loop read ~5 % less (~24 against ~28 GB/s on 2 cores), so a
// portable build's decode was judged against a ceiling below the machine's.
template <ReadPrefetch P, int Locality>
[[gnu::target("avx512f")]] float read_part_zmm(const float* p, std::size_t count) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (std::size_t i = 0; i < count; i += 64) {
        prefetch_step<P, Locality>(p, i);
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}
inline bool cpu_has_avx512f() {
    static const bool has = __builtin_cpu_supports("avx512f");
    return has;
}
#endif
}  // namespace detail
// The loads the read loops use here: "512-bit" where read_part_zmm runs, else the build's vectors'.
inline const char* read_loop_width() {
#if defined(__x86_64__) && defined(__GNUC__)
    if (detail::cpu_has_avx512f()) return "512-bit";
#endif
    return simd::lanes == 16 ? "512-bit" : simd::lanes == 8 ? "256-bit" : "128-bit";
}
namespace detail {
template <ReadPrefetch P, int Locality>
float read_part(const float* p, std::size_t count) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (cpu_has_avx512f()) return read_part_zmm<P, Locality>(p, count);
#endif
    return read_part_simd<P, Locality>(p, count);
}
inline float read_part(ReadPrefetch p, const float* buf, std::size_t count) {
    switch (p) {
        case ReadPrefetch::one_line_in_four: return read_part<ReadPrefetch::one_line_in_four, 3>(buf, count);
        case ReadPrefetch::every_line:
            if (default_prefetch_hint() == PrefetchHint::non_temporal) return read_part<ReadPrefetch::every_line, 0>(buf, count);
            return read_part<ReadPrefetch::every_line, 3>(buf, count);
        case ReadPrefetch::every_line_l2: return read_part<ReadPrefetch::every_line_l2, 2>(buf, count);
    }
    return 0;
}
// GB/s of reading buf[0, n) once by `threads` threads, each a contiguous part, median of `reps` passes
// per loop, the fastest loop's: the streaming read every bandwidth figure of the benches is.
inline double streaming_read_gbs(const float* buf, std::size_t n, int threads, int reps) {
    const std::size_t chunk = read_part_size(n, threads);
    std::vector<float> sink(threads);
    double best = 0;
    for (ReadPrefetch p : kReadPrefetches) {
        const double s = median_seconds(threads, reps, [&](int t) { sink[t] = read_part(p, buf + chunk * t, chunk); });
        best = std::max(best, double(chunk * threads * sizeof(float)) / s / 1e9);
    }
    volatile float keep = sink[0];
    (void)keep;
    return best;
}

}  // namespace detail

// A buffer of `bytes` (rounded up to whole 2 MB pages) of 1.0f, 2 MB-aligned and, on Linux, backed by
// transparent huge pages where the kernel allows: with 4 KB pages the read loop measured 19–23 GB/s on a
// Sapphire Rapids (`--roofline -t 2`), below the ~23.5 GB/s that llama.cpp's F16 decode read there; with
// huge pages 27–29 GB/s — the ceiling is the memory's, not the TLB's.
struct FreeDeleter {
    void operator()(float* p) const { std::free(p); }
};
using HugeBuffer = std::unique_ptr<float[], FreeDeleter>;
inline HugeBuffer huge_page_buffer(std::size_t bytes) {
    constexpr std::size_t kHuge = std::size_t(1) << 21;
    const std::size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
    HugeBuffer buf(static_cast<float*>(std::aligned_alloc(kHuge, rounded)));
    if (!buf) throw std::bad_alloc();
#if defined(__linux__)
    ::madvise(buf.get(), rounded, MADV_HUGEPAGE);
#endif
    std::fill(buf.get(), buf.get() + rounded / sizeof(float), 1.0f);
    return buf;
}

// GB/s reading a buffer far larger than the last-level cache (default 1 GiB), median of 7 per read loop,
// the fastest loop's.
inline double measure_read_bandwidth_gbs(int threads, std::size_t bytes = std::size_t(1) << 30) {
    const HugeBuffer buf = huge_page_buffer(bytes);
    return detail::streaming_read_gbs(buf.get(), bytes / sizeof(float), threads, 7);
}

// Seconds for one read of buf[0, n) by the pool's threads, each a contiguous part, with read loop p. On
// the pool the decode runs on, not on fresh threads: those would start while the pool's workers still
// spin (~1 ms after each product, runtime/thread_pool.hpp) and share both cores with them — on a Zen 5
// VM that read 4–10 % below the decode passes timed next to it.
inline double read_once_seconds(const float* buf, std::size_t n, ThreadPool& pool, detail::ReadPrefetch p) {
    const int threads = pool.size();
    const std::size_t chunk = detail::read_part_size(n, threads);
    std::vector<float> sink(static_cast<std::size_t>(threads));
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(threads, [&](int begin, int end) {
        for (int t = begin; t < end; ++t) sink[std::size_t(t)] = detail::read_part(p, buf + chunk * std::size_t(t), chunk);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    volatile float keep = sink[0];
    (void)keep;
    return s;
}
// Seconds for one read of buf[0, n) by each read loop, indexed as detail::kReadPrefetches, timed one
// after the other starting with loop `first` (callers rotate it, so that no loop always goes first).
inline std::array<double, std::size(detail::kReadPrefetches)> read_each_loop_seconds(const float* buf, std::size_t n, ThreadPool& pool,
                                                                                     std::size_t first) {
    std::array<double, std::size(detail::kReadPrefetches)> s{};
    for (std::size_t k = 0; k < s.size(); ++k) {
        const std::size_t which = (first + k) % s.size();
        s[which] = read_once_seconds(buf, n, pool, detail::kReadPrefetches[which]);
    }
    return s;
}
// The bytes read_once_seconds reads of n floats (whole steps per thread).
inline std::size_t read_once_bytes(std::size_t n, int threads) {
    return detail::read_part_size(n, threads) * std::size_t(threads) * sizeof(float);
}

// GFLOP/s of independent fp32 FMA chains (2 flops per lane per FMA), median of 7.
inline double measure_fma_peak_gflops(int threads) {
    using simd::fbatch;
    constexpr int chains = 12;  // enough independent accumulators to cover FMA latency × throughput
    constexpr long iters = 20'000'000;
    std::vector<float> sink(threads);
    const double s = detail::median_seconds(threads, 7, [&](int t) {
        fbatch acc[chains];
        for (int c = 0; c < chains; ++c) acc[c] = fbatch(float(c + t));
        const fbatch m(0.999999f), a(1e-7f);
        for (long i = 0; i < iters; ++i)
            for (int c = 0; c < chains; ++c) acc[c] = xsimd::fma(acc[c], m, a);
        fbatch sum{};
        for (int c = 0; c < chains; ++c) sum += acc[c];
        sink[t] = xsimd::hadd(sum);
    });
    volatile float keep = sink[0];
    (void)keep;
    return 2.0 * simd::lanes * chains * double(iters) * threads / s / 1e9;
}

// GFLOP/s of independent chains of one reduced-precision GEMM's instruction (`p`: bf16, fp16, or
// `reduced` for the one GemmPrecision::reduced runs), median of 7; 0 when the build lacks it.
inline double measure_reduced_peak_gflops(int threads, GemmPrecision p = GemmPrecision::reduced) {
    // Independent accumulators, enough to cover the instruction's latency × throughput. 12 did not cover
    // `vdpbf16ps` on Zen 5: the bf16 micro-kernel, with 24 accumulators, ran 7 % above that "peak". With 16
    // it runs at the peak; with 24 the chains no longer all stay in registers and the "peak" fell by a sixth.
    constexpr int chains = 16;
    constexpr long iters = 20'000'000;
    if (p == GemmPrecision::reduced) p = reduced_gemm_precision;
    std::vector<float> sink(threads);
    double flops_per_op = 0, s = 1;
#if defined(ELASTILM_GEMM_BF16)
    if (p == GemmPrecision::bf16) {
        using namespace simd::bf16;
        flops_per_op = 4.0 * lanes;  // 2 products + 2 sums per fp32 lane
        s = detail::median_seconds(threads, 7, [&](int t) {
            acc a[chains];
            for (int c = 0; c < chains; ++c) a[c] = zero();
            alignas(64) pair_bits wbits[lanes];
            for (int i = 0; i < lanes; ++i) wbits[i] = 0x3f803f80u + pair_bits(t);  // (≈1, ≈1)
            const pairs w = load(wbits);
            volatile pair_bits xv = 0x33d633d6u;  // (1e-7, 1e-7): opaque to the compiler
            const pair_bits x = xv;
            for (long i = 0; i < iters; ++i)
                for (int c = 0; c < chains; ++c) a[c] = dot(a[c], x, w);
            alignas(64) float out[lanes];
            acc sum = zero();
            for (int c = 0; c < chains; ++c) sum = add(sum, a[c]);
            store(out, sum);
            sink[t] = out[0];
        });
    }
#endif
#if defined(ELASTILM_GEMM_F16)
    if (p == GemmPrecision::fp16) {  // NEON vfmaq_f16 or AVX512-FP16 vfmadd231ph
        using namespace simd::f16v;
        flops_per_op = 2.0 * lanes;
        s = detail::median_seconds(threads, 7, [&](int t) {
            vec a[chains];
            for (int c = 0; c < chains; ++c) a[c] = zero();
            alignas(64) f16_bits wbits[lanes];
            for (int i = 0; i < lanes; ++i) wbits[i] = f16_bits(0x3c00 + t);  // ≈1
            const vec w = load(wbits);
            volatile float tiny = 6e-8f;  // fp16's smallest subnormal: sums stay tiny
            const float tinies[2] = {tiny, tiny};
            f16_bits xbits[2];  // broadcast() reads f16v::depth ≤ 2 of them
            convert(xbits, tinies, 2);
            const vec x = broadcast(xbits);
            for (long i = 0; i < iters; ++i)
                for (int c = 0; c < chains; ++c) a[c] = fma(a[c], x, w);
            alignas(64) f16_bits out[lanes];
            for (int c = 1; c < chains; ++c) a[0] = fma(a[0], x, a[c]);  // every chain is live
            store(out, a[0]);
            sink[t] = float(out[0]);
        });
    }
#endif
    volatile float keep = sink[0];
    (void)keep;
    return flops_per_op * chains * double(iters) * threads / s / 1e9;
}

// GOP/s (2 per int8 multiply-add) of independent vpdpbusd zmm chains — the instruction of the packed
// quantized prefill GEMM (simd/quant_gemm_packed.hpp) — median of 7; 0 when the build has no such GEMM.
inline double measure_vnni_peak_gops(int threads) {
#if ELASTILM_QGEMM_PACKED
    namespace qa = simd::qgemm_arch;
    constexpr int chains = 12;
    constexpr long iters = 20'000'000;
    std::vector<int> sink(threads);
    const double s = detail::median_seconds(threads, 7, [&](int t) {
        qa::I32 a[chains];
        for (int c = 0; c < chains; ++c) a[c] = qa::zero_i();
        volatile std::uint8_t xv[4] = {1, 0, 0, 0};  // opaque to the compiler; sums stay far below 2³¹
        const std::uint8_t xb[4] = {xv[0], xv[1], xv[2], xv[3]};
        const qa::I32 x = qa::broadcast4(xb);
        std::int8_t wb[64];
        for (int i = 0; i < 64; ++i) wb[i] = std::int8_t(i % 4 == 0 ? 1 + t : 0);
        const qa::I32 w = qa::load_w(wb);
        for (long i = 0; i < iters; ++i)
            for (int c = 0; c < chains; ++c) a[c] = qa::dot4(a[c], x, w);
        alignas(64) float out[qa::kLanes];
        qa::F32 sum = qa::zero_f();
        for (int c = 0; c < chains; ++c) sum = qa::fma(qa::to_float(a[c]), qa::broadcast(1.0f), sum);
        qa::store(out, sum);
        sink[t] = int(out[0]);
    });
    volatile int keep = sink[0];
    (void)keep;
    return 2.0 * 4 * qa::kLanes * chains * double(iters) * threads / s / 1e9;
#else
    (void)threads;
    return 0;
#endif
}

}  // namespace elastilm::bench
