// Reads a SentencePiece `tokenizer.model` (a serialized ModelProto) without libprotobuf: a minimal,
// bounds-checked protobuf wire-format walk over the fields the LLaMA tokenizer needs.
//   ModelProto      1: repeated SentencePiece, 2: TrainerSpec, 3: NormalizerSpec
//   SentencePiece   1: piece (string), 2: score (float), 3: type (enum)
//   TrainerSpec     3: model_type (2 = BPE), 35: byte_fallback, 40/41/42: unk/bos/eos id
//   NormalizerSpec  3: add_dummy_prefix, 4: remove_extra_whitespaces
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "elastilm/error.hpp"
#include "elastilm/io/mapped_file.hpp"
#include "elastilm/tokenizer/vocabulary.hpp"

namespace elastilm {

namespace detail {

class ProtoReader {
public:
    ProtoReader(std::string_view bytes, const std::string& where) : p_(bytes), where_(where) {}
    bool done() const { return pos_ >= p_.size(); }

    std::uint64_t varint() {
        std::uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            require(pos_ < p_.size(), where_, "truncated varint at offset " + std::to_string(pos_));
            const auto b = std::uint8_t(p_[pos_++]);
            v |= std::uint64_t(b & 0x7f) << shift;
            if (!(b & 0x80)) return v;
        }
        throw Error(where_, "varint longer than 10 bytes at offset " + std::to_string(pos_));
    }
    // Next field: number and wire type.
    std::pair<std::uint32_t, int> key() {
        const std::uint64_t k = varint();
        require((k >> 3) > 0 && (k >> 3) < (1u << 29), where_, "invalid field number at offset " + std::to_string(pos_));
        return {std::uint32_t(k >> 3), int(k & 7)};
    }
    std::string_view bytes() {
        const std::uint64_t n = varint();
        require(n <= p_.size() - pos_, where_, "length-delimited field of " + std::to_string(n) + " bytes runs past the end");
        const auto s = p_.substr(pos_, std::size_t(n));
        pos_ += std::size_t(n);
        return s;
    }
    float fixed32_float() {
        require(p_.size() - pos_ >= 4, where_, "truncated fixed32 field");
        float f;
        std::memcpy(&f, p_.data() + pos_, 4);
        pos_ += 4;
        return f;
    }
    void skip(int wire_type) {
        switch (wire_type) {
            case 0: varint(); break;
            case 1: require(p_.size() - pos_ >= 8, where_, "truncated fixed64 field"); pos_ += 8; break;
            case 2: bytes(); break;
            case 5: require(p_.size() - pos_ >= 4, where_, "truncated fixed32 field"); pos_ += 4; break;
            default: throw Error(where_, "unsupported protobuf wire type " + std::to_string(wire_type));
        }
    }
    void expect(int wire_type, int want, const char* field) {
        require(wire_type == want, where_, std::string(field) + " has wire type " + std::to_string(wire_type));
    }

private:
    std::string_view p_;
    const std::string& where_;
    std::size_t pos_ = 0;
};

}  // namespace detail

inline Vocabulary parse_sentencepiece_model(std::string_view bytes, const std::string& where) {
    Vocabulary v;
    detail::ProtoReader model(bytes, where);
    int model_type = 1;
    while (!model.done()) {
        const auto [field, wt] = model.key();
        if (field == 1) {
            model.expect(wt, 2, "SentencePiece");
            detail::ProtoReader sp(model.bytes(), where);
            std::string piece;
            float score = 0;
            int type = 1;
            while (!sp.done()) {
                const auto [f, w] = sp.key();
                if (f == 1) { sp.expect(w, 2, "piece"); piece = std::string(sp.bytes()); }
                else if (f == 2) { sp.expect(w, 5, "score"); score = sp.fixed32_float(); }
                else if (f == 3) { sp.expect(w, 0, "type"); type = int(sp.varint()); }
                else sp.skip(w);
            }
            require(type >= 1 && type <= 6, where, "piece " + std::to_string(v.pieces.size()) + " has unknown type " + std::to_string(type));
            v.pieces.push_back(std::move(piece));
            v.scores.push_back(score);
            v.types.push_back(PieceType(type));
        } else if (field == 2) {
            model.expect(wt, 2, "TrainerSpec");
            detail::ProtoReader t(model.bytes(), where);
            while (!t.done()) {
                const auto [f, w] = t.key();
                if (w != 0) { t.skip(w); continue; }
                const auto x = std::int64_t(t.varint());
                if (f == 3) model_type = int(x);
                else if (f == 35) v.byte_fallback = x != 0;
                else if (f == 40) v.unk_id = int(x);
                else if (f == 41) v.bos_id = int(x);
                else if (f == 42) v.eos_id = int(x);
            }
        } else if (field == 3) {
            model.expect(wt, 2, "NormalizerSpec");
            detail::ProtoReader n(model.bytes(), where);
            while (!n.done()) {
                const auto [f, w] = n.key();
                if (w != 0) { n.skip(w); continue; }
                const auto x = n.varint();
                if (f == 3) v.add_dummy_prefix = x != 0;
            }
        } else {
            model.skip(wt);
        }
    }
    require(!v.pieces.empty(), where, "no vocabulary pieces (not a SentencePiece model?)");
    require(model_type == 2, where, "model_type is " + std::to_string(model_type) + ", only BPE (2) is supported");
    return v;
}

inline Vocabulary read_sentencepiece_model(const std::filesystem::path& path) {
    auto file = io::MappedFile::open(path);
    const auto b = file->bytes();
    return parse_sentencepiece_model(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()), file->path());
}

// llama2.c tokenizer.bin: int32 max_token_length, then per token float score, int32 length, bytes.
inline Vocabulary parse_llama2c_tokenizer(std::span<const std::byte> bytes, int vocab_size, const std::string& where) {
    require(vocab_size > 0, where, "vocab_size must be positive");
    io::ByteReader r(bytes, where);
    const auto max_len = r.read<std::int32_t>("max_token_length");
    require(max_len > 0 && max_len < 65536, where, "max_token_length is " + std::to_string(max_len));
    Vocabulary v;
    for (int i = 0; i < vocab_size; ++i) {
        const float score = r.read<float>("score of token " + std::to_string(i));
        const auto len = r.read<std::int32_t>("length of token " + std::to_string(i));
        require(len >= 0 && len <= max_len, where,
                "token " + std::to_string(i) + " has length " + std::to_string(len) + " (max_token_length " + std::to_string(max_len) + ")");
        // llama2.c's exporter wrote U+2581 (the SentencePiece space) as ' '; restore it.
        std::string piece;
        for (char c : r.read_bytes(std::size_t(len), "token " + std::to_string(i))) {
            if (c == ' ') piece += "\xe2\x96\x81";
            else piece += c;
        }
        v.pieces.push_back(std::move(piece));
        v.scores.push_back(score);
    }
    require(r.remaining() == 0, where, std::to_string(r.remaining()) + " unexpected bytes after " + std::to_string(vocab_size) + " tokens");
    for (int i = 0; i < vocab_size; ++i) v.types.push_back(infer_piece_type(v.pieces[i], i, v));
    return v;
}

}  // namespace elastilm
