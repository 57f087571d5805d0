// The TLM: ridge recovers a planted relation; features and self-induced labels agree with direct
// recomputation on a synthetic model; heads round-trip through their GGUF and are refused for another
// model, another trunk or a corrupt file; and on the real tiny-gqa-15M a small labelling + fit compresses
// prompts better than random dropping on held-out text.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>
#include <unistd.h>

#include "elastilm/formats/load.hpp"
#include "elastilm/model/perplexity.hpp"
#include "elastilm/model/synthetic.hpp"
#include "elastilm/service/tlm.hpp"
#include "elastilm/service/tlm_labels.hpp"
#include "elastilm/tokenizer/tokenizer.hpp"
#include "shared_models.hpp"

namespace elastilm {
namespace {

using Small = Stories260K;

std::filesystem::path temp_file(const std::string& name) {
    return std::filesystem::temp_directory_path() / ("elastilm_tlm_" + std::to_string(::getpid()) + "_" + name);
}

std::vector<int> tokens(int n, int salt) {
    std::vector<int> t(n);
    t[0] = 1;
    for (int i = 1; i < n; ++i) t[i] = 3 + (i * 37 + salt * 101) % (Small::vocab_size - 3);
    return t;
}

// A separate trunk must read the LLM's ids and be smaller; tools compile trunk pairs for these only.
TEST(TlmTrunk, OnlySmallerModelsOfTheSameVocabularyCanBeTrunks) {
    static_assert(can_be_trunk_of<DocsTlm15M, Docs95M> && can_be_trunk_of<Docs95M, TinyLlama1B>);
    static_assert(!can_be_trunk_of<Docs95M, DocsTlm15M> && !can_be_trunk_of<Docs95M, Docs95M>);
    static_assert(!can_be_trunk_of<Stories260K, Docs95M>, "another vocabulary");
    static_assert(std::is_same_v<TrunkConfigsFor<Docs95M>, std::tuple<TinyGqa15M, DocsTlm15M>>);
    static_assert(std::tuple_size_v<TrunkConfigsFor<Stories260K>> == 0);
    const auto shape_of = []<ModelConfig C>() {
        return FileHyperParams{C::dim, C::hidden_dim, C::n_layers, C::n_heads, C::n_kv_heads, C::head_dim, C::vocab_size, C::context, 0, 0};
    };
    EXPECT_TRUE(has_config_among<TrunkConfigsFor<Docs95M>>(shape_of.operator()<DocsTlm15M>()));
    EXPECT_FALSE(has_config_among<TrunkConfigsFor<Docs95M>>(shape_of.operator()<Docs95M>()));
    EXPECT_FALSE(has_config_among<TrunkConfigsFor<Stories260K>>(shape_of.operator()<Stories260K>()));
    EXPECT_TRUE(has_config_among(shape_of.operator()<Llama2_7B>()));
    // Dispatch among a subset finds the file's config there, and refuses one outside it by the file's name.
    EXPECT_EQ(with_config<TrunkConfigsFor<Docs95M>>(shape_of.operator()<TinyGqa15M>(), "t.gguf", []<ModelConfig C>() { return std::string(C::name); }),
              "tiny-gqa-15M");
    EXPECT_THROW(with_config<TrunkConfigsFor<Docs95M>>(shape_of.operator()<Docs95M>(), "t.gguf", []<ModelConfig C>() { return 0; }), Error);
}

TEST(Ridge, RecoversAPlantedLinearRelation) {
    const int rows = 400, cols = 7, targets = 3;
    std::mt19937 rng(5);
    std::normal_distribution<float> g(0, 1);
    std::vector<float> x(rows * cols), y(rows * targets), w(targets * cols);
    for (float& v : w) v = g(rng);
    for (int i = 0; i < rows; ++i) {
        for (int j = 0; j < cols; ++j) x[i * cols + j] = g(rng) * (j + 1) + 3.0f * j;  // uncentred, uneven scales
        for (int t = 0; t < targets; ++t) {
            double s = 0.5 * t - 2;
            for (int j = 0; j < cols; ++j) s += w[t * cols + j] * x[i * cols + j];
            y[i * targets + t] = float(s + 1e-3 * g(rng));
        }
    }
    const RidgeSolution r = ridge_fit(x, y, rows, cols, targets, 1e-6);
    for (int t = 0; t < targets; ++t) {
        EXPECT_NEAR(r.bias[t], 0.5 * t - 2, 1e-2) << t;
        for (int j = 0; j < cols; ++j) EXPECT_NEAR(r.weight[t * cols + j], w[t * cols + j], 1e-3) << t << "," << j;
    }
    // A large penalty shrinks the weights towards zero and the prediction towards the mean.
    const RidgeSolution shrunk = ridge_fit(x, y, rows, cols, targets, 1e9);
    for (float v : shrunk.weight) EXPECT_LT(std::fabs(v), 1e-2);
    EXPECT_THROW(ridge_fit(x, y, rows, cols + 1, targets, 1), Error);
    EXPECT_THROW(ridge_fit(x, y, rows, cols, targets, -1), Error);
}

TEST(TlmFeatures, HiddenStateSurprisalAndPositionColumns) {
    Model<Small> m(synthetic_weights<Small>({DType::f32, 3}));
    ThreadPool pool(2);
    Tlm<Small> tlm(m, pool, 20);
    const auto prompt = tokens(150, 1);  // more than one 64-token chunk
    const PromptFeatures f = tlm.features(prompt);
    ASSERT_EQ(f.tokens, 150);
    ASSERT_EQ(f.width, Small::dim + 2);
    Session<Small> s(m, pool);
    const auto logits = s.append_all_logits(prompt, 20);
    const auto direct = token_surprisal(logits, prompt, Small::vocab_size);
    for (int i = 1; i < 150; ++i) EXPECT_NEAR(f.surprisal(i), direct[i], 1e-3) << i;
    EXPECT_NEAR(f.row(0)[Small::dim + 1], std::log(150.0f), 1e-5);
    EXPECT_FLOAT_EQ(f.row(149)[Small::dim + 1], 0.0f);
    // The hidden columns are the final-norm output: their RMS after undoing the norm weights is ~1.
    double ss = 0;
    for (int j = 0; j < Small::dim; ++j) {
        const double v = f.row(7)[j] / m.weights().final_norm[j];
        ss += v * v;
    }
    EXPECT_NEAR(std::sqrt(ss / Small::dim), 1.0, 1e-3);
    EXPECT_THROW(tlm.features(std::span<const int>{}), Error);
    EXPECT_THROW(Tlm<Small>(m, pool, 25), Error);
    EXPECT_THROW(Tlm<Small>::require_same_vocabulary<TinyGqa15M>(), Error);
    // Without heads the scores are the surprisal baseline.
    const auto sc = tlm.scores(f);
    for (int i = 0; i < 150; ++i) EXPECT_EQ(sc[i], f.surprisal(i));
    EXPECT_THROW(tlm.rate(f), Error);
}

// Heads trained without surprisal: the trunk computes no logits, the surprisal column is 0 and every other
// column is what the full feature set holds; the surprisal baseline refuses such features.
TEST(TlmFeatures, HiddenModeSkipsTheLogits) {
    Model<Small> m(synthetic_weights<Small>({DType::f32, 3}));
    ThreadPool pool(1);
    Tlm<Small> full(m, pool, 20), hidden(m, pool, 20);
    hidden.set_feature_mode(TlmFeatures::hidden);
    const auto prompt = tokens(90, 2);
    const PromptFeatures a = full.features(prompt), b = hidden.features(prompt);
    ASSERT_EQ(a.values.size(), b.values.size());
    for (int i = 0; i < 90; ++i) {
        EXPECT_EQ(b.surprisal(i), 0.0f);
        EXPECT_NE(a.surprisal(i), 0.0f);
        for (int j = 0; j < a.width; ++j) {
            if (j == Small::dim) continue;
            ASSERT_NEAR(a.row(i)[j], b.row(i)[j], 1e-5) << i << "," << j;
        }
    }
    EXPECT_THROW(hidden.scores(b), Error);
}

TEST(TlmLabels, DropLabelsMatchDirectRecomputation) {
    Model<Small> m(synthetic_weights<Small>({DType::f32, 4}));
    ThreadPool pool(2);
    const auto all = tokens(20, 2);
    CalibrationExample ex{{all.begin(), all.begin() + 14}, {all.begin() + 14, all.end()}};
    ex.prompt[5] = 2;  // an EOS inside: never dropped, no label
    Session<Small> s(m, pool, 64, 64);
    const double base = continuation_nll(s, std::span<const int>(ex.prompt), ex.continuation);
    for (int span : {1, 3}) {
        const auto labels = drop_labels(m, pool, ex, span);
        ASSERT_EQ(labels.size(), 14u);
        EXPECT_TRUE(std::isnan(labels[0])) << "BOS";
        EXPECT_TRUE(std::isnan(labels[5])) << "EOS";
        for (int start = 0; start < 14; start += span) {
            std::vector<int> dropped;
            for (int i = 0; i < 14; ++i)
                if (i < start || i >= start + span || i == 0 || i == 5) dropped.push_back(ex.prompt[i]);
            const double want = continuation_nll(s, std::span<const int>(dropped), ex.continuation) - base;
            for (int i = start; i < std::min(14, start + span); ++i)
                if (i != 0 && i != 5) {
                    EXPECT_NEAR(labels[i], want, 1e-4) << "span " << span << " token " << i;
                }
        }
    }
}

TEST(TlmLabels, PairLabelsAreMeasuredLogLikelihoods) {
    Model<Small> m(synthetic_weights<Small>({DType::f32, 6}));
    ThreadPool pool(1);
    const auto all = tokens(16, 3);
    const CalibrationExample ex{{all.begin(), all.begin() + 10}, {all.begin() + 10, all.end()}};
    std::vector<float> scores(10);
    for (int i = 0; i < 10; ++i) scores[i] = float((i * 3) % 7);
    const auto labels = pair_labels(m, pool, ex, scores);
    Session<Small> s(m, pool, 64, 64);
    for (auto [p, mr] : {std::pair{100, 100}, {50, 30}, {20, 90}}) {
        const auto c = compress(ex.prompt, p, scores);
        EXPECT_NEAR(labels[pair_index(p, mr)], -continuation_nll(s, std::span<const int>(c.ids), ex.continuation, mr), 1e-5);
    }
    const auto stream = tokens(200, 4);
    std::vector<int> with_bos = stream;
    for (int i = 0; i < 200; i += 25) with_bos[i] = 1;
    const auto exs = calibration_examples(with_bos, 100, 12, 4);
    EXPECT_EQ(exs.size(), 8u);  // one per 25-token paragraph: each 16-token example ends before the next BOS
    for (const auto& e : exs) EXPECT_EQ(e.prompt[0], 1);
}

TlmHeads fitted_heads(const Model<Small>& m, int seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0, 1);
    const int w = Small::dim + kExtraTokenFeatures, n = 60;
    std::vector<float> rows(n * w), y(n), pooled(n * kDecisionFeatures), py(n * kPairs);
    for (float& v : rows) v = g(rng);
    for (float& v : y) v = g(rng);
    for (float& v : pooled) v = g(rng);
    for (float& v : py) v = g(rng);
    TlmHeads h;
    h.llm = h.trunk = identity_of(m);
    h.score = ScoreHead::fit(rows, y, w, 1.0);
    h.decision = DecisionHead::fit(pooled, py, kDecisionFeatures, 1.0);
    return h;
}

TEST(TlmHeads, FeatureModeRoundTripsAndSetsTheTrunk) {
    Model<Small> m(synthetic_weights<Small>({DType::f32, 8}));
    ThreadPool pool(1);
    TlmHeads h = fitted_heads(m, 4);
    h.features = TlmFeatures::hidden;
    const auto path = temp_file("hidden.gguf");
    h.save(path);
    const TlmHeads back = TlmHeads::load(path);
    std::filesystem::remove(path);
    EXPECT_EQ(back.features, TlmFeatures::hidden);
    Tlm<Small> tlm(m, pool);
    tlm.use_heads(back, m);
    EXPECT_EQ(tlm.feature_mode(), TlmFeatures::hidden);
    EXPECT_EQ(tlm.features(tokens(20, 1)).surprisal(5), 0.0f);
    EXPECT_THROW(tlm.set_feature_mode(TlmFeatures::hidden_and_surprisal), Error);
}

TEST(TlmHeads, SaveLoadRoundTripAndRefusals) {
    Model<Small> m(synthetic_weights<Small>({DType::f32, 8}));
    Model<Small> other(synthetic_weights<Small>({DType::f32, 9}));
    ThreadPool pool(1);
    Tlm<Small> tlm(m, pool);
    const PromptFeatures f = tlm.features(tokens(30, 5));
    const TlmHeads heads = fitted_heads(m, 1);
    const auto path = temp_file("heads.gguf");
    heads.save(path);
    const TlmHeads back = TlmHeads::load(path);
    EXPECT_EQ(back.llm, heads.llm);
    EXPECT_EQ(back.trunk_percent, 20);
    EXPECT_EQ(back.score.scores(f), heads.score.scores(f));
    const auto fs = heads.score.scores(f);
    EXPECT_EQ(back.decision.rate(f, fs).value, heads.decision.rate(f, fs).value);
    tlm.use_heads(back, m);
    EXPECT_EQ(tlm.scores(f), heads.score.scores(f));
    EXPECT_NE(tlm.scores(f), ScoreHead{}.scores(f));
    const PairRatings r = tlm.rate(f);
    std::vector<std::uint8_t> only(kPairs, 0);
    only[pair_index(40, 60)] = only[pair_index(90, 20)] = 1;
    const int b = r.best(only);
    EXPECT_TRUE(b == pair_index(40, 60) || b == pair_index(90, 20));
    EXPECT_EQ(r.best(std::vector<std::uint8_t>(kPairs, 0)), -1);

    // Another LLM (same config, other weights), another trunk, another trunk width: refused by name.
    Tlm<Small> tlm2(m, pool);
    try {
        tlm2.use_heads(back, other);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("trained for"), std::string::npos) << e.what();
    }
    Tlm<Small> other_trunk(other, pool), wider(m, pool, 30);
    EXPECT_THROW(other_trunk.use_heads(back, m), Error);
    EXPECT_THROW(wider.use_heads(back, m), Error);
    EXPECT_NE(identity_of(m).fingerprint, identity_of(other).fingerprint);

