// Perplexity of tiny-gqa-15M on held-out text against the value Hugging Face computed with the same
// protocol (reference.json: valid_ppl_first16k_window256).
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

}  // namespace
}  // namespace elastilm
