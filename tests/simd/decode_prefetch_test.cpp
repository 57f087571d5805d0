// The quantized decode kernels' prefetch distance from a thread's read rate (simd/decode_prefetch.hpp):
// Little's law within its bounds, updated once a window of bytes has been read.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "elastilm/simd/decode_prefetch.hpp"

using namespace elastilm;

TEST(PrefetchAhead, DistanceIsRateTimesLatencyInWholeLines) {
    const double rate = 25e9;  // bytes per second
    const std::size_t d = PrefetchAhead::for_rate(rate);
    EXPECT_EQ(d % 64, 0u);
    EXPECT_LE(double(d), rate * PrefetchAhead::latency_s);
    EXPECT_GT(double(d) + 64, rate * PrefetchAhead::latency_s);
    EXPECT_LT(PrefetchAhead::for_rate(20e9), PrefetchAhead::for_rate(30e9));  // a faster thread reads further ahead
}

TEST(PrefetchAhead, DistanceStaysWithinItsBounds) {
    EXPECT_EQ(PrefetchAhead::for_rate(1e6), PrefetchAhead::min_bytes);
    EXPECT_EQ(PrefetchAhead::for_rate(0), PrefetchAhead::min_bytes);
    EXPECT_EQ(PrefetchAhead::for_rate(std::numeric_limits<double>::quiet_NaN()), PrefetchAhead::min_bytes);
    EXPECT_EQ(PrefetchAhead::for_rate(1e12), PrefetchAhead::max_bytes);
    EXPECT_EQ(PrefetchAhead::for_rate(std::numeric_limits<double>::infinity()), PrefetchAhead::max_bytes);
}

TEST(PrefetchAhead, ChangesOnlyOnceAWindowIsRead) {
    PrefetchAhead a;
    EXPECT_EQ(a.bytes_ahead(), PrefetchAhead::initial);
    const double half = PrefetchAhead::window / 2;
    a.record(half, half / 24e9);  // 24 GB/s: two cores sharing a path
    EXPECT_EQ(a.bytes_ahead(), PrefetchAhead::initial);
    a.record(half, half / 24e9);
    EXPECT_EQ(a.bytes_ahead(), PrefetchAhead::for_rate(24e9));
    EXPECT_LT(a.bytes_ahead(), PrefetchAhead::initial);
    // The next window starts empty: one window at 40 GB/s sets the distance from 40 GB/s alone.
    a.record(PrefetchAhead::window, PrefetchAhead::window / 40e9);
    EXPECT_EQ(a.bytes_ahead(), PrefetchAhead::for_rate(40e9));
    EXPECT_GT(a.bytes_ahead(), PrefetchAhead::initial);
}

TEST(PrefetchSettings, DefaultsAndRoundTrip) {
    EXPECT_EQ(quant_prefetch_distance(), default_prefetch_distance());
#if defined(__x86_64__) || defined(__i386__)
    // Adaptive on AMD, a fixed distance on Intel; and each default goes with its hint.
    EXPECT_EQ(default_prefetch_distance() == 0, __builtin_cpu_is("amd"));
    EXPECT_EQ(default_prefetch_distance() == 0, default_prefetch_hint() == PrefetchHint::non_temporal);
#else
    EXPECT_EQ(default_prefetch_distance(), 0u);  // adaptive
#endif
    set_quant_prefetch_distance(4096);
    EXPECT_EQ(quant_prefetch_distance(), 4096u);
    set_quant_prefetch_distance(0);
    EXPECT_EQ(quant_prefetch_distance(), 0u);
    set_quant_prefetch_distance(default_prefetch_distance());
    const PrefetchHint d = default_prefetch_hint();
    EXPECT_EQ(quant_prefetch_hint(), d);
    const PrefetchHint other = d == PrefetchHint::cached ? PrefetchHint::non_temporal : PrefetchHint::cached;
    set_quant_prefetch_hint(other);
    EXPECT_EQ(quant_prefetch_hint(), other);
    set_quant_prefetch_hint(d);
}
