// simd::lane_sums against a scalar sum per row, with every row's sum distinct so that a lane out of
// order fails (xsimd 8.1's own AVX-512 haddp puts lanes 2–5 and 10–13 out of order).
#include <gtest/gtest.h>

#include <array>
#include <random>

#include "elastilm/simd/lane_sums.hpp"

namespace {

using namespace elastilm;

TEST(LaneSums, EachLaneIsItsRowsSum) {
    constexpr int S = simd::lanes;
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1, 1);
    for (int trial = 0; trial < 20; ++trial) {
        alignas(64) std::array<std::array<float, S>, S> values{};
        simd::fbatch rows[S];
        for (int j = 0; j < S; ++j) {
            for (float& v : values[j]) v = u(rng) + float(trial == 0 ? 10 * j : 0);  // trial 0: sums 10·S·j apart
            rows[j] = simd::fbatch::load_aligned(values[j].data());
        }
        alignas(64) std::array<float, S> sums{};
        simd::lane_sums(rows).store_aligned(sums.data());
        for (int j = 0; j < S; ++j) {
            double expect = 0;
            for (float v : values[j]) expect += v;
            EXPECT_NEAR(sums[j], expect, 1e-5 * (1 + std::abs(expect))) << "lane " << j << " of " << S << ", trial " << trial;
        }
    }
}

}  // namespace
