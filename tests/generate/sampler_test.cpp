#include <gtest/gtest.h>

#include <map>

#include "elastilm/generate/sampler.hpp"

namespace elastilm {
namespace {

TEST(Sampler, GreedyIsArgmax) {
    Sampler s;
    const std::vector<float> logits = {0.1f, 3.0f, -2.0f, 2.9f};
    EXPECT_EQ(s(logits), 1);
}

TEST(Sampler, SameSeedSameStream) {
    const std::vector<float> logits = {1.0f, 1.1f, 0.9f, 1.05f, 0.5f};
    Sampler a({1.0f, 1.0f, 123}), b({1.0f, 1.0f, 123}), c({1.0f, 1.0f, 124});
    std::vector<int> sa, sb, sc;
    for (int i = 0; i < 200; ++i) { sa.push_back(a(logits)); sb.push_back(b(logits)); sc.push_back(c(logits)); }
    EXPECT_EQ(sa, sb);
    EXPECT_NE(sa, sc);
}

TEST(Sampler, TopPKeepsOnlyTheNucleus) {
    // Probabilities ~ {0.64, 0.24, 0.09, 0.03}: top_p 0.8 keeps the first two tokens only.
    const std::vector<float> logits = {3.0f, 2.0f, 1.0f, -0.1f};
    Sampler s({1.0f, 0.8f, 9});
    std::map<int, int> seen;
    for (int i = 0; i < 2000; ++i) ++seen[s(logits)];
    EXPECT_EQ(seen.count(2), 0u);
    EXPECT_EQ(seen.count(3), 0u);
    EXPECT_GT(seen[0], seen[1]);
    EXPECT_GT(seen[1], 300);
}

TEST(Sampler, RejectsBadOptions) {
    EXPECT_THROW(Sampler({-1.0f, 0.9f, 1}), Error);
    EXPECT_THROW(Sampler({1.0f, 0.0f, 1}), Error);
    EXPECT_THROW(Sampler({1.0f, 1.5f, 1}), Error);
    EXPECT_THROW(Sampler({NAN, 0.9f, 1}), Error);
}

}  // namespace
}  // namespace elastilm