    // Corrupt files: truncated, not a heads file, a NaN weight.
    std::string bytes;
    {
        std::ifstream in(path, std::ios::binary);
        std::stringstream s;
        s << in.rdbuf();
        bytes = s.str();
    }
    auto write = [&](const std::string& b) {
        std::ofstream(path, std::ios::binary | std::ios::trunc) << b;
    };
    write(bytes.substr(0, bytes.size() / 2));
    EXPECT_THROW(TlmHeads::load(path), Error);
    std::string arch = bytes;
    arch.replace(arch.find("elastilm.tlm_heads"), 18, "llama.tlm_heads...");
    write(arch);
    EXPECT_THROW(TlmHeads::load(path), Error);
    std::string nan = bytes;
    const float q = NAN;
    {
        const auto parsed = io::GgufFile::parse(std::as_bytes(std::span<const char>(bytes)), "heads");
        const auto* bias = parsed.find("decision.bias");
        ASSERT_NE(bias, nullptr);
        std::memcpy(nan.data() + (reinterpret_cast<const char*>(bias->data) - bytes.data()) + 4 * 80, &q, 4);
    }
    write(nan);
    EXPECT_THROW(TlmHeads::load(path), Error);
    std::filesystem::remove(path);
    EXPECT_THROW(TlmHeads::load(path), Error);
}

