// rmsnorm against the formula in double precision, at every length around the vector width (two-deep
// body, one-deep body, scalar tail) and at model widths, with inputs of very different magnitudes.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "elastilm/ops/rmsnorm.hpp"

namespace elastilm {
namespace {

TEST(RmsNorm, MatchesTheFormulaInDoublePrecisionAtEveryLength) {
    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<int> lengths;
    for (int n = 1; n <= 70; ++n) lengths.push_back(n);
    for (int n : {288, 768, 2048, 3200, 5632 + 3}) lengths.push_back(n);
    for (float magnitude : {1e-3f, 1.0f, 300.0f})
        for (int n : lengths) {
            std::vector<float> x(n), w(n), out(n);
            for (int i = 0; i < n; ++i) x[i] = magnitude * normal(rng), w[i] = 0.5f + 0.1f * normal(rng);
            if (n > 8) x[3] *= 40;  // one outlier, as residual streams have
            const float eps = 1e-5f;
            rmsnorm(out.data(), x.data(), w.data(), n, eps);
            double ss = 0;
            for (float v : x) ss += double(v) * v;
            const double r = 1.0 / std::sqrt(ss / n + eps);
            for (int i = 0; i < n; ++i) {
                const double want = x[i] * r * w[i];
                ASSERT_NEAR(out[i], want, 2e-6 * std::fabs(want) + 1e-30) << "n " << n << " magnitude " << magnitude << " i " << i;
            }
        }
}

}  // namespace
}  // namespace elastilm
