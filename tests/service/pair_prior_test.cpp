// The orchestrator's measured prior (service/pair_prior.hpp): the two quality curves are measured the
// way the evaluation reads answers and meet at 100 %, combine additively, round-trip through their cache,
// and a cache for other weights or a damaged one is re-measured rather than trusted.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>
#include <unistd.h>

#include "elastilm/model/synthetic.hpp"
#include "elastilm/service/pair_prior.hpp"
#include "elastilm/service/tlm_scorer.hpp"
#include "shared_models.hpp"

namespace elastilm {
namespace {

using Cfg = Stories260K;

std::vector<ChoiceItem> items(int n) {
    std::mt19937 rng(9);
    auto ids = [&](int k) {
        std::vector<int> v(k);
        for (int& x : v) x = 3 + int(rng() % (Cfg::vocab_size - 3));
        return v;
    };
    std::vector<ChoiceItem> out;
    for (int i = 0; i < n; ++i) {
        ChoiceItem it;
        it.context = ids(30);
        it.context[10] = 1;  // a paragraph's BOS inside the context: never dropped
        it.question = ids(4);
        for (auto& c : it.choices) c = ids(3);
        it.answer = i % 4;
        out.push_back(std::move(it));
    }
    return out;
}

std::filesystem::path temp(const std::string& name) {
    return std::filesystem::temp_directory_path() / ("elastilm_prior_" + std::to_string(::getpid()) + "_" + name);
}

TEST(PairPrior, ChoicePromptProtectsBosAndQuestion) {
    const ChoiceItem it = items(1)[0];
    const TokenizedPrompt p = choice_prompt(it);
    ASSERT_EQ(p.ids.size(), 1 + it.context.size() + it.question.size());
    EXPECT_EQ(p.ids[0], 1);
    EXPECT_EQ(p.keep[0], 1);
    EXPECT_EQ(p.keep[1 + 10], 1);  // the paragraph BOS inside the context
    EXPECT_EQ(p.protected_count(), 1 + 1 + int(it.question.size()));
    for (std::size_t k = 0; k < it.question.size(); ++k) EXPECT_EQ(p.keep[p.keep.size() - 1 - k], 1);
}

// A small served model, its own 20 % variant as the TLM (surprisal scores), and a session.
struct Served : ::testing::Test {
    Model<Cfg> m{synthetic_weights<Cfg>({DType::f32, 2})};
    ThreadPool pool{1};
    TlmScorer<Cfg> tlm{m, pool, ""};
    PromptScorer score = tlm.as_prompt_scorer();
    Session<Cfg> s{m, pool};
};

// Under qemu 2 items instead of 6 (and 5): each is 33 runs of the model, and the identities hold for any count.
TEST_F(Served, CurvesMeetAtTheFullModelAndCombineAdditively) {
    const auto its = items(test::emulated() ? 2 : 6);
    std::vector<int> seen;
    const RatioQuality q = ratio_quality(s, score, std::span<const ChoiceItem>(its), [&](int percent, const RatioQuality&) { seen.push_back(percent); });
    EXPECT_EQ(seen, std::vector<int>(kRatios.begin(), kRatios.end()));
    for (std::size_t r = 0; r < kRatios.size(); ++r) {
        for (double v : {q.model_acc[r], q.prompt_acc[r], q.decode_acc[r], q.recency_acc[r]}) EXPECT_TRUE(v >= 0 && v <= 1) << v;
        for (double v : {q.model_ll[r], q.prompt_ll[r], q.decode_ll[r], q.recency_ll[r], q.model_margin[r], q.prompt_margin[r],
                         q.decode_margin[r], q.recency_margin[r]})
            EXPECT_TRUE(std::isfinite(v));
    }
    // At 100 % the four curves are the same run: the full model, the whole prompt.
    EXPECT_DOUBLE_EQ(q.model_margin.back(), q.prompt_margin.back());
    EXPECT_DOUBLE_EQ(q.model_margin.back(), q.decode_margin.back());
    EXPECT_DOUBLE_EQ(q.model_margin.back(), q.recency_margin.back());
    EXPECT_DOUBLE_EQ(q.model_acc.back(), q.prompt_acc.back());
    // Some ratio reads something else (a narrower model or fewer tokens changes the margins).
    int differ = 0;
    for (std::size_t r = 0; r + 1 < kRatios.size(); ++r) differ += q.model_margin[r] != q.model_margin.back();
    EXPECT_GT(differ, 0);
    // Decoding narrower than a full-width prefill is a run of its own, not the model curve's.
    differ = 0;
    for (std::size_t r = 0; r + 1 < kRatios.size(); ++r) differ += q.decode_margin[r] != q.model_margin[r];
    EXPECT_GT(differ, 0);

    const PairRatings prior = prior_ratings(q);
    for (std::size_t pi = 0; pi < kRatios.size(); ++pi)
        for (std::size_t mi = 0; mi < kRatios.size(); ++mi)
            EXPECT_NEAR(prior.at(kRatios[pi], kRatios[mi]), q.model_margin[mi] + q.prompt_margin[pi] - q.model_margin.back(), 1e-5);
    for (std::size_t r = 0; r < kRatios.size(); ++r) EXPECT_FLOAT_EQ(prior.decode[r], float(q.decode_margin[r]));
    // Recency cuts keep other tokens than the TLM's at some ratio, and are rated by the difference.
    differ = 0;
    for (std::size_t r = 0; r + 1 < kRatios.size(); ++r) differ += q.recency_margin[r] != q.prompt_margin[r];
    EXPECT_GT(differ, 0);
    ASSERT_TRUE(prior.recency.has_value());
    for (std::size_t r = 0; r < kRatios.size(); ++r) EXPECT_FLOAT_EQ((*prior.recency)[r], float(q.recency_margin[r] - q.prompt_margin[r]));
    EXPECT_FLOAT_EQ(prior.recency->back(), 0.0f);

    EXPECT_THROW(ratio_quality(s, score, std::span<const ChoiceItem>(), {}), Error);
}

// One item's curves are the decision head's choice labels: their mean over the items is the prior's
// margins, configuration by configuration (the same runs, averaged).
TEST_F(Served, ItemCurvesAverageToTheMeasuredPrior) {
    const auto its = items(test::emulated() ? 2 : 5);
    const RatioQuality q = ratio_quality(s, score, std::span<const ChoiceItem>(its));
    std::array<double, PairRatings::kCurveValues> mean{};
    for (const auto& it : its) {
        const TokenizedPrompt p = choice_prompt(it);
        const auto scores = score.analyze(p.ids, p.keep).scores;
        const auto c = item_curves(s, it, std::span<const float>(scores));
        for (int k = 0; k < PairRatings::kCurveValues; ++k) mean[k] += c[k] / double(its.size());
        const std::size_t last = kRatios.size() - 1;  // at 100 % the three curves are one run
        EXPECT_DOUBLE_EQ(c[last], c[kRatios.size() + last]);
        EXPECT_DOUBLE_EQ(c[last], c[2 * kRatios.size() + last]);
    }
    for (std::size_t r = 0; r < kRatios.size(); ++r) {
        EXPECT_NEAR(mean[r], q.model_margin[r], 1e-9) << kRatios[r];
        EXPECT_NEAR(mean[kRatios.size() + r], q.prompt_margin[r], 1e-9) << kRatios[r];
        EXPECT_NEAR(mean[2 * kRatios.size() + r], q.decode_margin[r], 1e-9) << kRatios[r];
    }
    const PairRatings a = prior_ratings(q), b = PairRatings::from_curves(mean);
    for (int k = 0; k < kPairs; ++k) EXPECT_NEAR(a.value[k], b.value[k], 1e-5);
    for (std::size_t r = 0; r < kRatios.size(); ++r) EXPECT_NEAR(a.decode[r], b.decode[r], 1e-5);
    EXPECT_THROW(PairRatings::from_curves(std::span<const double>(mean).first(18)), Error);
}

TEST(PairPrior, CacheRoundTripsAndRefusesOtherWeightsOrDamage) {
    RatioQuality q;
    for (std::size_t r = 0; r < kRatios.size(); ++r) {
        q.model_margin[r] = 0.25 * double(r) - 1;
        q.prompt_margin[r] = 0.125 * double(r);
        q.decode_margin[r] = 0.5 * double(r);
        q.recency_margin[r] = 0.0625 * double(r);
        q.model_acc[r] = 0.5;
    }
    const auto path = temp("cache.json");
    save_prior(q, "key-a", 12, path);
    std::string why;
    const auto back = load_prior(path, "key-a", &why);
    ASSERT_TRUE(back.has_value()) << why;
    EXPECT_EQ(back->model_margin, q.model_margin);
    EXPECT_EQ(back->prompt_margin, q.prompt_margin);
    EXPECT_EQ(back->decode_margin, q.decode_margin);
    EXPECT_EQ(back->recency_margin, q.recency_margin);

    EXPECT_FALSE(load_prior(path, "key-b", &why).has_value());
    EXPECT_NE(why.find("other weights"), std::string::npos) << why;

    const std::string nine = "[1,1,1,1,1,1,1,1,1]";
    for (const std::string& bad : {std::string("{\"format\": \"elastilm-pair-prior/3\", \"key\": \"key-a\", \"model_margin\": [1, 2]}"),
                                   "{\"format\": \"elastilm-pair-prior/3\", \"key\": \"key-a\", \"model_margin\": [1,1,1,1,1,1,1,1,\"x\"],"
                                   " \"prompt_margin\": " + nine + ", \"decode_margin\": " + nine + ", \"recency_margin\": " + nine + "}",
                                   // a cache from before the recency curve: re-measured
                                   "{\"format\": \"elastilm-pair-prior/2\", \"key\": \"key-a\", \"model_margin\": " + nine +
                                       ", \"prompt_margin\": " + nine + ", \"decode_margin\": " + nine + "}",
                                   // the right format without the recency curve
                                   "{\"format\": \"elastilm-pair-prior/3\", \"key\": \"key-a\", \"model_margin\": " + nine +
                                       ", \"prompt_margin\": " + nine + ", \"decode_margin\": " + nine + "}",
                                   // a cache from before the decode curve: re-measured
                                   "{\"format\": \"elastilm-pair-prior/1\", \"key\": \"key-a\", \"model_margin\": " + nine +
                                       ", \"prompt_margin\": " + nine + "}",
                                   std::string("{ truncated"), std::string("[1, 2, 3]"), std::string("{\"format\": \"other\"}")}) {
        std::ofstream(path) << bad;
        why.clear();
        EXPECT_FALSE(load_prior(path, "key-a", &why).has_value()) << bad;
        EXPECT_NE(why.find(path.string()), std::string::npos) << why;
    }
    std::filesystem::remove(path);
    EXPECT_FALSE(load_prior(path, "key-a", &why).has_value());
    EXPECT_NE(why.find("not found"), std::string::npos) << why;
}

// train_tlm --labels: a decision head's labels round-trip with their key; a cache for another model (or
// from another version) is refused by the key field's name, and a truncated or damaged one by the file's.
TEST(PairPrior, LabelCacheRoundTripsAndRefusesMismatchOrDamage) {
    const auto its = items(3);
    EXPECT_EQ(item_id(its[0]), item_id(items(3)[0]));
    EXPECT_NE(item_id(its[0]), item_id(its[1]));
    ChoiceItem other_answer = its[0];
    other_answer.answer = (other_answer.answer + 1) % 4;
    EXPECT_NE(item_id(other_answer), item_id(its[0]));

    ChoiceLabels c;
    c.key = {{"model", "m-1"}, {"adapters", "none"}, {"items", "text 01 seed 2002"}};
    for (int i = 0; i < 3; ++i) {
        ChoiceLabels::Item it;
        it.id = item_id(its[i]);
        for (int k = 0; k < 7; ++k) it.pooled.push_back(0.1f * float(k) - 0.3f * float(i) + 1.0f / 3.0f);
        for (int t = 0; t < 35; ++t) it.scores.push_back(std::sin(float(t + 10 * i)));
        for (int k = 0; k < PairRatings::kCurveValues; ++k) it.curves[k] = std::cos(double(k) + i) / 7.0;
        c.items.push_back(std::move(it));
    }
    const auto path = temp("labels.json");
    save_choice_labels(c, path);
    const ChoiceLabels back = load_choice_labels(path);
    EXPECT_EQ(back.key, c.key);
    ASSERT_EQ(back.items.size(), 3u);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(back.items[i].id, c.items[i].id);
        EXPECT_EQ(back.items[i].pooled, c.items[i].pooled);  // exact: floats and doubles round-trip through JSON
        EXPECT_EQ(back.items[i].scores, c.items[i].scores);
        EXPECT_EQ(back.items[i].curves, c.items[i].curves);
    }
    back.require_key(c.key, path.string());
    auto refused = [&](const std::map<std::string, std::string>& key, const std::string& name) {
        try {
            back.require_key(key, path.string());
            ADD_FAILURE() << "a cache for another " << name << " was accepted";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
        }
    };
    auto other = c.key;
    other["model"] = "m-2";
    refused(other, "model");
    other = c.key;
    other["features"] = "hidden";  // this train_tlm keys on more than the cache recorded
    refused(other, "features");
    other = c.key;
    other.erase("adapters");  // the cache records more than this train_tlm knows
    refused(other, "adapters");