TEST(TlmLabels, CalibrationExamplesCycleThroughPromptLengths) {
    std::vector<int> stream = tokens(400, 2);
    for (int i = 0; i < 400; i += 40) stream[i] = 1;
    const std::vector<int> lens = {8, 16, 24};
    const auto exs = calibration_examples(stream, 6, lens, 4);
    ASSERT_EQ(exs.size(), 6u);
    for (std::size_t k = 0; k < exs.size(); ++k) {
        EXPECT_EQ(exs[k].prompt.size(), std::size_t(lens[k % 3]));
        EXPECT_EQ(exs[k].continuation.size(), 4u);
        EXPECT_EQ(exs[k].prompt[0], 1);
    }
    EXPECT_THROW(calibration_examples(stream, 2, std::vector<int>{1}, 4), Error);
    EXPECT_THROW(calibration_examples(stream, 2, std::vector<int>{}, 4), Error);
}

// The decision head's pooled statistics are what their names say, on hand-made features.
TEST(DecisionHead, PooledStatisticsReadAsDocumented) {
    PromptFeatures f;
    f.tokens = 8;
    f.width = 2 + kExtraTokenFeatures;  // a 2-wide "hidden state"
    f.values.assign(std::size_t(f.tokens) * f.width, 0);
    for (int i = 0; i < f.tokens; ++i) {
        f.values[std::size_t(i) * f.width + 0] = 1.0f;  // every token points the same way: coherence 1
        f.values[std::size_t(i) * f.width + 2] = 2.0f;  // surprisal
    }
    const std::vector<float> scores = {0, 0, 0, 0, 0, 0, 4, 4};  // the important tokens at the end
    const auto p = DecisionHead::pooled(f, scores);
    ASSERT_EQ(p.size(), std::size_t(kDecisionFeatures));
    EXPECT_NEAR(p[0], std::log(8.0f), 1e-6);
    EXPECT_NEAR(p[1], 1.0f, 1e-6);        // mean importance
    EXPECT_NEAR(p[2], std::sqrt(3.0f), 1e-5);  // spread: values 0 (6×) and 4 (2×) around 1
    EXPECT_NEAR(p[3], 4.0f, 1e-6);        // top quarter (4, 4) against bottom half (0…)
    EXPECT_NEAR(p[4], 4.0f, 1e-6);        // last quarter against first quarter
    EXPECT_NEAR(p[5], 1.0f, 1e-6);
    EXPECT_NEAR(p[6], 2.0f, 1e-6);
    // Spread out in front instead: concentration as before, position reversed.
    const std::vector<float> front = {4, 4, 0, 0, 0, 0, 0, 0};
    EXPECT_NEAR(DecisionHead::pooled(f, front)[4], -4.0f, 1e-6);
    EXPECT_THROW(DecisionHead::pooled(f, std::vector<float>(3, 0.0f)), Error);
}

