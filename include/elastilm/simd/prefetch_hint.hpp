// How the quantized decode kernels' software prefetch brings the rows ahead in: cached, at the level
// each kernel was tuned for (prefetcht1 into L2 for the AVX-512 VNNI kernels, prefetcht0 into L1 for
// the one-block kernel), or non-temporal (prefetchnta). Each weight byte is read once per token and
// the model is hundreds of megabytes, so a row is never read again before it would have left every
// cache anyway.
//
// The default depends on the CPU:
//   AMD: non-temporal. On a Zen 5 VM (TinyLlama Q4_0 and Q8_0, 2 threads, the hints taking turns token
//        by token: bench/model_speed.cpp --share --prefetch both) decode read 2-5 points more of the
//        read loop's bandwidth with the VM's two cores far apart and about the same with them close
//        together (README, "Quantized weights"). A likely reason: a line brought in non-temporally is
//        not moved into the L3 (a victim cache on Zen) when it leaves the L2, traffic that a line read
//        once does not need.
//   Others: cached, as measured on Sapphire Rapids against L1 and whole-row prefetches (the kernels'
//        comments); prefetchnta has not been measured there for these kernels (for the fp16 matvec it
//        was slower: simd/matvec.hpp).
// A setting, not a constant, so that a benchmark can compare both in one run.
#pragma once

#include <atomic>

namespace elastilm {

enum class PrefetchHint { cached, non_temporal };

inline const char* to_string(PrefetchHint h) { return h == PrefetchHint::cached ? "cached" : "non-temporal"; }

inline PrefetchHint default_prefetch_hint() {
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_is("amd") ? PrefetchHint::non_temporal : PrefetchHint::cached;
#else
    return PrefetchHint::cached;
#endif
}

inline std::atomic<PrefetchHint>& quant_prefetch_hint_setting() {
    static std::atomic<PrefetchHint> h{default_prefetch_hint()};
    return h;
}
inline PrefetchHint quant_prefetch_hint() { return quant_prefetch_hint_setting().load(std::memory_order_relaxed); }
inline void set_quant_prefetch_hint(PrefetchHint h) { quant_prefetch_hint_setting().store(h, std::memory_order_relaxed); }

}  // namespace elastilm
