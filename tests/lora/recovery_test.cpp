// Recovery end to end on the real tiny-gqa-15M: a short self-distillation of a rank-8 adapter (DistillStep
// + AdamW, as `recover` runs them) lowers the held-out perplexity of the 20% and 50% sub-models of the
// elastic model. Calibration and evaluation text are disjoint parts of valid.txt.
#include <gtest/gtest.h>

#include "elastilm/elastic/elasticize.hpp"
#include "elastilm/lora/adamw.hpp"
#include "elastilm/lora/train_step.hpp"
#include "elastilm/formats/load.hpp"
#include "elastilm/model/perplexity.hpp"
#include "elastilm/tokenizer/tokenizer.hpp"
#include "shared_models.hpp"

#include <fstream>
#include <sstream>

namespace elastilm {
namespace {

using Cfg = TinyGqa15M;

TEST(LoraRecovery, ShortDistillationLowersHeldOutPerplexity) {
    const auto dir = test::shared_model("tiny-gqa-15M");
    ELASTILM_REQUIRE_SHARED(dir / "model.safetensors");
    ELASTILM_REQUIRE_SHARED(test::shared_model("tokenizer.model"));
    if (test::emulated()) GTEST_SKIP() << "a minute of training natively: not under qemu";
    const Tokenizer tok = Tokenizer::from_model_file(test::shared_model("tokenizer.model"));
    std::ifstream in(dir / "valid.txt");
    std::stringstream text;
    text << in.rdbuf();
    const auto stream = paragraph_stream(tok, text.str());
    ASSERT_GT(stream.size(), 16384u + 8192u);
    const std::span<const int> all(stream);
    const auto held_out = all.first(2048 + 1);            // scored
    const auto calib = all.subspan(16384, 8192);          // importance and training

    ThreadPool pool(2);
    const ModelWeights plain = load_model<Cfg>(dir);
    Model<Cfg> model(make_elastic<Cfg>(plain, measure_importance<Cfg>(plain, calib.first(4096), 256, pool), ElasticizeOptions{}));

    constexpr int window = 128, steps = 48;
    std::vector<float> teacher(std::size_t(steps) * window * Cfg::vocab_size);
    {
        Session<Cfg> s(model, pool, window, window);
        for (int w = 0; w < steps; ++w) {
            s.reset();
            const auto l = s.append_all_logits(calib.subspan(std::size_t(w) * window, window), 100);
            std::copy(l.begin(), l.end(), teacher.begin() + std::ptrdiff_t(std::size_t(w) * window * Cfg::vocab_size));
        }
    }
    for (int percent : {20, 50}) {
        const double before = perplexity(model, pool, held_out, 256, percent).perplexity;
        LoraAdapter ad = make_lora<Cfg>(percent, model.anchors(), 8, 16.0f, 1);
        LoraAdapter grad = lora_zeros_like(ad);
        AdamW opt(ad, AdamWOptions{});
        DistillStep<Cfg> step(model, window);
        for (int w = 0; w < steps; ++w) {
            set_zero(grad);
            step.step(ad, calib.subspan(std::size_t(w) * window, window),
                      std::span<const float>(teacher).subspan(std::size_t(w) * window * Cfg::vocab_size, std::size_t(window) * Cfg::vocab_size),
                      grad, pool);
            opt.step(ad, grad);
        }
        model.set_adapter(std::make_shared<const LoraAdapter>(std::move(ad)));
        const double after = perplexity(model, pool, held_out, 256, percent).perplexity;
        model.clear_adapter(percent);
        EXPECT_LT(after, before * 0.9) << percent << "%: perplexity " << before << " -> " << after;
        std::printf("%d%%: held-out perplexity %.2f -> %.2f with a %d-step adapter\n", percent, before, after, steps);
    }
}

}  // namespace
}  // namespace elastilm