// train_tlm --no-decision-head: the score head alone round-trips; rating pairs is then refused by name.
TEST(TlmHeads, ScoreHeadAloneRoundTrips) {
    Model<Small> m(synthetic_weights<Small>({DType::f32, 8}));
    ThreadPool pool(1);
    TlmHeads heads = fitted_heads(m, 3);
    heads.decision = DecisionHead{};
    const auto path = temp_file("score-only.gguf");
    heads.save(path);
    const TlmHeads back = TlmHeads::load(path);
    std::filesystem::remove(path);
    EXPECT_FALSE(back.decision.trained());
    ASSERT_TRUE(back.score.trained());
    Tlm<Small> tlm(m, pool);
    const PromptFeatures f = tlm.features(tokens(30, 5));
    EXPECT_EQ(back.score.scores(f), heads.score.scores(f));
    tlm.use_heads(back, m);
    EXPECT_EQ(tlm.scores(f), heads.score.scores(f));
    try {
        (void)tlm.rate(f);
        FAIL() << "rated pairs without a decision head";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("decision head"), std::string::npos) << e.what();
    }
    heads.score = ScoreHead{};
    EXPECT_THROW(heads.save(path), Error);  // nothing trained: nothing to save
}

// A head on choice-item margin curves (train_tlm --decision-labels choice) predicts 27 values and rates
// pairs from them the way the measured prior does (PairRatings::from_curves); it round-trips through
// the heads file with its label kind, and an unknown kind is refused by name.
TEST(TlmHeads, ChoiceCurveHeadRatesLikeThePriorAndRoundTrips) {
    Model<Small> m(synthetic_weights<Small>({DType::f32, 8}));
    ThreadPool pool(1);
    std::mt19937 rng(11);
    std::normal_distribution<float> g(0, 1);
    const int n = 40, k = PairRatings::kCurveValues;
    std::vector<float> pooled(n * kDecisionFeatures), y(n * k);
    for (float& v : pooled) v = g(rng);
    for (float& v : y) v = g(rng);
    TlmHeads heads = fitted_heads(m, 5);
    heads.decision = DecisionHead::fit(pooled, y, kDecisionFeatures, 1.0, DecisionLabels::choice_curves);
    EXPECT_EQ(heads.decision.outputs(), 27);
    EXPECT_THROW(DecisionHead::fit(pooled, std::span<const float>(y).first(n * kPairs / 3 + 1), kDecisionFeatures, 1.0, DecisionLabels::choice_curves),
                 Error);

    Tlm<Small> tlm(m, pool);
    const PromptFeatures f = tlm.features(tokens(30, 5));
    const auto fs = heads.score.scores(f);
    const PairRatings r = heads.decision.rate(f, fs);
    // The ratings are the curves' additive combination, decode curve included.
    const auto z = DecisionHead::pooled(f, fs);
    std::vector<float> zs(z.size());
    heads.decision.norm.apply(z.data(), zs.data());
    std::array<double, PairRatings::kCurveValues> curves{};
    for (int t = 0; t < k; ++t) curves[t] = heads.decision.ridge.predict(zs.data(), t);
    const PairRatings expect = PairRatings::from_curves(curves);
    EXPECT_EQ(r.value, expect.value);
    EXPECT_EQ(r.decode, expect.decode);
    EXPECT_NE(r.decode, (std::array<float, kRatios.size()>{}));

    const auto path = temp_file("curves.gguf");
    heads.save(path);
    const TlmHeads back = TlmHeads::load(path);
    EXPECT_EQ(back.decision.labels, DecisionLabels::choice_curves);
    EXPECT_EQ(back.decision.rate(f, fs).value, r.value);
    EXPECT_EQ(back.decision.rate(f, fs).decode, r.decode);

    std::string bytes;
    {
        std::ifstream in(path, std::ios::binary);
        std::stringstream s;
        s << in.rdbuf();
        bytes = s.str();
    }
    const auto at = bytes.find("choice-curves");
    ASSERT_NE(at, std::string::npos);
    bytes.replace(at, 13, "choice-cubes!");
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    try {
        TlmHeads::load(path);
        FAIL() << "an unknown decision label kind loaded";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("decision_labels"), std::string::npos) << e.what();
    }
    std::filesystem::remove(path);
}

