// The LoRA runtime inside the compiled variants: an attached adapter changes exactly its own ratio, by
// exactly y += scale·B·(A·x) in every projection (checked against the naive reference forward run on
// weights with the update merged in), and a bad adapter is refused naming the tensor.
#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "elastilm/model/session.hpp"
#include "elastilm/model/synthetic.hpp"
#include "model/reference_forward.hpp"

namespace elastilm {
namespace {

using Cfg = Stories260K;
const std::vector<int> kAnchors = {1};

std::vector<int> some_tokens(int n) {
    std::vector<int> t(n);
    for (int i = 0; i < n; ++i) t[i] = (i * 53 + 7) % Cfg::vocab_size;
    return t;
}

// An adapter with random A and B, so every pair changes its projection.
LoraAdapter random_adapter(int percent, int rank, std::uint64_t seed) {
    LoraAdapter ad = make_lora<Cfg>(percent, kAnchors, rank, 2.0f * rank, seed);
    std::mt19937_64 rng(seed + 1);
    std::normal_distribution<float> n(0.0f, 0.05f);
    for (auto& l : ad.layers)
        for (auto& p : l.pairs)
            for (float& v : p.b) v = n(rng);
    return ad;
}

// W + scale·B·A on the sliced prefix of every layer matrix, as owned fp32 copies (out_major). A and B are
// rounded to fp16 first: the runtime applies the adapter at the base weights' storage precision.
struct MergedWeights {
    ModelWeights weights;
    std::vector<std::vector<float>> storage;
};

MergedWeights merge(const ModelWeights& base, const LoraAdapter& ad) {
    MergedWeights m{base, {}};
    for (int l = 0; l < Cfg::n_layers; ++l)
        for (std::size_t s = 0; s < kLayerMatrixCount; ++s) {
            const MatrixView& W = base.layers[l].*kLayerMatrices[s].field;
            std::vector<float> w(std::size_t(W.rows) * W.cols);
            for (int i = 0; i < W.rows; ++i)
                for (int j = 0; j < W.cols; ++j) w[std::size_t(i) * W.cols + j] = float(test::weight_at(W, i, j));
            const LoraPair& p = ad.layers[l].pairs[s];
            for (int i = 0; i < p.rows; ++i)
                for (int j = 0; j < p.cols; ++j) {
                    double d = 0;
                    for (int r = 0; r < p.rank; ++r)
                        d += double(f16_to_f32(f32_to_f16(p.b[std::size_t(i) * p.rank + r]))) *
                             f16_to_f32(f32_to_f16(p.a[std::size_t(r) * p.cols + j]));
                    w[std::size_t(i) * W.cols + j] += float(ad.scale() * d);
                }
            m.storage.push_back(std::move(w));
            m.weights.layers[l].*kLayerMatrices[s].field =
                MatrixView{m.storage.back().data(), DType::f32, Layout::out_major, W.rows, W.cols, std::size_t(W.cols)};
        }
    return m;
}

double max_abs_diff(std::span<const float> a, const std::vector<double>& b) {
    double m = 0;
    for (std::size_t i = 0; i < b.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
    return m;
}

template <int Percent>
void check_against_merged(DType dtype, Layout layout, int threads) {
    Model<Cfg> model(synthetic_weights<Cfg>({dtype, 21, layout}), kAnchors);
    const LoraAdapter ad = random_adapter(Percent, 4, 100 + Percent);
    model.set_adapter(std::make_shared<const LoraAdapter>(ad));
    ThreadPool pool(threads);
    const auto tokens = some_tokens(11);
    // chunks of 4: the GEMM path, then matvec below; an fp32 cache, as the double-precision reference has
    Session<Cfg> s(model, pool, 64, 4, DType::f32);
    const auto prefill = s.append(tokens, Percent);
    const MergedWeights merged = merge(model.weights(), ad);
    const auto ref = test::reference_logits<Cfg>(merged.weights, tokens, test::widths_of<Cfg, Percent>(kAnchors));
    EXPECT_LT(max_abs_diff(prefill, ref), 2e-4) << Percent << "% prefill";

    auto longer = tokens;
    longer.push_back(42);
    const auto decode = s.append(42, Percent);
    const auto ref2 = test::reference_logits<Cfg>(merged.weights, longer, test::widths_of<Cfg, Percent>(kAnchors));
    EXPECT_LT(max_abs_diff(decode, ref2), 2e-4) << Percent << "% decode";
}

TEST(LoraRuntime, EqualsMergedWeightsAtEveryRatio) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (check_against_merged<kRatios[I]>(DType::f32, Layout::out_major, 2), ...);
    }(std::make_index_sequence<kRatios.size()>{});
}

TEST(LoraRuntime, EqualsMergedWeightsF16InMajor) {
    check_against_merged<30>(DType::f16, Layout::in_major, 1);
    check_against_merged<100>(DType::f16, Layout::in_major, 2);
}

TEST(LoraRuntime, ZeroBIsExactlyTheSubModel) {
    Model<Cfg> plain(synthetic_weights<Cfg>({DType::f16, 4}), kAnchors), adapted(synthetic_weights<Cfg>({DType::f16, 4}), kAnchors);
    adapted.set_adapter(std::make_shared<const LoraAdapter>(make_lora<Cfg>(40, kAnchors, 8, 16.0f)));
    ThreadPool pool(1);
    Session<Cfg> a(plain, pool), b(adapted, pool);
    const auto tokens = some_tokens(7);
    const auto la = a.append(tokens, 40);
    const auto lb = b.append(tokens, 40);
    for (int i = 0; i < Cfg::vocab_size; ++i) ASSERT_EQ(la[i], lb[i]);
}

TEST(LoraRuntime, OnlyItsOwnRatioChanges) {
    Model<Cfg> plain(synthetic_weights<Cfg>({DType::f32, 8}), kAnchors), adapted(synthetic_weights<Cfg>({DType::f32, 8}), kAnchors);
    auto ad = std::make_shared<const LoraAdapter>(random_adapter(50, 4, 3));
    adapted.set_adapter(ad);
    EXPECT_EQ(adapted.adapter(50), ad.get());  // attached by pointer: switching ratio copies nothing
    EXPECT_EQ(adapted.adapter(60), nullptr);
    ThreadPool pool(1);
    const auto tokens = some_tokens(6);
    for (int percent : {40, 50, 60}) {
        Session<Cfg> a(plain, pool), b(adapted, pool);
        const auto la = a.append(tokens, percent);
        const auto lb = b.append(tokens, percent);
        double diff = 0;
        for (int i = 0; i < Cfg::vocab_size; ++i) diff = std::max(diff, double(std::fabs(la[i] - lb[i])));
        if (percent == 50) EXPECT_GT(diff, 1e-3);
        else EXPECT_EQ(diff, 0.0) << percent;
    }
    adapted.clear_adapter(50);
    EXPECT_EQ(adapted.adapter(50), nullptr);
}

TEST(LoraRuntime, RefusesMismatchedAdapters) {
    Model<Cfg> model(synthetic_weights<Cfg>({DType::f32, 2}), kAnchors);
    auto expect_error = [&](LoraAdapter ad, const std::string& needle) {
        try {
            model.set_adapter(std::make_shared<const LoraAdapter>(std::move(ad)));
            ADD_FAILURE() << "accepted an adapter that should fail with '" << needle << "'";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    // Trained for other anchors: layer 1 is an anchor here (full width), the adapter has it sliced.
    expect_error(make_lora<Cfg>(50, {}, 4, 8), "blk.1.attn_q.weight adapter is");
    LoraAdapter nan = make_lora<Cfg>(50, kAnchors, 4, 8);
    nan.layers[3].pairs[lora_slot::down].b[5] = std::nanf("");
    expect_error(nan, "blk.3.ffn_down.weight.lora_b holds a NaN");
    LoraAdapter wrong_ratio = make_lora<Cfg>(50, kAnchors, 4, 8);
    wrong_ratio.percent = 55;
    expect_error(wrong_ratio, "55% is not a compiled width ratio");
    LoraAdapter few_layers = make_lora<Cfg>(50, kAnchors, 4, 8);
    few_layers.layers.pop_back();
    expect_error(few_layers, "has 4 layers");
    LoraAdapter rank = make_lora<Cfg>(50, kAnchors, 4, 8);
    rank.layers[0].pairs[lora_slot::up].b.resize(3);
    expect_error(rank, "blk.0.ffn_up.weight adapter: lora_a/lora_b sizes");
}

}  // namespace
}  // namespace elastilm
