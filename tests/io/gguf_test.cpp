// GGUF: writer → reader round trip of every metadata type and both tensor types; models exported to
// GGUF compute what they computed before (including the HF → adjacent RoPE row permutation); and every
// kind of damage to a file gives an elastilm::Error naming what is wrong.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "elastilm/formats/gguf_export.hpp"
#include "elastilm/formats/load.hpp"
#include "elastilm/model/session.hpp"
#include "elastilm/model/synthetic.hpp"
#include "elastilm/tokenizer/tokenizer.hpp"
#include "shared_models.hpp"
#include "io/gguf_test_files.hpp"

namespace elastilm {
namespace {

using test::bytes_of;
using test::error_of;
using test::slurp;
using test::temp_file;

std::string small_gguf() {
    io::GgufWriter w;
    w.set_u32("a.u32", 7);
    w.set_i32("a.i32", -3);
    w.set_u64("a.u64", 1ull << 40);
    w.set_f32("a.f32", 0.25f);
    w.set_bool("a.bool", true);
    w.set_string("a.str", "héllo");
    w.set_i32_array("a.ints", {1, -2, 3});
    w.set_f32_array("a.floats", {0.5f, 1.5f});
    w.set_string_array("a.strs", {"x", "", "yz"});
    static const float m[6] = {1, 2, 3, 4, 5, 6};
    static const f16_bits h[3] = {f32_to_f16(1.0f), f32_to_f16(-2.0f), f32_to_f16(0.5f)};
    w.add_tensor("m", {2, 3}, DType::f32, m);
    w.add_tensor("h", {3}, DType::f16, h);
    const auto p = temp_file("small.gguf");
    w.write(p);
    std::string out = slurp(p);
    std::filesystem::remove(p);
    return out;
}

TEST(Gguf, RoundTripsEveryMetadataTypeAndTensor) {
    const std::string bytes = small_gguf();
    const io::GgufFile g = io::GgufFile::parse(bytes_of(bytes), "small.gguf");
    EXPECT_EQ(g.version(), 3u);
    EXPECT_EQ(g.get_uint("a.u32"), 7u);
    EXPECT_EQ(g.value("a.i32").i, -3);
    EXPECT_EQ(g.get_uint("a.u64"), 1ull << 40);
    EXPECT_EQ(g.get_float("a.f32"), 0.25);
    EXPECT_TRUE(g.get_bool("a.bool"));
    EXPECT_EQ(g.get_string("a.str"), "héllo");
    EXPECT_EQ(g.get_numbers("a.ints"), (std::vector<double>{1, -2, 3}));
    EXPECT_EQ(g.get_numbers("a.floats"), (std::vector<double>{0.5, 1.5}));
    EXPECT_EQ(g.get_strings("a.strs"), (std::vector<std::string>{"x", "", "yz"}));
    const auto* m = g.find("m");
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->shape, (std::vector<std::int64_t>{2, 3}));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(m->data) % 32, reinterpret_cast<std::uintptr_t>(bytes.data()) % 32);
    EXPECT_EQ(reinterpret_cast<const float*>(m->data)[5], 6.0f);
    const auto* h = g.find("h");
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(f16_to_f32(reinterpret_cast<const f16_bits*>(h->data)[1]), -2.0f);
    EXPECT_THROW(g.get_string("a.u32"), Error);
    EXPECT_THROW(g.get_uint("missing.key"), Error);
}

TEST(Gguf, EveryTruncationIsAnError) {
    const std::string bytes = small_gguf();
    // Past the last tensor's data only alignment padding follows, which a reader need not have.
    const io::GgufFile whole = io::GgufFile::parse(bytes_of(bytes), "whole");
    const auto* last = whole.find("h");
    const std::size_t data_end = std::size_t(last->data - reinterpret_cast<const std::byte*>(bytes.data())) + last->nbytes;
    for (std::size_t cut = 0; cut < data_end; ++cut) {
        const std::string e = error_of(bytes.substr(0, cut));
        ASSERT_FALSE(e.empty()) << "a file cut at " << cut << " of " << bytes.size() << " bytes parsed";
    }
}

TEST(Gguf, DamagedHeadersNameTheProblem) {
    const std::string good = small_gguf();
    auto patched = [&](std::size_t off, const void* v, std::size_t n) {
        std::string b = good;
        std::memcpy(b.data() + off, v, n);
        return b;
    };
    EXPECT_NE(error_of("GGML" + good.substr(4)).find("not a GGUF file"), std::string::npos);
    const std::uint32_t v9 = 9;
    EXPECT_NE(error_of(patched(4, &v9, 4)).find("version 9 is not supported"), std::string::npos);
    const std::uint64_t huge = 1ull << 60;
    EXPECT_NE(error_of(patched(8, &huge, 8)).find("tensor count"), std::string::npos);
    EXPECT_NE(error_of(patched(16, &huge, 8)).find("metadata count"), std::string::npos);
    // The first key's length (offset 24) far beyond the file.
    EXPECT_NE(error_of(patched(24, &huge, 8)).find("truncated"), std::string::npos);
    // Flip bytes everywhere: errors or a parse, never a crash (ASan/UBSan builds check the rest).
    for (std::size_t i = 0; i < good.size(); i += 3) {
        std::string b = good;
        b[i] = char(b[i] ^ 0xff);
        error_of(b);
    }
}