// The 3-output head (choice_scales): when an item's curves fall k times as steeply as the mean item's and
// k depends on a pooled statistic, the head recovers each curve's fall from the statistics; shrink 0 is
// exactly the prior (the training mean); it round-trips with its mean curves, and a file that lacks
// them is refused by the tensor's name.
TEST(TlmHeads, ChoiceScaleHeadLearnsHowSteeplyCurvesFall) {
    std::mt19937 rng(5);
    std::normal_distribution<float> g(0, 1);
    const int n = 80, w = PairRatings::kCurveValues;
    const std::size_t nr = kRatios.size();
    auto fall = [&](std::size_t c, std::size_t r) { return -double(c + 1) * (1.0 - kRatios[r] / 100.0) * (1.5 - kRatios[r] / 100.0); };
    auto steepness = [](const float* p, std::size_t c) { return 1.0 + 0.4 * p[c]; };
    std::vector<float> pooled(n * kDecisionFeatures), y(n * w);
    for (float& v : pooled) v = g(rng);
    for (int i = 0; i < n; ++i) {
        const float level = g(rng);  // an item's own margin at 100 %: ranks nothing
        for (std::size_t c = 0; c < 3; ++c)
            for (std::size_t r = 0; r < nr; ++r)
                y[i * w + c * nr + r] = float(level + steepness(&pooled[i * kDecisionFeatures], c) * fall(c, r) + 0.01 * g(rng));
    }
    const DecisionHead h = DecisionHead::fit(pooled, y, kDecisionFeatures, 0.01, DecisionLabels::choice_scales);
    EXPECT_EQ(h.outputs(), 3);
    ASSERT_EQ(h.prior.size(), std::size_t(w));
    std::vector<float> probe(kDecisionFeatures);
    for (float& v : probe) v = g(rng);
    const PairRatings r = h.rate_pooled(probe);
    for (std::size_t c = 0; c < 3; ++c) {  // the predicted model, prompt and decode curves, read back from the ratings
        const double k = steepness(probe.data(), c);
        for (std::size_t m = 0; m < nr; ++m) {
            const double got = c == 0   ? r.at(100, kRatios[m]) - r.at(100, 100)
                               : c == 1 ? r.at(kRatios[m], 100) - r.at(100, 100)
                                        : r.decode[m] - r.decode[nr - 1];
            EXPECT_NEAR(got, k * fall(c, m), 0.03 + 0.03 * std::abs(k * fall(c, m))) << "curve " << c << " at " << kRatios[m] << " %";
        }
    }
    // A prompt far outside the training statistics: steepness 1 + 0.4 · (−10) would turn each curve upside
    // down, and 1 + 0.4 · 10 is beyond what any item showed; the head bounds it to [1/4, 3].
    for (const float extreme : {-10.0f, 10.0f}) {
        std::vector<float> far(kDecisionFeatures, 0.0f);
        for (std::size_t c = 0; c < 3; ++c) far[c] = extreme;
        const PairRatings e = h.rate_pooled(far);
        const double k = extreme < 0 ? DecisionHead::kMinCurveScale : DecisionHead::kMaxCurveScale;  // times the training items' mean fall
        auto prior_fall = [&](std::size_t c, std::size_t m) { return double(h.prior[c * nr + m]) - h.prior[c * nr + nr - 1]; };
        for (std::size_t m = 0; m < nr; ++m) {
            EXPECT_NEAR(e.at(100, kRatios[m]) - e.at(100, 100), k * prior_fall(0, m), 1e-4 + 1e-4 * std::abs(k * prior_fall(0, m))) << kRatios[m];
            EXPECT_NEAR(e.decode[m] - e.decode[nr - 1], k * prior_fall(2, m), 1e-4 + 1e-4 * std::abs(k * prior_fall(2, m))) << kRatios[m];
        }
    }
    // Shrink 0: every prompt gets the prior.
    std::array<double, PairRatings::kCurveValues> mean{};
    for (int i = 0; i < n; ++i)
        for (int t = 0; t < w; ++t) mean[t] += y[i * w + t] / double(n);
    const PairRatings prior = PairRatings::from_curves(mean);
    const PairRatings flat = DecisionHead::fit(pooled, y, kDecisionFeatures, 0.01, DecisionLabels::choice_scales, 0.0).rate_pooled(probe);
    for (int k = 0; k < kPairs; ++k) EXPECT_NEAR(flat.value[k], prior.value[k], 1e-4);
    for (std::size_t k = 0; k < nr; ++k) EXPECT_NEAR(flat.decode[k], prior.decode[k], 1e-4);
    EXPECT_THROW(DecisionHead::fit(pooled, y, kDecisionFeatures, 0.01, DecisionLabels::choice_scales, 1.5), Error);

    Model<Small> m(synthetic_weights<Small>({DType::f32, 8}));
    TlmHeads heads = fitted_heads(m, 5);
    heads.decision = h;
    const auto path = temp_file("scales.gguf");
    heads.save(path);
    const TlmHeads back = TlmHeads::load(path);
    EXPECT_EQ(back.decision.labels, DecisionLabels::choice_scales);
    EXPECT_EQ(back.decision.prior, h.prior);
    EXPECT_EQ(back.decision.rate_pooled(probe).value, r.value);
    EXPECT_EQ(back.decision.rate_pooled(probe).decode, r.decode);
    std::string bytes;
    {
        std::ifstream in(path, std::ios::binary);
        std::stringstream s;
        s << in.rdbuf();
        bytes = s.str();
    }
    const auto at = bytes.find("decision.prior");
    ASSERT_NE(at, std::string::npos);
    bytes.replace(at, 14, "decision.prioR");
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    try {
        TlmHeads::load(path);
        FAIL() << "a choice-scales head without its mean curves loaded";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("decision.prior"), std::string::npos) << e.what();
    }
    std::filesystem::remove(path);
}

