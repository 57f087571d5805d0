// A SentencePiece vocabulary: pieces, scores and types, from whichever file carries it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace elastilm {

// SentencePiece's piece types (sentencepiece_model.proto numbering).
enum class PieceType : std::uint8_t { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

struct Vocabulary {
    std::vector<std::string> pieces;
    std::vector<float> scores;
    std::vector<PieceType> types;
    bool add_dummy_prefix = true;
    bool byte_fallback = true;
    int unk_id = 0, bos_id = 1, eos_id = 2;
};

// Types for files that carry none (llama2.c tokenizer.bin): <unk>, <s>, </s> and <0xXX> by name.
inline PieceType infer_piece_type(const std::string& piece, int id, const Vocabulary& v) {
    if (id == v.unk_id) return PieceType::unknown;
    if (id == v.bos_id || id == v.eos_id) return PieceType::control;
    if (piece.size() == 6 && piece.starts_with("<0x") && piece.back() == '>') return PieceType::byte;
    return PieceType::normal;
}

}  // namespace elastilm
