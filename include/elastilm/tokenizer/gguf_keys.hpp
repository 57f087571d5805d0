// The tokenizer.ggml.* GGUF keys, read and written side by side: the vocabulary a GGUF file carries
// (model, tokens, scores, token_type, *_token_id, add_space_prefix). Only the SentencePiece ("llama")
// kind is supported. formats/gguf_export.hpp writes with write_vocabulary; tools read with
// tokenizer_from_gguf.
#pragma once

#include <cstdint>
#include <vector>

#include "elastilm/io/gguf.hpp"
#include "elastilm/io/gguf_writer.hpp"
#include "elastilm/tokenizer/tokenizer.hpp"

namespace elastilm {

inline Vocabulary vocabulary_from_gguf(const io::GgufFile& g) {
    const std::string& where = g.where();
    require(g.has("tokenizer.ggml.tokens"), where, "has no embedded vocabulary (tokenizer.ggml.tokens)");
    if (g.has("tokenizer.ggml.model"))
        require(g.get_string("tokenizer.ggml.model") == "llama", where,
                "tokenizer.ggml.model is " + g.get_string("tokenizer.ggml.model") + ", only llama (SentencePiece BPE) is supported");
    Vocabulary v;
    v.pieces = g.get_strings("tokenizer.ggml.tokens");
    const std::size_t n = v.pieces.size();
    if (g.has("tokenizer.ggml.scores")) {
        const auto& s = g.get_numbers("tokenizer.ggml.scores");
        require(s.size() == n, where, "tokenizer.ggml.scores has " + std::to_string(s.size()) + " values for " + std::to_string(n) + " tokens");
        v.scores.assign(s.begin(), s.end());
    } else {
        v.scores.assign(n, 0.0f);
    }
    auto id = [&](const char* key, int fallback) {
        if (!g.has(key)) return fallback;
        const auto x = g.get_uint(key);
        require(x < n, where, std::string(key) + " is " + std::to_string(x) + ", outside the " + std::to_string(n) + "-token vocabulary");
        return int(x);
    };
    v.unk_id = id("tokenizer.ggml.unknown_token_id", 0);
    v.bos_id = id("tokenizer.ggml.bos_token_id", 1);
    v.eos_id = id("tokenizer.ggml.eos_token_id", 2);
    if (g.has("tokenizer.ggml.add_space_prefix")) v.add_dummy_prefix = g.get_bool("tokenizer.ggml.add_space_prefix");
    if (g.has("tokenizer.ggml.token_type")) {
        const auto& t = g.get_numbers("tokenizer.ggml.token_type");
        require(t.size() == n, where, "tokenizer.ggml.token_type has " + std::to_string(t.size()) + " values for " + std::to_string(n) + " tokens");
        for (double x : t) {
            require(x >= 1 && x <= 6, where, "tokenizer.ggml.token_type holds unknown type " + std::to_string(int(x)));
            v.types.push_back(PieceType(int(x)));
        }
    } else {
        for (std::size_t i = 0; i < n; ++i) v.types.push_back(infer_piece_type(v.pieces[i], int(i), v));
    }
    return v;
}

inline Tokenizer tokenizer_from_gguf(const io::GgufFile& g) { return Tokenizer(vocabulary_from_gguf(g)); }

// What vocabulary_from_gguf reads back. add_space_prefix is written only when false: readers (ours and
// llama.cpp's for the llama kind) default it to true.
inline void write_vocabulary(io::GgufWriter& g, const Vocabulary& vocab) {
    std::vector<std::int32_t> types;
    for (PieceType t : vocab.types) types.push_back(std::int32_t(t));
    g.set_string("tokenizer.ggml.model", "llama");
    g.set_string_array("tokenizer.ggml.tokens", vocab.pieces);
    g.set_f32_array("tokenizer.ggml.scores", vocab.scores);
    g.set_i32_array("tokenizer.ggml.token_type", types);
    g.set_u32("tokenizer.ggml.bos_token_id", std::uint32_t(vocab.bos_id));
    g.set_u32("tokenizer.ggml.eos_token_id", std::uint32_t(vocab.eos_id));
    g.set_u32("tokenizer.ggml.unknown_token_id", std::uint32_t(vocab.unk_id));
    g.set_bool("tokenizer.ggml.add_bos_token", true);
    g.set_bool("tokenizer.ggml.add_eos_token", false);
    if (!vocab.add_dummy_prefix) g.set_bool("tokenizer.ggml.add_space_prefix", false);
}

}  // namespace elastilm