// Heads written before the decision head read pooled statistics are refused with what to do.
TEST(TlmHeads, AnOlderDecisionHeadIsRefusedByName) {
    Model<Small> m(synthetic_weights<Small>({DType::f32, 8}));
    const TlmHeads heads = fitted_heads(m, 2);
    const auto path = temp_file("old.gguf");
    heads.save(path);
    std::string bytes;
    {
        std::ifstream in(path, std::ios::binary);
        std::stringstream s;
        s << in.rdbuf();
        bytes = s.str();
    }
    const std::string key = "elastilm.tlm.decision_features";
    const auto at = bytes.find(key);
    ASSERT_NE(at, std::string::npos);
    bytes.replace(at, key.size(), "elastilm.tlm.decision_featureZ");
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    try {
        TlmHeads::load(path);
        FAIL() << "an old heads file loaded";
    } catch (const Error& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find(path.string()), std::string::npos) << what;
        EXPECT_NE(what.find("train_tlm"), std::string::npos) << what;
    }
    std::filesystem::remove(path);
}

// The real model: a small labelling + fit, held-out prompts compressed to 50%.
TEST(TlmOnTinyGqa, TrainedOrSurprisalCompressionBeatsRandomDropping) {
    ELASTILM_REQUIRE_SHARED(test::shared_model("tiny-gqa-15M/model.safetensors"));
    ELASTILM_REQUIRE_SHARED(test::shared_model("tokenizer.model"));
    if (test::emulated()) GTEST_SKIP() << "labelling runs hundreds of forward passes: native only";
    using Cfg = TinyGqa15M;
    const Tokenizer tok = Tokenizer::from_model_file(test::shared_model("tokenizer.model"));
    std::ifstream in(test::shared_model("tiny-gqa-15M/valid.txt"));
    std::stringstream text;
    text << in.rdbuf();
    const auto stream = paragraph_stream(tok, text.str());
    const Model<Cfg> llm(load_model<Cfg>(test::shared_model("tiny-gqa-15M")));
    ThreadPool pool(2);
    Tlm<Cfg> tlm(llm, pool, 20);
    const auto examples = calibration_examples(std::span<const int>(stream).subspan(16384), 18, 24, 8);
    ASSERT_EQ(examples.size(), 18u);
    const int n_train = 12, w = Tlm<Cfg>::feature_width;
    std::vector<PromptFeatures> feats;
    std::vector<float> rows, y;
    for (int i = 0; i < 18; ++i) {
        feats.push_back(tlm.features(examples[i].prompt));
        if (i >= n_train) continue;
        const auto labels = drop_labels(llm, pool, examples[i], 4);
        for (int t = 0; t < feats[i].tokens; ++t)
            if (std::isfinite(labels[t])) {
                rows.insert(rows.end(), feats[i].row(t), feats[i].row(t) + w);
                y.push_back(labels[t]);
            }
    }
    const ScoreHead head = ScoreHead::fit(rows, y, w, 100.0);
    Session<Cfg> s(llm, pool, 64, 64);
    std::mt19937 rng(3);
    double nll_head = 0, nll_surprisal = 0, nll_random = 0;
    auto at_50 = [&](const CalibrationExample& ex, const std::vector<float>& sc) {
        return continuation_nll(s, std::span<const int>(compress(ex.prompt, 50, sc).ids), ex.continuation);
    };
    for (int i = n_train; i < 18; ++i) {
        nll_head += at_50(examples[i], head.scores(feats[i]));
        nll_surprisal += at_50(examples[i], ScoreHead{}.scores(feats[i]));
        for (int d = 0; d < 4; ++d) {
            std::vector<float> r(feats[i].tokens);
            for (float& v : r) v = std::uniform_real_distribution<float>(0, 1)(rng);
            nll_random += at_50(examples[i], r) / 4;
        }
    }
    std::printf("held-out continuation NLL at 50%% prompt: trained %.4f, surprisal %.4f, random %.4f\n", nll_head / 6, nll_surprisal / 6,
                nll_random / 6);
    EXPECT_LT(std::min(nll_head, nll_surprisal), nll_random);
}

}  // namespace
}  // namespace elastilm
