// Tokenizer checks that need no oracle library (they also run under qemu-aarch64).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "elastilm/tokenizer/tokenizer.hpp"
#include "shared_models.hpp"

namespace elastilm {
namespace {

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

TEST(Tokenizer, ModelAndLlama2cBinGiveIdenticalIds) {
    const auto model = test::shared_model("tokenizer.model");
    const auto bin = test::shared_model("tokenizer.bin");
    ELASTILM_REQUIRE_SHARED(model);
    ELASTILM_REQUIRE_SHARED(bin);
    const Tokenizer a = Tokenizer::from_model_file(model);
    const Tokenizer b = Tokenizer::from_llama2c_file(bin, 32000);
    EXPECT_EQ(a.vocab_size(), 32000);
    const auto valid = test::shared_model("tiny-gqa-15M/valid.txt");
    std::string text = "Hello world! Ünïcödé 日本語 🦙\n\ttabs  double  spaces ";
    if (std::filesystem::exists(valid)) text += read_file(valid).substr(0, 20000);
    std::istringstream lines(text);
    int compared = 0;
    for (std::string line; std::getline(lines, line); ++compared) ASSERT_EQ(a.encode(line, true), b.encode(line, true)) << line;
    EXPECT_GT(compared, 5);
}

TEST(Tokenizer, KnownIdsOfTheReferencePrompt) {
    const auto model = test::shared_model("tokenizer.model");
    ELASTILM_REQUIRE_SHARED(model);
    // The ids Hugging Face's reference.json lists for this prompt (BOS first).
    const Tokenizer t = Tokenizer::from_model_file(model);
    const std::vector<int> want = {1, 3237, 29889, 5013, 5790, 29892, 3237, 29889, 7178, 29892, 322, 20660, 341, 13415};
    EXPECT_EQ(t.encode("Mr. Speaker, Mr. President, and distinguished Members", true), want);
    EXPECT_EQ(t.decode(want), "Mr. Speaker, Mr. President, and distinguished Members");
}

TEST(Tokenizer, ByteFallbackRoundTrips) {
    const auto model = test::shared_model("tokenizer.model");
    ELASTILM_REQUIRE_SHARED(model);
    const Tokenizer t = Tokenizer::from_model_file(model);
    for (std::string s : {"🦙 llama", "tab\there", "line\nbreak", "Ωμέγα", "\xf0\x9f\x98\x80\xf0\x9f\x98\x80"}) {
        const auto ids = t.encode(s, true);
        EXPECT_EQ(t.decode(ids), s);
    }
    EXPECT_EQ(t.encode("", true), std::vector<int>{1});
    EXPECT_TRUE(t.encode("", false).empty());
    EXPECT_THROW(t.decode_piece(1, 32000), Error);
    EXPECT_THROW(t.decode_piece(1, -1), Error);
}

TEST(Tokenizer, CorruptFilesGiveErrors) {
    const auto model = test::shared_model("tokenizer.model");
    const auto bin = test::shared_model("tokenizer.bin");
    ELASTILM_REQUIRE_SHARED(model);
    ELASTILM_REQUIRE_SHARED(bin);
    const std::string m = read_file(model), b = read_file(bin);
    // Each case parses up to the whole 32000-piece vocabulary: ~300 cases are 3 s natively, 40 s under
    // qemu, where a quarter of them still covers every part of the file.
    const std::size_t cuts = test::emulated() ? 23 : 97, flips = test::emulated() ? 50 : 200;
    int errors = 0, tried = 0;
    // Truncations at many offsets: an Error or a (shorter) valid vocabulary, never a crash.
    for (std::size_t cut = 0; cut < m.size(); cut += m.size() / cuts + 1, ++tried) {
        try {
            parse_sentencepiece_model(std::string_view(m).substr(0, cut), "cut");
        } catch (const Error&) { ++errors; }
    }
    EXPECT_GT(errors, tried / 2);
    // Flipped bytes in the header region.
    for (std::size_t i = 0; i < flips; ++i) {
        std::string c = m;
        c[i * 7 % c.size()] ^= 0x5a;
        try { parse_sentencepiece_model(c, "flip"); } catch (const Error&) {}
    }
    for (std::size_t cut : {std::size_t(0), std::size_t(3), std::size_t(100), b.size() / 2, b.size() - 1}) {
        EXPECT_THROW(parse_llama2c_tokenizer(std::as_bytes(std::span(b.data(), cut)), 32000, "cut"), Error) << cut;
    }
    EXPECT_THROW(parse_llama2c_tokenizer(std::as_bytes(std::span(b.data(), b.size())), 31999, "short"), Error);
    EXPECT_THROW(parse_sentencepiece_model("not a protobuf at all \xff\xff\xff\xff", "junk"), Error);
}

}  // namespace
}  // namespace elastilm

