// softmax against the formula in double precision at every length around the vector width (vector body
// and scalar tail), with scores spread wide enough that most terms underflow next to the largest.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "elastilm/ops/softmax.hpp"

namespace elastilm {
namespace {

TEST(Softmax, MatchesTheFormulaInDoublePrecisionAtEveryLength) {
    std::mt19937 rng(5);
    for (float spread : {0.1f, 3.0f, 40.0f})
        for (int n = 1; n <= 300; n += n < 70 ? 1 : 37) {
            std::normal_distribution<float> normal(-2.0f, spread);
            std::vector<float> x(n);
            for (float& v : x) v = normal(rng);
            const std::vector<float> x0 = x;
            softmax(x.data(), n);
            const double max = *std::max_element(x0.begin(), x0.end());
            double sum = 0;
            for (float v : x0) sum += std::exp(double(v) - max);
            double total = 0;
            for (int i = 0; i < n; ++i) {
                const double want = std::exp(double(x0[i]) - max) / sum;
                ASSERT_NEAR(x[i], want, 1e-6 * want + 1e-12) << "n " << n << " spread " << spread << " i " << i;
                total += x[i];
            }
            EXPECT_NEAR(total, 1.0, 1e-5) << "n " << n;
        }
}

}  // namespace
}  // namespace elastilm
