// Q8_0 / Q4_0 / BF16 tensors in GGUF and safetensors: written and read back byte for byte, models
// exported quantized load and run, and every kind of bad block data is an Error naming the tensor.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "elastilm/formats/gguf_export.hpp"
#include "elastilm/formats/load.hpp"
#include "elastilm/lora/pair_from_file.hpp"
#include "elastilm/model/session.hpp"
#include "elastilm/model/synthetic.hpp"
#include "elastilm/simd/bf16.hpp"
#include "io/gguf_test_files.hpp"

namespace elastilm {
namespace {

using test::bytes_of;
using test::error_of;
using test::slurp;
using test::temp_file;

// Two quantized tensors "q8" [3, 64] and "q4" [2, 96], from a fixed pattern.
struct Quantized {
    std::vector<std::byte> q8, q4;
    Quantized() {
        std::mt19937 rng(1);
        std::normal_distribution<float> g(0, 1);
        std::vector<float> x(3 * 96);
        for (float& v : x) v = g(rng);
        q8.resize(bytes_for(DType::q8_0, 3 * 64));
        q4.resize(bytes_for(DType::q4_0, 2 * 96));
        for (int r = 0; r < 3; ++r) quantize_row(q8.data() + r * bytes_for(DType::q8_0, 64), DType::q8_0, x.data() + r * 64, 64);
        for (int r = 0; r < 2; ++r) quantize_row(q4.data() + r * bytes_for(DType::q4_0, 96), DType::q4_0, x.data() + r * 96, 96);
    }
    std::string gguf() const {
        io::GgufWriter w;
        w.add_tensor("q8", {3, 64}, DType::q8_0, q8.data());
        w.add_tensor("q4", {2, 96}, DType::q4_0, q4.data());
        const auto p = temp_file("quant.gguf");
        w.write(p);
        std::string out = slurp(p);
        std::filesystem::remove(p);
        return out;
    }
};

// Offset of the first byte after tensor `name`'s info name (its n_dims field).
std::size_t info_of(const std::string& b, const std::string& name) {
    std::string key(8, '\0');
    const std::uint64_t n = name.size();
    std::memcpy(key.data(), &n, 8);
    const auto pos = b.find(key + name);
    EXPECT_NE(pos, std::string::npos);
    return pos + 8 + name.size();
}

TEST(QuantGguf, RoundTripsByteForByte) {
    const Quantized q;
    const std::string b = q.gguf();
    const io::GgufFile g = io::GgufFile::parse(bytes_of(b), "q.gguf");
    const auto* t8 = g.find("q8");
    const auto* t4 = g.find("q4");
    ASSERT_TRUE(t8 && t4);
    EXPECT_EQ(t8->dtype, DType::q8_0);
    EXPECT_EQ(t4->dtype, DType::q4_0);
    EXPECT_EQ(t8->shape, (std::vector<std::int64_t>{3, 64}));
    EXPECT_EQ(t8->nbytes, 3u * 2 * 34);
    EXPECT_EQ(t4->nbytes, 2u * 3 * 18);
    EXPECT_EQ(std::memcmp(t8->data, q.q8.data(), q.q8.size()), 0);
    EXPECT_EQ(std::memcmp(t4->data, q.q4.data(), q.q4.size()), 0);
    // ggml type ids as llama.cpp writes them: Q4_0 = 2, Q8_0 = 8 (right after n_dims and two ne).
    std::uint32_t type;
    std::memcpy(&type, b.data() + info_of(b, "q8") + 4 + 16, 4);
    EXPECT_EQ(type, 8u);
    std::memcpy(&type, b.data() + info_of(b, "q4") + 4 + 16, 4);
    EXPECT_EQ(type, 2u);
}

TEST(QuantGguf, RowsThatAreNotWholeBlocksAreRefused) {
    std::string b = Quantized().gguf();
    const std::uint64_t ne0 = 48;  // q4 becomes [.., 48]: one and a half blocks per row
    std::memcpy(b.data() + info_of(b, "q4") + 4, &ne0, 8);
    const std::string e = error_of(b);
    EXPECT_NE(e.find("tensor q4 is Q4_0 with rows of 48 elements, not a whole number of 32-element blocks"), std::string::npos) << e;
}

TEST(QuantGguf, TruncatedBlocksAreRefused) {
    const std::string whole = Quantized().gguf();
    const io::GgufFile g = io::GgufFile::parse(bytes_of(whole), "whole");
    const std::size_t end = std::size_t(g.find("q4")->data - reinterpret_cast<const std::byte*>(whole.data())) + g.find("q4")->nbytes;
    for (std::size_t cut : {end - 1, end - 17, end - 18 * 3}) {
        const std::string e = error_of(whole.substr(0, cut));
        EXPECT_NE(e.find("tensor q4"), std::string::npos) << e;
        EXPECT_NE(e.find("runs past the end"), std::string::npos) << e;
    }
}

TEST(QuantGguf, NanOrInfiniteScalesAreRefused) {
    const std::string whole = Quantized().gguf();
    const io::GgufFile g = io::GgufFile::parse(bytes_of(whole), "whole");
    const std::size_t q8 = std::size_t(g.find("q8")->data - reinterpret_cast<const std::byte*>(whole.data()));
    for (std::uint16_t bad : {std::uint16_t(0x7e00), std::uint16_t(0x7c00), std::uint16_t(0xfc00)}) {
        std::string b = whole;
        std::memcpy(b.data() + q8 + 3 * 34, &bad, 2);  // block 3 = row 1, block 1
        const io::GgufFile g2 = io::GgufFile::parse(bytes_of(b), "test.gguf");  // metadata reads do not scan blocks
        std::string e;
        try {
            io::check_block_scales("q8", DType::q8_0, g2.find("q8")->data, g2.find("q8")->nbytes, "test.gguf");  // what the loader runs
        } catch (const Error& err) {
            e = err.what();
        }
        EXPECT_NE(e.find("tensor q8 (Q8_0): block 3 has a NaN or infinite scale"), std::string::npos) << e;
    }
    // Through the model loader: a quantized model with one bad scale is refused naming the tensor.
    using Cfg = Stories260K;
    const auto p = temp_file("badscale.gguf");
    io::GgufExportOptions opt{"q", false, DType::q8_0};
    io::export_gguf(synthetic_weights<Cfg>({DType::f16, 2}), nullptr, p, opt);
    std::string b = slurp(p);
    const io::GgufFile g3 = io::GgufFile::parse(bytes_of(b), "x");
    const auto* t = g3.find("blk.2.attn_q.weight");
    ASSERT_EQ(t->dtype, DType::q8_0);
    const std::uint16_t nan = 0x7e00;
    std::memcpy(b.data() + (t->data - reinterpret_cast<const std::byte*>(b.data())) + 34, &nan, 2);
    std::ofstream(p, std::ios::binary | std::ios::trunc).write(b.data(), std::streamsize(b.size()));
    try {
        load_model<Cfg>(p);
        ADD_FAILURE() << "loaded a model with a NaN scale";
    } catch (const Error& err) {
        EXPECT_NE(std::string(err.what()).find("tensor blk.2.attn_q.weight (Q8_0): block 1 has a NaN or infinite scale"), std::string::npos)
            << err.what();
    }
    std::filesystem::remove(p);
}

TEST(QuantGguf, EveryUnsupportedTypeIsNamedWithTheLoadableOnes) {
    std::string b = Quantized().gguf();
    for (std::uint32_t type : {3u, 12u, 14u, 16u, 99u}) {  // Q4_1, Q4_K, Q6_K, IQ2_XXS, unknown
        std::memcpy(b.data() + info_of(b, "q8") + 4 + 16, &type, 4);
        const std::string e = error_of(b);
        EXPECT_NE(e.find("tensor q8 has type " + io::ggml_type_name(type) + ", which elastilm does not load (F32, F16, BF16, Q8_0, Q4_0 load"),
                  std::string::npos)
            << e;
    }
}

// A model exported as Q8_0 / Q4_0 loads with block-format views and computes close to the original.
TEST(QuantGguf, ExportedModelLoadsAndPredictsLikeTheOriginal) {
    using Cfg = TinyGqa15M;  // dim 288 and hidden 768: whole blocks; Wo's 144-wide slices are not
    const ModelWeights w = synthetic_weights<Cfg>({DType::f16, 5});
    Model<Cfg> ref(w);
    ThreadPool pool(2);
    Session<Cfg> sr(ref, pool, 16);
    const std::vector<int> t = {1, 500, 9000, 77, 30000};
    const auto lr = sr.append(t);
    for (DType type : {DType::q8_0, DType::q4_0}) {
        const auto p = temp_file("q.gguf");
        io::GgufExportOptions opt{"q", /*outputs_in_major=*/true, type};
        io::set_ratio_slices<Cfg>(opt);
        const auto summary = io::export_gguf(w, nullptr, p, opt);
        EXPECT_EQ(summary.kept.size(), std::size_t(Cfg::n_layers)) << "Wo of every layer: a 1-group slice is 144 inputs";
        for (const auto& k : summary.kept) EXPECT_NE(k.find("attn_output"), std::string::npos) << k;
        const ModelWeights q = load_model<Cfg>(p);
        EXPECT_EQ(q.embedding.dtype, DType::q8_0);
        EXPECT_EQ(q.layers[0].wq.dtype, type);
        EXPECT_EQ(q.layers[0].w_down.dtype, type);
        EXPECT_EQ(q.layers[0].w_down.layout, Layout::out_major) << "block formats run along the inputs";
        EXPECT_EQ(q.layers[0].wo.dtype, DType::f16);
        EXPECT_EQ(q.layers[0].wo.layout, Layout::in_major);
        Model<Cfg> m(q);
        Session<Cfg> s(m, pool, 16);
        const auto l = s.append(t);
        double err = 0, norm = 0;
        for (int i = 0; i < Cfg::vocab_size; ++i) {
            err += (l[i] - lr[i]) * (l[i] - lr[i]);
            norm += lr[i] * lr[i];
        }
        EXPECT_LT(std::sqrt(err / norm), type == DType::q8_0 ? 0.02 : 0.2) << to_string(type);
        // Re-exporting a quantized model copies its blocks as they are.
        const auto p2 = temp_file("q2.gguf");
        io::export_gguf(q, nullptr, p2, {"q2", true});
        const io::GgufFile a = io::GgufFile::open(p), b = io::GgufFile::open(p2);
        EXPECT_EQ(std::memcmp(a.find("blk.1.ffn_up.weight")->data, b.find("blk.1.ffn_up.weight")->data, a.find("blk.1.ffn_up.weight")->nbytes), 0);
        std::filesystem::remove(p);
        std::filesystem::remove(p2);
    }
}

// BF16 matrices (GGUF here; safetensors shares the loader) load as F16: values that fit both are exact.
TEST(Bf16, ModelLoadsAsF16WithTheSameValues) {
    using Cfg = Stories260K;
    ModelWeights w = synthetic_weights<Cfg>({DType::f32, 9});
    std::vector<std::vector<bf16_bits>> keep;
    auto to_bf16 = [&](MatrixView& m) {  // truncate to bf16 in place (the f32 reference) and keep a bf16 copy
        auto* f = const_cast<float*>(static_cast<const float*>(m.data));
        auto& b = keep.emplace_back(std::size_t(m.rows) * m.cols);
        for (std::size_t i = 0; i < b.size(); ++i) {
            b[i] = bf16_bits(std::bit_cast<std::uint32_t>(f[i]) >> 16);
            f[i] = bf16_to_f32(b[i]);
        }
        MatrixView v = m;
        v.data = b.data();
        v.dtype = DType::bf16;
        return v;
    };
    ModelWeights wb = w;
    wb.embedding = to_bf16(w.embedding);
    wb.lm_head = w.lm_head.data == w.embedding.data ? wb.embedding : to_bf16(w.lm_head);
    for (int l = 0; l < Cfg::n_layers; ++l)
        for (const LayerMatrix& m : kLayerMatrices) wb.layers[l].*m.field = to_bf16(w.layers[l].*m.field);
    const auto p = temp_file("bf16.gguf");
    io::export_gguf(wb, nullptr, p);
    EXPECT_EQ(io::GgufFile::open(p).find("blk.0.attn_q.weight")->dtype, DType::bf16);
    const ModelWeights loaded = load_model<Cfg>(p);
    EXPECT_EQ(loaded.layers[0].wq.dtype, DType::f16);
    Model<Cfg> a(w), b(loaded);
    ThreadPool pool(1);
    Session<Cfg> sa(a, pool, 16), sb(b, pool, 16);
    const std::vector<int> t = {1, 5, 9, 77, 300};
    const auto la = sa.append(t);
    const auto lb = sb.append(t);
    for (int i = 0; i < Cfg::vocab_size; ++i) ASSERT_NEAR(la[i], lb[i], 1e-3);  // f16 subnormals lose a little
    std::filesystem::remove(p);
}

TEST(Bf16, OutOfF16RangeIsRefusedNamingTheTensor) {
    const std::vector<bf16_bits> big = {bf16_bits(std::bit_cast<std::uint32_t>(1e6f) >> 16)};
    try {
        detail::bf16_to_f16(reinterpret_cast<const std::byte*>(big.data()), 1, "m.safetensors", "model.layers.0.mlp.up_proj.weight");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("model.layers.0.mlp.up_proj.weight (BF16) holds 999424"), std::string::npos) << e.what();
    }
}

TEST(Bf16, PeftAdapterTensorsAreRead) {
    const std::vector<bf16_bits> a = {bf16_bits(0x3f80), bf16_bits(0xc000)};  // 1, −2
    const std::vector<bf16_bits> b = {bf16_bits(0x3f00), bf16_bits(0x4040), bf16_bits(0x0000)};  // 0.5, 3, 0
    io::SafeTensor ta{"a", {1, 2}, DType::bf16, reinterpret_cast<const std::byte*>(a.data()), 4};
    io::SafeTensor tb{"b", {3, 1}, DType::bf16, reinterpret_cast<const std::byte*>(b.data()), 6};
    const LoraPair p = detail::lora_pair_from(ta, tb, 1, "adapter");
    EXPECT_EQ(p.a, (std::vector<float>{1.0f, -2.0f}));
    EXPECT_EQ(p.b, (std::vector<float>{0.5f, 3.0f, 0.0f}));
    io::SafeTensor tq{"q", {1, 32}, DType::q8_0, reinterpret_cast<const std::byte*>(a.data()), 34};
    EXPECT_THROW(detail::lora_pair_from(tq, tb, 1, "adapter"), Error);
}

}  // namespace
}  // namespace elastilm
