// A multiple-choice benchmark for the service's answer quality (ElastiLM §5 measures accuracy, not
// perplexity): each item is a context of preceding text, a question — the few tokens right before the
// answer, which the service must never compress away — and four candidate continuations of equal
// length: the text's true one and three spans cut from other documents. The model's answer is the
// candidate with the highest mean per-token log-likelihood after the prompt (the seed's way of reading
// answers), so accuracy needs no generation and no string matching; chance is 25 %.
//
// Built deterministically (a seed) from held-out text whose documents are separated by two blank lines
// (docs_valid.txt), tokenized as everywhere (BOS + ids per paragraph), and stored as JSON of token ids,
// so the items a report used can be kept and re-run exactly.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastilm/error.hpp"
#include "elastilm/io/atomic_write.hpp"
#include "elastilm/model/perplexity.hpp"

namespace elastilm {

inline constexpr std::string_view kChoiceBenchmarkFormat = "elastilm-choice-benchmark/1";

struct ChoiceItem {
    std::vector<int> context;                 // compressible
    std::vector<int> question;                // protected: the tokens just before the answer
    std::array<std::vector<int>, 4> choices;  // equal lengths
    int answer = 0;                           // index of the true continuation
    int document = 0;                         // which document of the source the context came from
};

struct ChoiceBenchmark {
    std::string source;  // the text it was built from (a name, for reports)
    int vocab_size = 0;
    std::vector<ChoiceItem> items;
};

struct ChoiceBenchmarkOptions {
    int items = 60;
    int context_tokens = 192;  // BOS-led paragraphs included, as the model reads them
    int question_tokens = 8;
    int choice_tokens = 12;
    std::uint64_t seed = 1;
    // Only documents wholly inside the first `max_stream_tokens` of the text's token stream are used:
    // what lies beyond is left to calibration (elasticize --calib-skip), so the two never overlap.
    std::size_t max_stream_tokens = 131072;
    // Only documents starting at or after this token: a calibration set disjoint from the evaluation
    // set (skip = the evaluation's max_stream_tokens, max = the end of the text).
    std::size_t skip_stream_tokens = 0;
};

// The text's documents (split on two blank lines, i.e. "\n\n\n"), each as a BOS-per-paragraph stream.
template <class Tok>
std::vector<std::vector<int>> document_streams(const Tok& tok, std::string_view text) {
    std::vector<std::vector<int>> docs;
    std::size_t start = 0;
    while (start < text.size()) {
        std::size_t end = text.find("\n\n\n", start);
        if (end == std::string_view::npos) end = text.size();
        auto ids = paragraph_stream(tok, text.substr(start, end - start));
        if (!ids.empty()) docs.push_back(std::move(ids));
        start = end + 3;
        while (start < text.size() && text[start] == '\n') ++start;
    }
    return docs;
}

template <class Tok>
ChoiceBenchmark build_choice_benchmark(const Tok& tok, std::string_view text, const std::string& source,
                                       const ChoiceBenchmarkOptions& o = {}) {
    require(o.items > 0 && o.context_tokens > 0 && o.question_tokens > 0 && o.choice_tokens > 0, "choice benchmark",
            "items, context, question and choice lengths must be positive");
    const auto docs = document_streams(tok, text);
    const int need = o.context_tokens + o.question_tokens + o.choice_tokens;
    std::vector<int> eligible;  // documents long enough for an item, inside the token limit
    std::size_t seen = 0;
    for (std::size_t d = 0; d < docs.size(); ++d) {
        const std::size_t start = seen;
        seen += docs[d].size();
        if (seen > o.max_stream_tokens) break;
        if (start >= o.skip_stream_tokens && int(docs[d].size()) >= need) eligible.push_back(int(d));
    }
    require(eligible.size() >= 4, source,
            "has " + std::to_string(eligible.size()) + " documents of at least " + std::to_string(need) + " tokens between token " +
                std::to_string(o.skip_stream_tokens) + " and " + std::to_string(o.max_stream_tokens) +
                "; a benchmark needs 4 (documents are separated by two blank lines)");
    std::mt19937_64 rng(o.seed);
    auto pick = [&](std::size_t n) { return std::size_t(std::uniform_int_distribution<std::size_t>(0, n - 1)(rng)); };
    ChoiceBenchmark b;
    b.source = source;
    b.vocab_size = tok.vocab_size();
    for (int k = 0; k < o.items; ++k) {
        ChoiceItem item;
        item.document = eligible[pick(eligible.size())];
        const auto& doc = docs[std::size_t(item.document)];
        const std::size_t s = pick(doc.size() - std::size_t(need) + 1);
        item.context.assign(doc.begin() + s, doc.begin() + s + o.context_tokens);
        item.question.assign(doc.begin() + s + o.context_tokens, doc.begin() + s + o.context_tokens + o.question_tokens);
        item.answer = int(pick(4));
        const auto truth = doc.begin() + s + o.context_tokens + o.question_tokens;
        item.choices[item.answer].assign(truth, truth + o.choice_tokens);
        std::vector<int> used{item.document};
        for (int c = 0; c < 4; ++c) {
            if (c == item.answer) continue;
            int d;
            do d = eligible[pick(eligible.size())];
            while (std::find(used.begin(), used.end(), d) != used.end());
            used.push_back(d);
            const auto& other = docs[std::size_t(d)];
            const std::size_t at = pick(other.size() - std::size_t(o.choice_tokens) + 1);
            item.choices[c].assign(other.begin() + at, other.begin() + at + o.choice_tokens);
        }
        b.items.push_back(std::move(item));
    }
    return b;
}

inline void save(const ChoiceBenchmark& b, const std::filesystem::path& path) {
    nlohmann::json j;
    j["format"] = kChoiceBenchmarkFormat;
    j["source"] = b.source;
    j["vocab_size"] = b.vocab_size;
    j["items"] = nlohmann::json::array();
    for (const ChoiceItem& it : b.items)
        j["items"].push_back({{"document", it.document}, {"context", it.context}, {"question", it.question},
                              {"choices", it.choices}, {"answer", it.answer}});
    io::write_text_atomically(path, j.dump() + "\n");
}

// Reads a benchmark and checks every field; errors name the file, the item and what was expected.
inline ChoiceBenchmark load_choice_benchmark(const std::filesystem::path& path, int vocab_size) {
    const std::string where = path.string();
    std::ifstream in(path, std::ios::binary);
    require(bool(in), where, "cannot open the benchmark file");
    std::stringstream ss;
    ss << in.rdbuf();
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(ss.str());
    } catch (const nlohmann::json::exception& e) {
        require(false, where, std::string("is not a JSON benchmark file: ") + e.what());
    }
    require(j.is_object() && j.contains("format") && j["format"].is_string() && j["format"].get<std::string>() == kChoiceBenchmarkFormat,
            where, "has no \"format\": \"" + std::string(kChoiceBenchmarkFormat) + "\" (not a benchmark written by service_eval --build-benchmark)");
    require(j.contains("items") && j["items"].is_array() && !j["items"].empty(), where, "has no \"items\" array, or it is empty");
    ChoiceBenchmark b;
    b.source = j.value("source", std::string());
    b.vocab_size = j.value("vocab_size", 0);
    require(b.vocab_size == vocab_size, where,
            "was built for a vocabulary of " + std::to_string(b.vocab_size) + " tokens, the model has " + std::to_string(vocab_size));
    auto ids = [&](const nlohmann::json& v, const std::string& what, std::size_t k) {
        const std::string at = "item " + std::to_string(k) + ": \"" + what + "\"";
        require(v.is_array() && !v.empty(), where, at + " must be a non-empty array of token ids");
        std::vector<int> out;
        for (const auto& e : v) {
            require(e.is_number_integer(), where, at + " holds a non-integer");
            const long long id = e.get<long long>();
            require(id >= 0 && id < vocab_size, where, at + " holds token id " + std::to_string(id) + ", outside [0, " + std::to_string(vocab_size) + ")");
            out.push_back(int(id));
        }
        return out;
    };
    for (std::size_t k = 0; k < j["items"].size(); ++k) {
        const auto& e = j["items"][k];
        const std::string at = "item " + std::to_string(k);
        require(e.is_object(), where, at + " is not an object");
        for (const char* key : {"context", "question", "choices", "answer"})
            require(e.contains(key), where, at + " has no \"" + key + "\"");
        ChoiceItem it;
        it.context = ids(e["context"], "context", k);
        it.question = ids(e["question"], "question", k);
        require(e["choices"].is_array() && e["choices"].size() == 4, where, at + ": \"choices\" must hold 4 candidates");
        for (int c = 0; c < 4; ++c) it.choices[c] = ids(e["choices"][c], "choices", k);
        for (int c = 1; c < 4; ++c)
            require(it.choices[c].size() == it.choices[0].size(), where, at + ": the 4 candidates must have the same length");
        require(e["answer"].is_number_integer() && e["answer"].get<long long>() >= 0 && e["answer"].get<long long>() < 4, where,
                at + ": \"answer\" must be 0, 1, 2 or 3");
        it.answer = e["answer"].get<int>();
        it.document = e.value("document", 0);
        b.items.push_back(std::move(it));
    }
    return b;
}

// Mean log-likelihood per token of each candidate, from its log-probabilities; the answer is the best.
inline int choose_answer(const std::array<double, 4>& mean_loglik) {
    int best = 0;
    for (int c = 1; c < 4; ++c)
        if (mean_loglik[c] > mean_loglik[best]) best = c;
    return best;
}

}  // namespace elastilm
