// The decision head's context-dependence features (service/context_dependence.hpp): the trunk's
// next-token distribution is the session's last logits normalised, across the TLM's 64-token chunks;
// the KL divergence and entropy are the textbook sums; and each feature is log(1 + the divergence) of the
// cut the header names, zero when the keep mask leaves a cut nothing to remove.
#include <gtest/gtest.h>

#include <cmath>

#include "elastilm/model/synthetic.hpp"
#include "elastilm/service/context_dependence.hpp"
#include "elastilm/service/service.hpp"

namespace elastilm {
namespace {

using Small = Stories260K;

TokenizedPrompt prompt_of(int n, int question, int salt) {
    TokenizedPrompt p;
    for (int i = 0; i < n; ++i) {
        p.ids.push_back(i == 0 ? 1 : 3 + (i * 37 + salt * 101) % (Small::vocab_size - 3));
        p.keep.push_back(i == 0 || i >= n - question ? 1 : 0);
    }
    return p;
}

TEST(ContextDependence, NextTokenLogProbsAreTheSessionsLastLogitsNormalised) {
    Model<Small> m(synthetic_weights<Small>({DType::f32, 5}));
    ThreadPool pool(2);
    Tlm<Small> tlm(m, pool, 30);
    const auto p = prompt_of(150, 8, 1);  // more than two of the TLM's 64-token chunks
    const auto lp = tlm.next_token_log_probs(p.ids);
    Session<Small> s(m, pool);
    const auto logits = s.append(p.ids, 30);
    ASSERT_EQ(lp.size(), std::size_t(Small::vocab_size));
    double total = 0;
    for (int v = 0; v < Small::vocab_size; ++v) {
        EXPECT_NEAR(lp[v], log_softmax_at(logits, v), 2e-4) << v;
        total += std::exp(double(lp[v]));
    }
    EXPECT_NEAR(total, 1.0, 1e-4);
    // Right after features() read the same prompt (either feature mode) its last logits are reused: the
    // same distribution, and a different prompt is read afresh.
    for (TlmFeatures mode : {TlmFeatures::hidden_and_surprisal, TlmFeatures::hidden}) {
        tlm.set_feature_mode(mode);
        tlm.features(p.ids);
        const auto reused = tlm.next_token_log_probs(p.ids);
        for (int v = 0; v < Small::vocab_size; ++v) ASSERT_NEAR(reused[v], lp[v], 1e-5) << v;
        const auto other = tlm.next_token_log_probs(std::span<const int>(p.ids).first(100));
        Session<Small> s2(m, pool);
        const auto other_logits = s2.append(std::span<const int>(p.ids).first(100), 30);
        for (int v = 0; v < Small::vocab_size; v += 37) EXPECT_NEAR(other[v], log_softmax_at(other_logits, v), 2e-4) << v;
    }
    EXPECT_THROW(tlm.next_token_log_probs(std::span<const int>{}), Error);
    const std::vector<int> too_long(Small::context + 1, 5);
    EXPECT_THROW(tlm.next_token_log_probs(too_long), Error);
}

TEST(ContextDependence, DivergenceAndEntropyAreTheTextbookSums) {
    const std::vector<float> p{std::log(0.5f), std::log(0.25f), std::log(0.25f)}, q{std::log(0.25f), std::log(0.25f), std::log(0.5f)};
    EXPECT_NEAR(kl_divergence(p, p), 0.0, 1e-12);
    EXPECT_NEAR(kl_divergence(p, q), 0.5 * std::log(2.0) + 0.25 * std::log(0.5), 1e-6);
    EXPECT_NEAR(entropy_of(p), 1.5 * std::log(2.0), 1e-6);
    EXPECT_THROW(kl_divergence(p, std::vector<float>(2, 0.0f)), Error);
}

TEST(ContextDependence, EachFeatureIsTheDivergenceOfItsCut) {
    Model<Small> m(synthetic_weights<Small>({DType::f32, 6}));
    ThreadPool pool(1);
    Tlm<Small> tlm(m, pool, 100);
    const auto p = prompt_of(120, 8, 2);
    std::vector<float> scores(p.ids.size());
    for (std::size_t i = 0; i < scores.size(); ++i) scores[i] = float((i * 7919) % 101);
    auto features = [&](const TokenizedPrompt& q) {
        return context_dependence(tlm, std::span<const int>(q.ids), std::span<const std::uint8_t>(q.keep), scores);
    };
    const auto d = features(p);
    const auto whole = tlm.next_token_log_probs(p.ids);
    auto moved = [&](const std::vector<int>& cut) { return std::log1p(kl_divergence(whole, tlm.next_token_log_probs(cut))); };
    std::vector<int> protected_only;
    for (std::size_t i = 0; i < p.ids.size(); ++i)
        if (p.keep[i]) protected_only.push_back(p.ids[i]);
    EXPECT_NEAR(d[0], entropy_of(whole), 1e-4);
    EXPECT_NEAR(d[1], moved(cut_prompt(p.ids, 50, PromptCut::scores, scores, p.keep)), 1e-5);
    EXPECT_NEAR(d[2], moved(cut_prompt(p.ids, 20, PromptCut::scores, scores, p.keep)), 1e-5);
    EXPECT_NEAR(d[3], moved(cut_prompt(p.ids, 50, PromptCut::recency, {}, p.keep)), 1e-5);
    EXPECT_NEAR(d[4], moved(protected_only), 1e-5);
    for (int k = 1; k < kContextDependenceFeatures; ++k) EXPECT_GT(d[k], 1e-6) << k;  // every cut removed something
    // No keep flags: only the first token is protected, so the last feature reads BOS alone.
    const auto bos_only = context_dependence(tlm, std::span<const int>(p.ids), {}, scores);
    EXPECT_NEAR(bos_only[4], moved({p.ids[0]}), 1e-5);
    // A prompt with every token protected has nothing to cut: no divergence at all.
    TokenizedPrompt all = p;
    std::fill(all.keep.begin(), all.keep.end(), std::uint8_t(1));
    const auto none = features(all);
    for (int k = 1; k < kContextDependenceFeatures; ++k) EXPECT_NEAR(none[k], 0.0f, 1e-6) << k;
    TokenizedPrompt bad = p;
    bad.keep.pop_back();
    EXPECT_THROW(features(bad), Error);
    EXPECT_THROW(context_dependence(tlm, std::span<const int>(p.ids), std::span<const std::uint8_t>(p.keep),
                                    std::span<const float>(scores).first(5)),
                 Error);
}

// A prompt longer than the trunk's context is read by its latest context-sized window.
TEST(ContextDependence, LongPromptsAreReadByTheirLatestWindow) {
    Model<Small> m(synthetic_weights<Small>({DType::f32, 7}));
    ThreadPool pool(1);
    Tlm<Small> tlm(m, pool, 100);
    const auto p = prompt_of(Small::context + 40, 8, 3);
    const std::vector<float> scores(p.ids.size(), 1.0f);
    const auto d =
        context_dependence(tlm, std::span<const int>(p.ids), std::span<const std::uint8_t>(p.keep), std::span<const float>(scores));
    const auto window = tlm.next_token_log_probs(std::span<const int>(p.ids).last(Small::context));
    EXPECT_NEAR(d[0], entropy_of(window), 1e-4);
}

}  // namespace
}  // namespace elastilm
