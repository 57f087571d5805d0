// The multiple-choice benchmark: built deterministically from documents, the true continuation is the
// text's own, distractors come from other documents, it survives a save/load round trip, and files that
// do not parse or do not hold a valid benchmark are refused with messages naming the file and the item.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "elastilm/service/choice_benchmark.hpp"

namespace elastilm {
namespace {

// One id per character (3 + byte % 97), BOS = 1 before each paragraph.
struct CharTokenizer {
    std::vector<int> encode(std::string_view s, bool bos) const {
        std::vector<int> out;
        if (bos) out.push_back(1);
        for (unsigned char c : s) out.push_back(3 + c % 97);
        return out;
    }
    int vocab_size() const { return 100; }
};

// 8 documents of 3 paragraphs of pseudo-random letters (no span of 6 recurs elsewhere).
std::string corpus() {
    std::string text;
    std::uint32_t x = 12345;
    for (int d = 0; d < 8; ++d) {
        for (int p = 0; p < 3; ++p) {
            for (int i = 0; i < 40; ++i) {
                x = x * 1664525u + 1013904223u;
                text += char('a' + (x >> 16) % 26);
            }
            text += "\n\n";
        }
        text += "\n";  // two blank lines end a document
    }
    return text;
}

ChoiceBenchmarkOptions small() {
    ChoiceBenchmarkOptions o;
    o.items = 20;
    o.context_tokens = 30;
    o.question_tokens = 5;
    o.choice_tokens = 6;
    return o;
}

TEST(ChoiceBenchmark, TrueContinuationFollowsTheQuestionInItsDocument) {
    const CharTokenizer tok;
    const std::string text = corpus();
    const auto docs = document_streams(tok, text);
    ASSERT_EQ(docs.size(), 8u);
    EXPECT_EQ(docs[0].size(), 3u * 41u);  // 3 paragraphs of BOS + 40 characters
    const ChoiceBenchmark b = build_choice_benchmark(tok, text, "corpus", small());
    ASSERT_EQ(b.items.size(), 20u);
    std::array<int, 4> answers{};
    for (const ChoiceItem& it : b.items) {
        ++answers[it.answer];
        std::vector<int> joined = it.context;
        joined.insert(joined.end(), it.question.begin(), it.question.end());
        joined.insert(joined.end(), it.choices[it.answer].begin(), it.choices[it.answer].end());
        const auto& doc = docs[it.document];
        EXPECT_NE(std::search(doc.begin(), doc.end(), joined.begin(), joined.end()), doc.end());
        for (int c = 0; c < 4; ++c) {
            EXPECT_EQ(it.choices[c].size(), 6u);
            if (c != it.answer) {  // a distractor is not a span of the item's own document
                EXPECT_EQ(std::search(doc.begin(), doc.end(), it.choices[c].begin(), it.choices[c].end()), doc.end());
            }
        }
    }
    for (int a : answers) EXPECT_GT(a, 0);  // the answer's position varies
    // Deterministic: the same seed gives the same items, another seed others.
    const ChoiceBenchmark again = build_choice_benchmark(tok, text, "corpus", small());
    EXPECT_EQ(again.items[7].choices, b.items[7].choices);
    ChoiceBenchmarkOptions other = small();
    other.seed = 2;
    EXPECT_NE(build_choice_benchmark(tok, text, "corpus", other).items[0].context, b.items[0].context);
    // A calibration set from the later documents only is disjoint from one of the earlier ones.
    ChoiceBenchmarkOptions early = small(), late = small();
    early.max_stream_tokens = 4 * 123;  // documents 0-3
    late.skip_stream_tokens = 4 * 123;  // documents 4-7
    for (const ChoiceItem& it : build_choice_benchmark(tok, text, "corpus", early).items) EXPECT_LT(it.document, 4);
    for (const ChoiceItem& it : build_choice_benchmark(tok, text, "corpus", late).items) EXPECT_GE(it.document, 4);
    // Too little text for an item: a clear error.
    ChoiceBenchmarkOptions huge = small();
    huge.context_tokens = 1000;
    EXPECT_THROW(build_choice_benchmark(tok, text, "corpus", huge), Error);
    EXPECT_EQ(choose_answer({-3.0, -1.5, -2.0, -1.6}), 1);
}

class ChoiceBenchmarkFile : public ::testing::Test {
protected:
    std::filesystem::path path = std::filesystem::temp_directory_path() / ("elastilm_choice_" + std::to_string(::getpid()) + ".json");
    void TearDown() override { std::filesystem::remove(path); }
    void write(const std::string& s) { std::ofstream(path) << s; }
    void refused(const std::string& s, const std::string& needle) {
        write(s);
        try {
            load_choice_benchmark(path, 100);
            ADD_FAILURE() << "accepted: " << s;
        } catch (const Error& e) {
            const std::string what = e.what();
            EXPECT_NE(what.find(path.string()), std::string::npos) << what;
            EXPECT_NE(what.find(needle), std::string::npos) << "wanted '" << needle << "' in: " << what;
        }
    }
};

TEST_F(ChoiceBenchmarkFile, RoundTripsAndRefusesBadFiles) {
    const CharTokenizer tok;
    const ChoiceBenchmark b = build_choice_benchmark(tok, corpus(), "corpus", small());
    save(b, path);
    const ChoiceBenchmark r = load_choice_benchmark(path, 100);
    ASSERT_EQ(r.items.size(), b.items.size());
    EXPECT_EQ(r.items[3].context, b.items[3].context);
    EXPECT_EQ(r.items[3].choices, b.items[3].choices);
    EXPECT_EQ(r.items[3].answer, b.items[3].answer);
    EXPECT_THROW(load_choice_benchmark(path, 32000), Error);  // another vocabulary

    const std::string head = R"({"format": "elastilm-choice-benchmark/1", "vocab_size": 100, "items": [)";
    const std::string good_choices = R"("choices": [[3], [4], [5], [6]])";
    refused("{\"format\": ", "is not a JSON benchmark file");
    refused("[1, 2, 3]", "format");
    refused(R"({"format": "something else", "items": []})", "format");
    refused(head + "]}", "no \"items\"");
    refused(head + R"({"context": [3], "question": [4], )" + good_choices + "}]}", "has no \"answer\"");
    refused(head + R"({"context": [3], "question": [4], )" + good_choices + R"(, "answer": 4}]})", "must be 0, 1, 2 or 3");
    refused(head + R"({"context": [3, 100], "question": [4], )" + good_choices + R"(, "answer": 0}]})", "outside [0, 100)");
    refused(head + R"({"context": [3], "question": [4], "choices": [[3], [4]], "answer": 0}]})", "4 candidates");
    refused(head + R"({"context": [3], "question": [4], "choices": [[3], [4], [5], [6, 7]], "answer": 0}]})", "same length");
    refused(head + R"({"context": [], "question": [4], )" + good_choices + R"(, "answer": 0}]})", "non-empty array");
    refused(head + R"({"context": ["x"], "question": [4], )" + good_choices + R"(, "answer": 0}]})", "non-integer");
    EXPECT_THROW(load_choice_benchmark(path.string() + ".missing", 100), Error);
}

}  // namespace
}  // namespace elastilm
