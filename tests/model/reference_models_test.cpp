// The forward pass against independent oracles on real weights:
//  * stories260K.bin (fp32, llama2.c): logits after BOS and the greedy 64-token continuation;
//  * tiny-gqa-15M, docs-95M and docs-tlm-15M (fp16 safetensors, Hugging Face RoPE): last-position logits
//    of three prompts and their greedy 32-token continuations, computed by Hugging Face transformers.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "elastilm/generate/sampler.hpp"
#include "elastilm/formats/load.hpp"
#include "elastilm/model/session.hpp"
#include "shared_models.hpp"

namespace elastilm {
namespace {

nlohmann::json read_json(const std::filesystem::path& p) {
    std::ifstream in(p);
    return nlohmann::json::parse(in);
}

template <ModelConfig Cfg>
std::vector<int> greedy(Session<Cfg>& s, std::span<const float> logits, int n) {
    std::vector<int> out;
    int tok = Sampler::argmax(logits);
    for (int i = 0; i < n; ++i) {
        out.push_back(tok);
        if (i + 1 < n) tok = Sampler::argmax(s.append(tok));
    }
    return out;
}

TEST(Stories260K, MatchesReferenceLogitsAndGreedy) {
    const auto model_path = test::shared_model("stories260K.bin");
    ELASTILM_REQUIRE_SHARED(model_path);
    const auto ref = read_json(test::shared_model("stories260K.reference.json"));
    for (int threads : {1, 2}) {
        Model<Stories260K> m(load_model<Stories260K>(model_path));
        ThreadPool pool(threads);
        Session<Stories260K> s(m, pool);
        const auto logits = s.append(1);
        double max_err = 0;
        for (int i = 0; i < Stories260K::vocab_size; ++i)
            max_err = std::max(max_err, std::fabs(double(logits[i]) - ref["bos_logits"][i].get<double>()));
        EXPECT_LE(max_err, 1e-3) << "fp32 weights";
        EXPECT_EQ(greedy(s, logits, 64), ref["greedy64"].get<std::vector<int>>());
    }
}

// Every case of a Hugging Face folder's reference.json: last-position logits within 2e-2 (fp16 weights,
// fp32 arithmetic in transformers) and the greedy 32-token continuation identical.
template <ModelConfig Cfg>
void expect_matches_transformers(const std::string& folder) {
    const auto model_dir = test::shared_model(folder);
    ELASTILM_REQUIRE_SHARED(model_dir / "model.safetensors");
    const auto ref = read_json(model_dir / "reference.json");
    Model<Cfg> m(load_model<Cfg>(model_dir));
    ThreadPool pool(2);
    ASSERT_FALSE(ref["cases"].empty());
    for (const auto& c : ref["cases"]) {
        Session<Cfg> s(m, pool);
        const auto ids = c["ids"].get<std::vector<int>>();
        const auto logits = s.append(ids);
        double max_err = 0;
        for (int i = 0; i < Cfg::vocab_size; ++i)
            max_err = std::max(max_err, std::fabs(double(logits[i]) - c["last_logits"][i].get<double>()));
        EXPECT_LE(max_err, 2e-2) << folder << ", fp16 weights, prompt: " << c["prompt"];
        EXPECT_EQ(greedy(s, logits, 32), c["greedy32"].get<std::vector<int>>()) << folder << ": " << c["prompt"];
    }
}

TEST(TinyGqa15M, MatchesTransformersOnEveryCase) { expect_matches_transformers<TinyGqa15M>("tiny-gqa-15M"); }
TEST(Docs95M, MatchesTransformersOnEveryCase) { expect_matches_transformers<Docs95M>("docs-95M"); }
TEST(DocsTlm15M, MatchesTransformersOnEveryCase) { expect_matches_transformers<DocsTlm15M>("docs-tlm-15M"); }

}  // namespace
}  // namespace elastilm