#include "elastilm/io/gguf_writer.hpp"
#include "elastilm/tokenizer/gguf_keys.hpp"

namespace elastilm {
namespace {

// The vocabulary embedded in a GGUF (as our exporter and llama.cpp's converter write it) tokenizes
// exactly like tokenizer.model; broken vocabulary metadata is reported.
TEST(Tokenizer, FromGgufVocabularyMatchesTokenizerModel) {
    const auto model = test::shared_model("tokenizer.model");
    ELASTILM_REQUIRE_SHARED(model);
    const Tokenizer ref = Tokenizer::from_model_file(model);
    const Vocabulary& v = ref.vocabulary();
    std::vector<std::int32_t> types;
    for (PieceType t : v.types) types.push_back(std::int32_t(t));
    auto write = [&](bool with_types, std::size_t n_scores) {
        io::GgufWriter w;
        w.set_string("tokenizer.ggml.model", "llama");
        w.set_string_array("tokenizer.ggml.tokens", v.pieces);
        w.set_f32_array("tokenizer.ggml.scores", std::vector<float>(v.scores.begin(), v.scores.begin() + n_scores));
        if (with_types) w.set_i32_array("tokenizer.ggml.token_type", types);
        w.set_u32("tokenizer.ggml.bos_token_id", 1);
        w.set_u32("tokenizer.ggml.eos_token_id", 2);
        const auto p = std::filesystem::temp_directory_path() / ("elastilm_vocab_" + std::to_string(::getpid()) + ".gguf");
        w.write(p);
        return p;
    };
    for (bool with_types : {true, false}) {
        const auto p = write(with_types, v.scores.size());
        const Tokenizer t = tokenizer_from_gguf(io::GgufFile::open(p));
        for (std::string s : {"Hello world", "Mr. Speaker, the Union", "🦙 byte fallback\ttab", "  spaces  "})
            EXPECT_EQ(t.encode(s, true), ref.encode(s, true)) << s;
        std::filesystem::remove(p);
    }
    const auto bad = write(true, 10);
    try {
        tokenizer_from_gguf(io::GgufFile::open(bad));
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.scores has 10 values for 32000 tokens"), std::string::npos) << e.what();
    }
    std::filesystem::remove(bad);
}

// write_vocabulary and vocabulary_from_gguf are one key family: what one writes the other reads back,
// including a vocabulary that does not prepend a space.
TEST(Tokenizer, GgufVocabularyKeysRoundTrip) {
    Vocabulary v;
    v.pieces = {"<unk>", "<s>", "</s>", "\xe2\x96\x81" "a", "b", "<0x41>"};
    v.scores = {0, 0, 0, -1.5f, -2.0f, 0};
    v.types = {PieceType::unknown, PieceType::control, PieceType::control, PieceType::normal, PieceType::normal, PieceType::byte};
    v.unk_id = 0, v.bos_id = 1, v.eos_id = 2;
    for (bool prefix : {true, false}) {
        v.add_dummy_prefix = prefix;
        io::GgufWriter w;
        write_vocabulary(w, v);
        const auto p = std::filesystem::temp_directory_path() / ("elastilm_vocab_keys_" + std::to_string(::getpid()) + ".gguf");
        w.write(p);
        const Vocabulary back = vocabulary_from_gguf(io::GgufFile::open(p));
        std::filesystem::remove(p);
        EXPECT_EQ(back.pieces, v.pieces);
        EXPECT_EQ(back.scores, v.scores);
        EXPECT_EQ(back.types, v.types);
        EXPECT_EQ(back.add_dummy_prefix, prefix);
        EXPECT_EQ(back.unk_id, v.unk_id);
        EXPECT_EQ(back.bos_id, v.bos_id);
        EXPECT_EQ(back.eos_id, v.eos_id);
    }
}

}  // namespace
}  // namespace elastilm
