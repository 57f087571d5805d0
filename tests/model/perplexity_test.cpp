// Perplexity on held-out text against the value Hugging Face computed with the same protocol:
// tiny-gqa-15M (reference.json: valid_ppl_first16k_window256), docs-95M and docs-tlm-15M
// (valid_ppl_first32k_window1024, on docs_valid.txt: windows of the full 1024-token context).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "elastilm/formats/load.hpp"
#include "elastilm/model/perplexity.hpp"
#include "elastilm/tokenizer/tokenizer.hpp"
#include "shared_models.hpp"

namespace elastilm {
namespace {

TEST(Perplexity, TinyGqaMatchesTransformers) {
    const auto dir = test::shared_model("tiny-gqa-15M");
    ELASTILM_REQUIRE_SHARED(dir / "model.safetensors");
    ELASTILM_REQUIRE_SHARED(test::shared_model("tokenizer.model"));
    if (test::emulated())
        GTEST_SKIP() << "16k-token perplexity takes ~20 min under qemu; the native run checks it, and the reference-logit "
                        "tests check this architecture's forward pass";
    std::ifstream rf(dir / "reference.json");
    const auto ref = nlohmann::json::parse(rf);
    std::ifstream vf(dir / "valid.txt");
    std::stringstream text;
    text << vf.rdbuf();
    const Tokenizer tok = Tokenizer::from_model_file(test::shared_model("tokenizer.model"));
    const auto stream = paragraph_stream(tok, text.str());
    Model<TinyGqa15M> m(load_model<TinyGqa15M>(dir));
    ThreadPool pool(2);
    const auto r = perplexity(m, pool, stream, 256, 100, 16384);
    EXPECT_EQ(r.tokens, ref["valid_tokens_scored"].get<long long>());
    EXPECT_NEAR(r.perplexity, ref["valid_ppl_first16k_window256"].get<double>(), 0.05);
    // A narrower sub-model of a plain (not reordered) model is worse.
    const auto narrow = perplexity(m, pool, stream, 256, 50, 4096);
    const auto full = perplexity(m, pool, stream, 256, 100, 4096);
    EXPECT_GT(narrow.perplexity, full.perplexity);
}

std::string read_text(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// The first 32k tokens of docs_valid.txt in windows of 1024, within 0.1 % of transformers' perplexity.
template <ModelConfig Cfg>
void expect_docs_perplexity(const std::string& folder) {
    const auto dir = test::shared_model(folder);
    ELASTILM_REQUIRE_SHARED(dir / "model.safetensors");
    ELASTILM_REQUIRE_SHARED(test::shared_model("docs_valid.txt"));
    ELASTILM_REQUIRE_SHARED(test::shared_model("tokenizer.model"));
    if (test::emulated())
        GTEST_SKIP() << "32k-token perplexity takes too long under qemu; the native run checks it, and the "
                        "reference-logit tests check this architecture's forward pass";
    std::ifstream rf(dir / "reference.json");
    const auto ref = nlohmann::json::parse(rf);
    const Tokenizer tok = Tokenizer::from_model_file(test::shared_model("tokenizer.model"));
    const auto stream = paragraph_stream(tok, read_text(test::shared_model("docs_valid.txt")));
    Model<Cfg> m(load_model<Cfg>(dir));
    ThreadPool pool(2);
    const auto r = perplexity(m, pool, stream, 1024, 100, 32768);
    EXPECT_EQ(r.tokens, ref["valid_tokens_scored_window1024"].get<long long>());
    const double expected = ref["valid_ppl_first32k_window1024"].get<double>();
    EXPECT_NEAR(r.perplexity, expected, 1e-3 * expected) << folder;
}

TEST(Perplexity, Docs95MMatchesTransformers) { expect_docs_perplexity<Docs95M>("docs-95M"); }
TEST(Perplexity, DocsTlm15MMatchesTransformers) { expect_docs_perplexity<DocsTlm15M>("docs-tlm-15M"); }

}  // namespace
}  // namespace elastilm
