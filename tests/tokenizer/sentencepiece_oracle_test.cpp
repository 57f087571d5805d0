// Our tokenizer against Debian's libsentencepiece on real text: every line of valid.txt plus edge cases
// must give identical ids, and decode must give sentencepiece's text.
#include <gtest/gtest.h>

#include <sentencepiece_processor.h>

#include <fstream>
#include <sstream>

#include "elastilm/tokenizer/tokenizer.hpp"
#include "shared_models.hpp"

namespace elastilm {
namespace {

TEST(SentencePieceOracle, IdenticalIdsOnRealText) {
    const auto model = test::shared_model("tokenizer.model");
    const auto valid = test::shared_model("tiny-gqa-15M/valid.txt");
    ELASTILM_REQUIRE_SHARED(model);
    ELASTILM_REQUIRE_SHARED(valid);
    sentencepiece::SentencePieceProcessor sp;
    ASSERT_TRUE(sp.Load(model.string()).ok());
    const Tokenizer ours = Tokenizer::from_model_file(model);

    std::vector<std::string> lines;
    std::ifstream in(valid);
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) lines.push_back(line);
    std::ifstream whole(valid);
    std::stringstream all;
    all << whole.rdbuf();
    // Paragraphs, as the models' tokenization rule uses them, and a few hand-made edge cases.
    std::string text = all.str();
    for (std::size_t start = 0, end; start < text.size(); start = end + 2) {
        end = std::min(text.find("\n\n", start), text.size());
        if (end > start) lines.push_back(text.substr(start, end - start));
    }
    for (const char* s : {" ", "  leading", "trailing  ", "a  b   c", "\n", "\t", "tab\tand\nnewline", "1234567890",
                          "naïve café", "日本語のテキスト", "🦙🦙 emoji", "Ωμέγα", "supercalifragilisticexpialidocious",
                          "<s> not special </s>", "<0x41>", "\xff\xfe broken utf8", "x"})
        lines.push_back(s);

    std::size_t mismatches = 0, tokens = 0;
    for (const std::string& line : lines) {
        std::vector<int> want;
        ASSERT_TRUE(sp.Encode(line, &want).ok());
        want.insert(want.begin(), 1);
        const auto got = ours.encode(line, true);
        tokens += got.size();
        if (got != want && mismatches++ < 5) ADD_FAILURE() << "ids differ for: " << line;
        std::string want_text;
        ASSERT_TRUE(sp.Decode(want, &want_text).ok());
        if (ours.decode(got) != want_text && mismatches++ < 5) ADD_FAILURE() << "decode differs for: " << line;
    }
    EXPECT_EQ(mismatches, 0u);
    EXPECT_GT(lines.size(), 1000u);
    std::printf("compared %zu texts, %zu tokens: %zu mismatches\n", lines.size(), tokens, mismatches);
}

}  // namespace
}  // namespace elastilm
