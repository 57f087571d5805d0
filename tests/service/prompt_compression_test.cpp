// Prompt compression: order kept, special tokens and the protected span never dropped, exact kept counts,
// deterministic ties, and bad input reported; plus the surprisal baseline's arithmetic.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "elastilm/service/prompt_compression.hpp"

namespace elastilm {
namespace {

std::vector<int> ids(int n) {
    std::vector<int> v(n);
    for (int i = 0; i < n; ++i) v[i] = 100 + i;
    return v;
}

TEST(Compress, KeepsTheHighestScoresInOriginalOrder) {
    const std::vector<int> p = ids(10);
    const std::vector<float> s = {0.1f, 5, 0.2f, 4, 0.3f, 3, 0.4f, 2, 0.5f, 1};
    const CompressedPrompt c = compress(p, 50, s);
    EXPECT_EQ(c.kept, (std::vector<int>{1, 3, 5, 7, 9}));
    EXPECT_EQ(c.ids, (std::vector<int>{101, 103, 105, 107, 109}));
}

TEST(Compress, KeptCountIsRoundedRatioTimesLengthForEveryRatio) {
    for (int n : {1, 3, 7, 10, 33, 64}) {
        const std::vector<int> p = ids(n);
        std::vector<float> s(n);
        for (int i = 0; i < n; ++i) s[i] = float((i * 7) % 5);
        for (int r : kRatios) {
            const CompressedPrompt c = compress(p, r, s);
            EXPECT_EQ(int(c.ids.size()), (r * n + 50) / 100) << n << " tokens at " << r << "%";
            EXPECT_TRUE(std::is_sorted(c.kept.begin(), c.kept.end()));
        }
    }
}

TEST(Compress, NeverDropsSpecialOrProtectedTokens) {
    std::vector<int> p = ids(20);
    p[0] = 1;   // BOS
    p[9] = 0;   // UNK
    p[19] = 2;  // EOS
    std::vector<float> s(20, 10.0f);
    s[0] = s[9] = s[19] = -100;  // specials score lowest and must still stay
    std::vector<std::uint8_t> mask(20, 0);
    for (int i = 14; i < 18; ++i) {
        mask[i] = 1;
        s[i] = -50;
    }
    const CompressedPrompt c = compress(p, 40, s, mask);
    EXPECT_EQ(c.ids.size(), 8u);  // round(0.4 × 20)
    for (int must : {0, 9, 14, 15, 16, 17, 19}) EXPECT_NE(std::find(c.kept.begin(), c.kept.end(), must), c.kept.end()) << must;
    // More forced tokens than the ratio allows: all of them, nothing else.
    const CompressedPrompt tiny = compress(p, 20, s, mask);
    EXPECT_EQ(tiny.kept, (std::vector<int>{0, 9, 14, 15, 16, 17, 19}));
    // Special ids come from the caller when the tokenizer differs.
    SpecialTokens other{5, 6, 7};
    const CompressedPrompt c2 = compress(p, 20, s, {}, other);
    EXPECT_EQ(c2.ids.size(), 4u);
    EXPECT_EQ(std::find(c2.kept.begin(), c2.kept.end(), 0), c2.kept.end()) << "token 1 is not special for this tokenizer";
}

TEST(Compress, TiesGoToEarlierTokensAndNaNRanksLowest) {
    const std::vector<int> p = ids(6);
    const std::vector<float> flat(6, 1.0f);
    EXPECT_EQ(compress(p, 50, flat).kept, (std::vector<int>{0, 1, 2}));
    std::vector<float> with_nan = {NAN, 1, NAN, 1, 1, 1};
    EXPECT_EQ(compress(p, 70, with_nan).kept, (std::vector<int>{1, 3, 4, 5}));
    EXPECT_EQ(compress(p, 30, with_nan).kept, (std::vector<int>{1, 3}));
    EXPECT_EQ(compress(p, 100, with_nan).kept.size(), 6u);
}

TEST(Compress, RejectsBadInput) {
    const std::vector<int> p = ids(5);
    const std::vector<float> s(5, 0.0f);
    EXPECT_THROW(compress(std::span<const int>{}, 50, std::span<const float>{}), Error);
    EXPECT_THROW(compress(p, 55, s), Error);
    EXPECT_THROW(compress(p, 0, s), Error);
    EXPECT_THROW(compress(p, 110, s), Error);
    EXPECT_THROW(compress(p, 50, std::vector<float>(4)), Error);
    EXPECT_THROW(compress(p, 50, s, std::vector<std::uint8_t>(3)), Error);
    try {
        compress(p, 45, s);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("45%"), std::string::npos) << e.what();
    }
}

TEST(CutPrompt, KeepsTheLatestTokensOrTheTlmsChoiceAndTheProtectedOnes) {
    const std::vector<int> p = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
    const std::vector<std::uint8_t> keep = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0};  // the first token, as BOS would be
    const std::vector<float> tlm = {0, 9, 8, 7, 0, 0, 0, 0, 0, 0};           // the TLM prefers the earliest context
    EXPECT_EQ(cut_prompt(p, 40, PromptCut::recency, {}, keep), (std::vector<int>{10, 17, 18, 19}));
    EXPECT_EQ(cut_prompt(p, 40, PromptCut::scores, tlm, keep), (std::vector<int>{10, 11, 12, 13}));
    EXPECT_EQ(cut_prompt(p, 100, PromptCut::scores, {}, keep), p);  // whole: no scores needed
    EXPECT_THROW(cut_prompt(p, 40, PromptCut::scores, {}, keep), Error);  // a TLM cut without the TLM's scores
}

TEST(Surprisal, IsNegativeLogSoftmaxOfTheNextToken) {
    const int vocab = 4;
    const std::vector<int> tokens = {0, 3, 1};
    // Row 0 predicts token 1 (= 3), row 1 predicts token 2 (= 1); row 2 is unused.
    const std::vector<float> logits = {0, 0, 0, std::log(3.0f), 1, 1, 1, 1, 9, 9, 9, 9};
    const auto s = token_surprisal(logits, tokens, vocab, 7.0f);
    ASSERT_EQ(s.size(), 3u);
    EXPECT_FLOAT_EQ(s[0], 7.0f);
    EXPECT_NEAR(s[1], -std::log(3.0 / 6.0), 1e-6);
    EXPECT_NEAR(s[2], std::log(4.0), 1e-6);
    EXPECT_THROW(token_surprisal(std::vector<float>(5), tokens, vocab), Error);
}

}  // namespace
}  // namespace elastilm
