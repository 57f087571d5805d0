// The TLM as the service's PromptScorer: scores every token of prompts longer than the trunk's context,
// predicts its own latency from a measurement, uses trained heads (and their feature mode) when given,
// can withhold its decision head's ratings, rates with a head that reads the context dependence, and
// refuses heads trained for another model.
#include <gtest/gtest.h>

#include <random>
#include <unistd.h>

#include "elastilm/model/synthetic.hpp"
#include "elastilm/service/tlm_scorer.hpp"

namespace elastilm {
namespace {

using Cfg = Stories260K;

std::vector<int> prompt(int n) {
    std::vector<int> t(n);
    t[0] = 1;
    for (int i = 1; i < n; ++i) t[i] = 3 + (i * 41 + 7) % (Cfg::vocab_size - 3);
    return t;
}

TlmHeads random_heads(const Model<Cfg>& m, TlmFeatures mode) {
    std::mt19937 rng(3);
    std::normal_distribution<float> g(0, 1);
    const int w = Cfg::dim + kExtraTokenFeatures, n = 40;
    std::vector<float> rows(n * w), y(n), pooled(n * kDecisionFeatures), py(n * kPairs);
    for (auto* v : {&rows, &y, &pooled, &py})
        for (float& x : *v) x = g(rng);
    TlmHeads h;
    h.llm = h.trunk = identity_of(m);
    h.features = mode;
    h.score = ScoreHead::fit(rows, y, w, 1.0);
    h.decision = DecisionHead::fit(pooled, py, kDecisionFeatures, 1.0);
    return h;
}

TEST(TlmScorer, BaselineScoresEveryTokenOfLongPrompts) {
    Model<Cfg> m(synthetic_weights<Cfg>({DType::f32, 2}));
    ThreadPool pool(1);
    TlmScorer<Cfg> scorer(m, pool, "");
    EXPECT_FALSE(scorer.has_heads());
    const auto ids = prompt(Cfg::context + 150);  // two trunk windows
    const PromptAnalysis a = scorer.analyze(ids);
    ASSERT_EQ(a.scores.size(), ids.size());
    EXPECT_FALSE(a.ratings.has_value());
    int distinct = 0;
    for (std::size_t i = 1; i < a.scores.size(); ++i) distinct += a.scores[i] != a.scores[i - 1];
    EXPECT_GT(distinct, 100);  // real surprisal, not a constant
    // Its own latency, measured: positive and growing with the prompt.
    EXPECT_GT(scorer.predicted_ms(16), 0.0);
    EXPECT_GE(scorer.predicted_ms(256), scorer.predicted_ms(16));
    const PromptScorer ps = scorer.as_prompt_scorer();
    EXPECT_EQ(ps.analyze(ids, {}).scores, a.scores);
    EXPECT_EQ(ps.predicted_ms(100), scorer.predicted_ms(100));
}

TEST(TlmScorer, TrainedHeadsRateEveryPairAndForeignHeadsAreRefused) {
    Model<Cfg> m(synthetic_weights<Cfg>({DType::f32, 2})), other(synthetic_weights<Cfg>({DType::f32, 6}));
    ThreadPool pool(1);
    const auto path = std::filesystem::temp_directory_path() / ("elastilm_scorer_" + std::to_string(::getpid()) + ".gguf");
    random_heads(m, TlmFeatures::hidden).save(path);
    {
        TlmScorer<Cfg> scorer(m, pool, path);
        EXPECT_TRUE(scorer.has_heads());
        const PromptAnalysis a = scorer.analyze(prompt(60));
        ASSERT_TRUE(a.ratings.has_value());
        EXPECT_EQ(a.scores.size(), 60u);
        int distinct = 0;
        for (int i = 1; i < kPairs; ++i) distinct += a.ratings->value[i] != a.ratings->value[0];
        EXPECT_GT(distinct, 0);
    }
    try {
        TlmScorer<Cfg> wrong(other, pool, path);
        ADD_FAILURE() << "heads for another model were accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("TLM heads were trained for"), std::string::npos) << e.what();
    }
    std::filesystem::remove(path);
    EXPECT_EQ(default_heads_path("dir/model.gguf"), std::filesystem::path("dir/model.tlm.gguf"));
}

TEST(TlmScorer, CanWithholdItsDecisionHead) {
    Model<Cfg> m(synthetic_weights<Cfg>({DType::f32, 2}));
    ThreadPool pool(1);
    const auto path = std::filesystem::temp_directory_path() / ("elastilm_withhold_" + std::to_string(::getpid()) + ".gguf");
    random_heads(m, TlmFeatures::hidden).save(path);
    TlmScorer<Cfg> scorer(m, pool, path);
    const PromptAnalysis with = scorer.as_prompt_scorer(true).analyze(prompt(40), {}),
                         without = scorer.as_prompt_scorer(false).analyze(prompt(40), {});
    EXPECT_TRUE(with.ratings.has_value());
    EXPECT_FALSE(without.ratings.has_value());  // the orchestrator's prior ranks the pairs then
    EXPECT_EQ(with.scores, without.scores);     // and the score head still chooses the tokens
    std::filesystem::remove(path);
}

// A decision head that also reads the prompt's context dependence: it survives the heads file, the
// scorer rates with exactly the pooled statistics followed by context_dependence() of the prompt and its
// keep flags, its ratings follow those flags, and its time is measured with and without them.
TEST(TlmScorer, ContextReadingHeadRatesWithTheKeepFlags) {
    Model<Cfg> m(synthetic_weights<Cfg>({DType::f32, 2}));
    ThreadPool pool(1);
    const auto path = std::filesystem::temp_directory_path() / ("elastilm_context_" + std::to_string(::getpid()) + ".gguf");
    TlmHeads h = random_heads(m, TlmFeatures::hidden);
    {
        std::mt19937 rng(4);
        std::normal_distribution<float> g(0, 1);
        const int w = kDecisionFeatures + kContextDependenceFeatures, n = 40;
        std::vector<float> pooled(n * w), py(n * kPairs);
        for (auto* v : {&pooled, &py})
            for (float& x : *v) x = g(rng);
        h.decision = DecisionHead::fit(pooled, py, w, 1.0);
        EXPECT_THROW(DecisionHead::fit(std::span<const float>(pooled).first(n * (w - 1)), py, w - 1, 1.0), Error);  // neither width
    }
    ASSERT_TRUE(h.decision.reads_context());
    h.save(path);
    EXPECT_TRUE(TlmHeads::load(path).decision.reads_context());
    TlmScorer<Cfg> scorer(m, pool, path);
    const auto ids = prompt(60);
    std::vector<std::uint8_t> keep(ids.size(), 0);
    keep[0] = 1;
    for (std::size_t i = 50; i < ids.size(); ++i) keep[i] = 1;  // a protected question at the end
    const PromptAnalysis a = scorer.as_prompt_scorer(true).analyze(ids, keep);
    ASSERT_TRUE(a.ratings.has_value());
    // The same ratings, computed by hand with a TLM of the same trunk and heads.
    Tlm<Cfg> tlm(m, pool, 20);
    tlm.use_heads(TlmHeads::load(path), m);
    const PromptFeatures f = tlm.features(ids);
    std::vector<float> pooled = DecisionHead::pooled(f, a.scores);
    const auto context =
        context_dependence(tlm, std::span<const int>(ids), std::span<const std::uint8_t>(keep), std::span<const float>(a.scores));
    pooled.insert(pooled.end(), context.begin(), context.end());
    const PairRatings expected = h.decision.rate_pooled(pooled);
    for (int k = 0; k < kPairs; ++k) EXPECT_NEAR(a.ratings->value[k], expected.value[k], 1e-4) << k;
    EXPECT_THROW(tlm.rate(f, a.scores), Error);  // the statistics alone are not what this head reads
    // Other keep flags cut the prompt differently, so the ratings move.
    const PromptAnalysis bos_only = scorer.as_prompt_scorer(true).analyze(ids, {});
    double moved = 0;
    for (int k = 0; k < kPairs; ++k) moved += std::abs(bos_only.ratings->value[k] - a.ratings->value[k]);
    EXPECT_GT(moved, 1e-4);
    // Withheld ratings need no context reads; both times are measured (which is larger is for a bench to
    // say, not a test under a loaded CI machine).
    EXPECT_FALSE(scorer.as_prompt_scorer(false).analyze(ids, keep).ratings.has_value());
    EXPECT_GT(scorer.predicted_ms(256, true), 0.0);
    EXPECT_GT(scorer.predicted_ms(256, false), 0.0);
    std::filesystem::remove(path);
}

TEST(TlmScorer, ScoreHeadAloneGivesNoRatings) {
    Model<Cfg> m(synthetic_weights<Cfg>({DType::f32, 2}));
    ThreadPool pool(1);
    const auto path = std::filesystem::temp_directory_path() / ("elastilm_score_only_" + std::to_string(::getpid()) + ".gguf");
    TlmHeads h = random_heads(m, TlmFeatures::hidden);
    h.decision = DecisionHead{};
    h.save(path);
    TlmScorer<Cfg> scorer(m, pool, path);
    EXPECT_TRUE(scorer.has_heads());
    EXPECT_FALSE(scorer.has_decision_head());
    EXPECT_NE(scorer.description().find("trained score head ("), std::string::npos) << scorer.description();
    const PromptAnalysis a = scorer.as_prompt_scorer(true).analyze(prompt(40), {});
    EXPECT_FALSE(a.ratings.has_value());
    EXPECT_EQ(a.scores.size(), 40u);
    std::filesystem::remove(path);
}

TEST(TlmScorer, SeparateTrunkModel) {
    Model<Cfg> llm(synthetic_weights<Cfg>({DType::f32, 2})), small(synthetic_weights<Cfg>({DType::f32, 11}));
    ThreadPool pool(1);
    TlmScorer<Cfg, Cfg> scorer(llm, small, pool, "");
    EXPECT_NE(scorer.description().find("trunk = stories260K at 20%"), std::string::npos) << scorer.description();
    // Its scores are the small model's surprisal, not the served model's.
    TlmScorer<Cfg> own(llm, pool, "");
    EXPECT_NE(scorer.analyze(prompt(40)).scores, own.analyze(prompt(40)).scores);
    // A trunk with another vocabulary cannot read the served model's ids.
    Model<TinyGqa15M> other(synthetic_weights<TinyGqa15M>({DType::f16, 1}));
    using Mixed = TlmScorer<TinyGqa15M, Cfg>;
    EXPECT_THROW(Mixed(other, small, pool, ""), Error);
}

}  // namespace
}  // namespace elastilm
