// Elasticizing the real tiny-gqa-15M: the full model's function is unchanged, the elastic GGUF keeps
// its metadata and stays a plain LLaMA GGUF at full width, importance-ordered sub-models with anchors
// beat the original and a random order, and bad elastic metadata is reported clearly.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "elastilm/elastic/elasticize.hpp"
#include "elastilm/formats/gguf_export.hpp"
#include "elastilm/formats/load.hpp"
#include "elastilm/model/perplexity.hpp"
#include "elastilm/tokenizer/tokenizer.hpp"
#include "shared_models.hpp"

namespace elastilm {
namespace {

using Cfg = TinyGqa15M;

struct Fixture {
    Tokenizer tok = Tokenizer::from_model_file(test::shared_model("tokenizer.model"));
    std::vector<int> stream;
    ModelWeights plain = load_model<Cfg>(test::shared_model("tiny-gqa-15M"));
    Fixture() {
        std::ifstream in(test::shared_model("tiny-gqa-15M/valid.txt"));
        std::stringstream s;
        s << in.rdbuf();
        stream = paragraph_stream(tok, s.str());
    }
    // Calibration from token 16384 on; evaluation on the first tokens: disjoint.
    std::span<const int> calibration(std::size_t n) const { return std::span<const int>(stream).subspan(16384, n); }
};

#define REQUIRE_TINY()                                                                \
    ELASTILM_REQUIRE_SHARED(test::shared_model("tiny-gqa-15M/model.safetensors"));    \
    ELASTILM_REQUIRE_SHARED(test::shared_model("tokenizer.model"));                   \
    if (test::emulated()) GTEST_SKIP() << "calibration + perplexity runs natively only (minutes under qemu)"

TEST(Elasticize, KeepsTheFullModelAndImprovesSubModels) {
    REQUIRE_TINY();
    Fixture f;
    ThreadPool pool(2);
    const UnitImportance imp = measure_importance<Cfg>(f.plain, f.calibration(2048), 256, pool);
    EXPECT_EQ(imp.tokens, 2048);
    const ModelWeights elastic = make_elastic<Cfg>(f.plain, imp, {256, 1, true});
    ASSERT_EQ(elastic.elastic.anchors.size(), 1u);
    for (int l = 0; l < Cfg::n_layers; ++l)
        for (int j = 1; j < Cfg::hidden_dim; ++j)
            ASSERT_GE(elastic.elastic.neuron_importance[l * Cfg::hidden_dim + j - 1], elastic.elastic.neuron_importance[l * Cfg::hidden_dim + j]);

    // Full width: the same function, before and after reordering.
    Model<Cfg> before(f.plain), after(elastic);
    Session<Cfg> sb(before, pool), sa(after, pool);
    const auto ids = f.tok.encode("Fellow citizens, the union is strong", true);
    const auto lb = sb.append(ids);
    const auto la = sa.append(ids);
    // Reordering changes only the order of each product's sum: a few float roundings of the logits' scale
    // (the AVX-512 build's largest difference was 1.01e-4, on logits up to 14.4 in magnitude).
    double diff = 0, scale = 0;
    for (int i = 0; i < Cfg::vocab_size; ++i)
        diff = std::max(diff, double(std::fabs(la[i] - lb[i]))), scale = std::max(scale, double(std::fabs(lb[i])));
    std::printf("full width before and after reordering: max |logit difference| %.3g, max |logit| %.3g\n", diff, scale);
    EXPECT_LE(diff, 1e-5 * scale);

    // Sub-models: ours (importance + anchors) beats the original order and a random one.
    ModelWeights shuffled = reorder_units<Cfg>(f.plain, UnitOrder::random<Cfg>(1));
    Model<Cfg> random(shuffled);
    for (int ratio : {20, 50, 80}) {
        const double ours = perplexity(after, pool, f.stream, 256, ratio, 2048).perplexity;
        const double original = perplexity(before, pool, f.stream, 256, ratio, 2048).perplexity;
        const double rnd = perplexity(random, pool, f.stream, 256, ratio, 2048).perplexity;
        EXPECT_LT(ours, original) << ratio << "%";
        EXPECT_LT(ours, rnd) << ratio << "%";
    }
}

TEST(Elasticize, ElasticGgufRoundTripsAndStaysAPlainLlamaAtFullWidth) {
    REQUIRE_TINY();
    Fixture f;
    ThreadPool pool(2);
    const ModelWeights elastic = make_elastic<Cfg>(f.plain, measure_importance<Cfg>(f.plain, f.calibration(512), 256, pool), {256, 2, true});
    const auto path = std::filesystem::temp_directory_path() / ("elastilm_test_elastic_" + std::to_string(::getpid()) + ".gguf");
    io::export_gguf(elastic, &f.tok.vocabulary(), path, {"tiny-elastic", /*outputs_in_major=*/true});
    const ModelWeights loaded = load_elastic_model<Cfg>(path);
    EXPECT_EQ(loaded.layers[0].w_down.layout, Layout::in_major);
    EXPECT_EQ(loaded.elastic.anchors, elastic.elastic.anchors);
    EXPECT_EQ(loaded.elastic.ratios, std::vector<int>(kRatios.begin(), kRatios.end()));
    EXPECT_EQ(loaded.elastic.neuron_importance.size(), std::size_t(Cfg::n_layers) * Cfg::hidden_dim);
    Model<Cfg> a(elastic), b(loaded);
    EXPECT_EQ(b.anchors(), elastic.elastic.anchors);
    const auto ids = f.tok.encode("Now is the winter of our discontent", true);
    for (int ratio : {30, 100}) {
        Session<Cfg> sa(a, pool), sb(b, pool);
        const auto la = sa.append(ids, ratio);
        const auto lb = sb.append(ids, ratio);
        for (int i = 0; i < Cfg::vocab_size; ++i) ASSERT_NEAR(la[i], lb[i], 1e-3) << ratio;
    }
    // Written llama.cpp-compatible, it is an ordinary LLaMA GGUF at full width: the llama.* keys and the
    // standard tensor shapes a plain reader needs, and the same logits.
    io::export_gguf(elastic, &f.tok.vocabulary(), path, {"tiny-elastic", /*outputs_in_major=*/false});
    Model<Cfg> c(load_elastic_model<Cfg>(path));
    Session<Cfg> sa(a, pool), sc(c, pool);
    const auto la = sa.append(ids, 40);
    const auto lc = sc.append(ids, 40);
    for (int i = 0; i < Cfg::vocab_size; ++i) ASSERT_NEAR(la[i], lc[i], 1e-3);
    const io::GgufFile g = io::GgufFile::open(path);
    EXPECT_FALSE(g.has("elastilm.output_layout"));
    EXPECT_EQ(g.get_string("general.architecture"), "llama");
    EXPECT_EQ(g.find("blk.0.ffn_down.weight")->shape, (std::vector<std::int64_t>{Cfg::dim, Cfg::hidden_dim}));
    // A plain model is refused where an elastic one is required.
    EXPECT_THROW(load_elastic_model<Cfg>(test::shared_model("tiny-gqa-15M")), Error);
    std::filesystem::remove(path);
}

TEST(ElasticMetadata, BadMetadataIsNamed) {
    ElasticMetadata m;
    m.ratios = {20, 100};
    m.anchors = {0};
    m.layer_importance.assign(Stories260K::n_layers, 1.0f);
    m.kv_group_importance.assign(Stories260K::n_layers * Stories260K::n_kv_heads, 1.0f);
    m.neuron_importance.assign(Stories260K::n_layers * Stories260K::hidden_dim, 1.0f);
    EXPECT_NO_THROW(validate<Stories260K>(m, "ok.gguf"));
    auto message = [](const ElasticMetadata& bad) {
        try {
            validate<Stories260K>(bad, "bad.gguf");
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    ElasticMetadata b = m;
    b.anchors = {7};
    EXPECT_NE(message(b).find("elastilm.anchors names layer 7, but the model has layers 0..4"), std::string::npos) << message(b);
    b = m;
    b.neuron_importance.pop_back();
    EXPECT_NE(message(b).find("elastilm.neuron_importance has 859 values, expected 860"), std::string::npos) << message(b);
    b = m;
    b.ratios = {25};
    EXPECT_NE(message(b).find("25%, which is not a compiled ratio"), std::string::npos) << message(b);
}

}  // namespace
}  // namespace elastilm