TEST(Gguf, UnsupportedTensorTypeIsNamed) {
    std::string b = small_gguf();
    // Tensor "h": its type field follows name and one dimension. Find it from the name.
    const auto pos = b.find(std::string("\x01\x00\x00\x00\x00\x00\x00\x00h", 9));
    ASSERT_NE(pos, std::string::npos);
    const std::size_t type_off = pos + 9 + 4 + 8;
    const std::uint32_t q4k = 12;
    std::memcpy(b.data() + type_off, &q4k, 4);
    EXPECT_NE(error_of(b).find("tensor h has type Q4_K, which elastilm does not load (F32, F16, BF16, Q8_0, Q4_0 load"), std::string::npos)
        << error_of(b);
}

TEST(Gguf, TensorPastTheEndIsAnError) {
    std::string b = small_gguf();
    const io::GgufFile whole = io::GgufFile::parse(bytes_of(b), "whole");
    const auto* last = whole.find("h");
    b.resize(std::size_t(last->data - reinterpret_cast<const std::byte*>(b.data())) + 2);  // into the f16 tensor's data
    const std::string e = error_of(b);
    EXPECT_NE(e.find("runs past the end"), std::string::npos) << e;
}

TEST(GgufExport, SyntheticModelComputesTheSameAfterARoundTrip) {
    using Cfg = Stories260K;
    for (bool in_major : {false, true}) {
        const ModelWeights w = synthetic_weights<Cfg>({DType::f16, 3});
        const auto p = temp_file(in_major ? "synth_in.gguf" : "synth.gguf");
        io::export_gguf(w, nullptr, p, {"synthetic", in_major});
        Model<Cfg> a(w), b(load_model<Cfg>(p));
        EXPECT_EQ(b.layer(0).wo.layout, in_major ? Layout::in_major : Layout::out_major);
        ThreadPool pool(1);
        Session<Cfg> sa(a, pool, 32), sb(b, pool, 32);
        const std::vector<int> t = {1, 5, 9, 77, 300};
        const auto la = sa.append(t, 60);
        const auto lb = sb.append(t, 60);
        for (int i = 0; i < Cfg::vocab_size; ++i) ASSERT_NEAR(la[i], lb[i], 1e-4);
        std::filesystem::remove(p);
    }
}

TEST(GgufExport, HuggingFaceModelKeepsItsLogitsWithPermutedRope) {
    const auto dir = test::shared_model("tiny-gqa-15M");
    ELASTILM_REQUIRE_SHARED(dir / "model.safetensors");
    ELASTILM_REQUIRE_SHARED(test::shared_model("tokenizer.model"));
    const Tokenizer tok = Tokenizer::from_model_file(test::shared_model("tokenizer.model"));
    const ModelWeights hf = load_model<TinyGqa15M>(dir);
    const auto p = temp_file("tiny.gguf");
    io::export_gguf(hf, &tok.vocabulary(), p);
    const ModelWeights gg = load_model<TinyGqa15M>(p);
    EXPECT_EQ(gg.rope_pairing, RopePairing::adjacent);
    EXPECT_EQ(gg.lm_head.data, gg.embedding.data) << "tied embeddings stay tied";
    const io::GgufFile file = io::GgufFile::open(p);
    EXPECT_EQ(file.get_strings("tokenizer.ggml.tokens").size(), 32000u);
    Model<TinyGqa15M> a(hf), b(gg);
    ThreadPool pool(2);
    Session<TinyGqa15M> sa(a, pool), sb(b, pool);
    const auto ids = tok.encode("Four score and seven years ago", true);
    const auto la = sa.append(ids);
    const auto lb = sb.append(ids);
    for (int i = 0; i < TinyGqa15M::vocab_size; ++i) ASSERT_NEAR(la[i], lb[i], 1e-3);
    std::filesystem::remove(p);
}

TEST(Loader, MismatchedConfigNamesFieldAndValues) {
    const auto p = test::shared_model("stories260K.bin");
    ELASTILM_REQUIRE_SHARED(p);
    try {
        load_model<TinyGqa15M>(p);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("dim is 64 in the file but 288 in config tiny-gqa-15M"), std::string::npos) << e.what();
    }
}

TEST(Loader, MissingTensorIsNamed) {
    using Cfg = Stories260K;
    io::GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.set_u32("llama.embedding_length", Cfg::dim);
    w.set_u32("llama.feed_forward_length", Cfg::hidden_dim);
    w.set_u32("llama.block_count", Cfg::n_layers);
    w.set_u32("llama.attention.head_count", Cfg::n_heads);
    w.set_u32("llama.attention.head_count_kv", Cfg::n_kv_heads);
    std::vector<float> emb(std::size_t(Cfg::vocab_size) * Cfg::dim);
    w.add_tensor("token_embd.weight", {Cfg::vocab_size, Cfg::dim}, DType::f32, emb.data());
    const auto p = temp_file("missing.gguf");
    w.write(p);
    try {
        load_model<Cfg>(p);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("tensor blk.0.attn_norm.weight is missing"), std::string::npos) << e.what();
    }
    std::filesystem::remove(p);
}

TEST(Loader, Llama2cSizeMismatchAndUnknownFiles) {
    const auto p = test::shared_model("stories260K.bin");
    ELASTILM_REQUIRE_SHARED(p);
    const std::string bytes = slurp(p);
    const auto cut = temp_file("cut.bin");
    std::ofstream(cut, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size() - 100));
    try {
        load_weights(cut);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("the header implies"), std::string::npos) << e.what();
    }
    const auto junk = temp_file("junk.dat");
    std::ofstream(junk) << "hello";
    EXPECT_THROW(load_weights(junk), Error);
    EXPECT_THROW(load_weights(temp_file("does_not_exist.gguf")), Error);
    std::filesystem::remove(cut);
    std::filesystem::remove(junk);
}

}  // namespace
}  // namespace elastilm
