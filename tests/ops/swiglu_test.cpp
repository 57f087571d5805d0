// silu_mul against the formula in double precision: every length around the vector width (the vector
// body and the scalar tail), and the extremes — large |x| where e^−x overflows or vanishes, zero, tiny.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "elastilm/ops/swiglu.hpp"

namespace elastilm {
namespace {

double silu_times(double g, double u) { return g / (1.0 + std::exp(-g)) * u; }

TEST(SiluMul, MatchesTheFormulaAtEveryLengthAndAtTheExtremes) {
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 4.0f);
    const float extremes[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 20.0f, -20.0f, 88.0f, -88.0f, 100.0f, -100.0f, 1e4f, -1e4f};
    for (int n = 1; n <= 70; ++n) {
        std::vector<float> gate(n), up(n);
        for (int i = 0; i < n; ++i) gate[i] = i < int(std::size(extremes)) && n > 40 ? extremes[i] : normal(rng), up[i] = normal(rng);
        const std::vector<float> g0 = gate;
        silu_mul(gate.data(), up.data(), n);
        for (int i = 0; i < n; ++i) {
            const double want = silu_times(g0[i], up[i]);
            ASSERT_TRUE(std::isfinite(gate[i])) << "n " << n << " x " << g0[i];
            ASSERT_NEAR(gate[i], want, 4 * std::numeric_limits<float>::epsilon() * std::fabs(want) + 1e-37) << "n " << n << " x " << g0[i];
        }
    }
}

}  // namespace
}  // namespace elastilm
