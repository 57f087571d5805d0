// Quality of the block formats on a real model: tiny-gqa-15M exported as Q8_0 keeps its held-out
// perplexity within +1 % of F16 at full, half and the narrowest width (the target for Q8_0),
// over the first 2048 held-out tokens. Q4_0 and every ratio: the README's table (examples/perplexity).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "elastilm/formats/gguf_export.hpp"
#include "elastilm/formats/load.hpp"
#include "elastilm/model/perplexity.hpp"
#include "elastilm/tokenizer/tokenizer.hpp"
#include "shared_models.hpp"

namespace elastilm {
namespace {

TEST(QuantizedPerplexity, Q8_0WithinOnePercentOfF16OnTinyGqa) {
    using Cfg = TinyGqa15M;
    const auto dir = test::shared_model("tiny-gqa-15M");
    ELASTILM_REQUIRE_SHARED(dir / "model.safetensors");
    ELASTILM_REQUIRE_SHARED(test::shared_model("tokenizer.model"));
    if (test::emulated()) GTEST_SKIP() << "perplexity over thousands of tokens takes minutes under qemu; the kernels are tested there";
    std::ifstream vf(dir / "valid.txt");
    std::stringstream text;
    text << vf.rdbuf();
    const Tokenizer tok = Tokenizer::from_model_file(test::shared_model("tokenizer.model"));
    const auto stream = paragraph_stream(tok, text.str());
    const ModelWeights f16 = load_model<Cfg>(dir);
    ThreadPool pool(2);
    const long long tokens = 2048;
    Model<Cfg> base(f16);
    for (DType type : {DType::q8_0}) {
        const auto p = std::filesystem::temp_directory_path() / ("elastilm_test_" + std::to_string(::getpid()) + "_q.gguf");
        io::GgufExportOptions opt{"tiny-q", false, type};
        io::set_ratio_slices<Cfg>(opt);
        io::export_gguf(f16, &tok.vocabulary(), p, opt);
        Model<Cfg> q(load_model<Cfg>(p));
        std::filesystem::remove(p);
        EXPECT_EQ(q.weights().layers[0].w_up.dtype, type);
        for (int percent : {100, 50, 20}) {
            const double a = perplexity(base, pool, stream, 256, percent, tokens).perplexity;
            const double b = perplexity(q, pool, stream, 256, percent, tokens).perplexity;
            std::printf("%3d%%: F16 %.3f  %s %.3f  (%+.2f%%)\n", percent, a, std::string(to_string(type)).c_str(), b, 100 * (b / a - 1));
            EXPECT_LE(b, a * 1.01) << percent << "%";
        }
    }
}

}  // namespace
}  // namespace elastilm