    std::string text;
    {
        std::ifstream in(path);
        std::stringstream ss;
        ss << in.rdbuf();
        text = ss.str();
    }
    auto damaged = [&](const std::string& bytes, const std::string& says) {
        std::ofstream(path, std::ios::trunc) << bytes;
        try {
            (void)load_choice_labels(path);
            ADD_FAILURE() << "damaged cache loaded: " << bytes.substr(0, 80);
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
        }
    };
    damaged(text.substr(0, text.size() / 2), "not JSON");
    damaged("{\"format\": \"elastilm-pair-prior/2\"}", "format");
    nlohmann::json j = nlohmann::json::parse(text);
    j["items"][1]["curves"].erase(0);
    damaged(j.dump(), "item 1 curves");
    j = nlohmann::json::parse(text);
    j["items"][2]["pooled"][3] = "x";
    damaged(j.dump(), "item 2 pooled[3]");
    j = nlohmann::json::parse(text);
    j["items"][2]["pooled"].push_back(1.0);
    damaged(j.dump(), "item 2 has 8 pooled features");
    j = nlohmann::json::parse(text);
    j["key"]["model"] = 3;
    damaged(j.dump(), "'model'");
    std::filesystem::remove(path);
    EXPECT_THROW((void)load_choice_labels(path), Error);
}

TEST_F(Served, MeasuredOnceThenReadFromTheCache) {
    const auto its = items(3);
    const auto path = temp("measured.json");
    std::filesystem::remove(path);
    std::vector<std::string> log;
    auto logger = [&](const std::string& l) { log.push_back(l); };
    const RatioQuality first = measured_prior(s, score, std::span<const ChoiceItem>(its), "k", path, logger);
    ASSERT_TRUE(std::filesystem::exists(path));
    ASSERT_FALSE(log.empty());
    EXPECT_NE(log.front().find("measuring"), std::string::npos) << log.front();
    log.clear();
    const RatioQuality again = measured_prior(s, score, std::span<const ChoiceItem>(its), "k", path, logger);
    ASSERT_EQ(log.size(), 1u);
    EXPECT_NE(log.front().find("using"), std::string::npos) << log.front();
    EXPECT_EQ(again.model_margin, first.model_margin);
    EXPECT_EQ(again.prompt_margin, first.prompt_margin);
    std::filesystem::remove(path);
}

}  // namespace
}  // namespace elastilm
