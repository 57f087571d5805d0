// The forward pass against independent oracles on real weights:
//  * stories260K.bin (fp32, llama2.c): logits after BOS and the greedy 64-token continuation;
//  * tiny-gqa-15M, docs-95M and docs-tlm-15M (fp16 safetensors, Hugging Face RoPE): last-position logits
//    of three prompts and their greedy 32-token continuations, computed by Hugging Face transformers.
// The engine as it serves (fp16 KV cache) with the fp32 prefill GEMM; the reduced-precision GEMM is
// checked against the same references in reduced_precision_test.cpp.
#include <gtest/gtest.h>

#include <cstdint>
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
    // fp32 weights and an fp32 cache: fp32 rounding only.
    for (int threads : {1, 2}) {
        Model<Stories260K> m(load_model<Stories260K>(model_path));
        ThreadPool pool(threads);
        Session<Stories260K> s(m, pool, Stories260K::context, 256, DType::f32);
        const auto logits = s.append(1);
        double max_err = 0;
        for (int i = 0; i < Stories260K::vocab_size; ++i)
            max_err = std::max(max_err, std::fabs(double(logits[i]) - ref["bos_logits"][i].get<double>()));
        EXPECT_LE(max_err, 1e-3) << "fp32 weights";
        EXPECT_EQ(greedy(s, logits, 64), ref["greedy64"].get<std::vector<int>>());
    }
}

// The default fp16 cache rounds K and V to 11 bits (after BOS the output is exactly v): the logits move
// by a few 1e-3. Teacher-forced along the reference continuation, every greedy choice must agree with
// the reference except where the fp32-cache run itself sees a near-tie (top-2 margin < 2e-2): this tiny
// model has one at step 37 (margin 0.003), which the fp16 cache flips.
TEST(Stories260K, Fp16CacheKeepsReferenceChoices) {
    const auto model_path = test::shared_model("stories260K.bin");
    ELASTILM_REQUIRE_SHARED(model_path);
    const auto ref = read_json(test::shared_model("stories260K.reference.json"));
    const auto want = ref["greedy64"].get<std::vector<int>>();
    Model<Stories260K> m(load_model<Stories260K>(model_path));
    ThreadPool pool(2);
    Session<Stories260K> half(m, pool), full(m, pool, Stories260K::context, 256, DType::f32);
    ASSERT_EQ(half.kv_dtype(), DType::f16);
    auto lh = half.append(1);
    double max_err = 0;
    for (int i = 0; i < Stories260K::vocab_size; ++i)
        max_err = std::max(max_err, std::fabs(double(lh[i]) - ref["bos_logits"][i].get<double>()));
    EXPECT_LE(max_err, 1e-2);
    auto lf = full.append(1);
    int near_ties = 0;
    for (std::size_t step = 0; step < want.size(); ++step) {
        std::vector<float> sorted(lf.begin(), lf.end());
        std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
        const bool near_tie = sorted[0] - sorted[1] < 2e-2f;
        near_ties += near_tie;
        if (!near_tie) { EXPECT_EQ(Sampler::argmax(lh), want[step]) << "step " << step; }
        lh = half.append(want[step]);
        lf = full.append(want[step]);
    }
    EXPECT_LE(near_ties, 3) << "the exemption must stay rare";
}

// Every case of a Hugging Face folder's reference.json: last-position logits within 2e-2 (fp16 weights,
// fp32 arithmetic in transformers) and the greedy 32-token continuation identical. Under qemu only the first 8
// tokens of the first case's continuation: each decoded token is a full pass over the weights (docs-95M's
// 96 of them took ~3 minutes there, 24 still 80 s); 8 still run the decode path (KV cache, one-token
// kernels). Also under qemu, prompts longer than `emulated_max_prompt` are left out: with docs-95M's
// 96-token prompt the test took 100 s there, without it 16 s; tiny-gqa-15M's 61-token prompt still runs
// the long-prompt path (multi-row GEMM tiles, attention over many positions) through the same kernels.
template <ModelConfig Cfg>
void expect_matches_transformers(const std::string& folder, std::size_t emulated_max_prompt = SIZE_MAX) {
    const bool emulated = test::emulated();
    int n_greedy = emulated ? 8 : 32;
    const auto model_dir = test::shared_model(folder);
    ELASTILM_REQUIRE_SHARED(model_dir / "model.safetensors");
    const auto ref = read_json(model_dir / "reference.json");
    Model<Cfg> m(load_model<Cfg>(model_dir));
    ThreadPool pool(2);
    ScopedGemmPrecision fp32(GemmPrecision::fp32);
    ASSERT_FALSE(ref["cases"].empty());
    for (const auto& c : ref["cases"]) {
        const auto ids = c["ids"].get<std::vector<int>>();
        if (emulated && ids.size() > emulated_max_prompt) continue;
        Session<Cfg> s(m, pool);
        const auto logits = s.append(ids);
        double max_err = 0;
        for (int i = 0; i < Cfg::vocab_size; ++i)
            max_err = std::max(max_err, std::fabs(double(logits[i]) - c["last_logits"][i].get<double>()));
        EXPECT_LE(max_err, 2e-2) << folder << ", fp16 weights, prompt: " << c["prompt"];
        auto want = c["greedy32"].get<std::vector<int>>();
        ASSERT_GE(want.size(), std::size_t(n_greedy)) << folder;
        want.resize(n_greedy);
        EXPECT_EQ(greedy(s, logits, n_greedy), want) << folder << ": " << c["prompt"];
        if (emulated) n_greedy = 0;
    }
}

TEST(TinyGqa15M, MatchesTransformersOnEveryCase) { expect_matches_transformers<TinyGqa15M>("tiny-gqa-15M"); }
TEST(Docs95M, MatchesTransformersOnEveryCase) { expect_matches_transformers<Docs95M>("docs-95M", 16); }
TEST(DocsTlm15M, MatchesTransformersOnEveryCase) { expect_matches_transformers<DocsTlm15M>("docs-tlm-15M"); }

}  // namespace
}  // namespace elastilm
