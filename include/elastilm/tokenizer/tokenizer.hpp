// The LLaMA SentencePiece-BPE tokenizer.
//
// encode: spaces become U+2581 "▁" and one is prepended (add_dummy_prefix); the text is split into
// UTF-8 characters; then, repeatedly, the adjacent pair whose concatenation is a vocabulary piece of the
// highest score is merged (ties: the leftmost pair) — SentencePiece's BPE rule. A symbol left that is
// not a piece is emitted as its UTF-8 bytes (<0xXX> pieces) when the model has byte fallback.
// A priority queue over candidate pairs and a linked list of symbols make it O(n log n).
#pragma once

#include <array>
#include <filesystem>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "elastilm/error.hpp"
#include "elastilm/tokenizer/sentencepiece_model.hpp"
#include "elastilm/tokenizer/vocabulary.hpp"

namespace elastilm {

class Tokenizer {
public:
    explicit Tokenizer(Vocabulary v) : v_(std::move(v)) {
        require(v_.pieces.size() == v_.scores.size() && v_.pieces.size() == v_.types.size(), "Tokenizer",
                "pieces, scores and types differ in length");
        const int n = int(v_.pieces.size());
        for (int id : {v_.unk_id, v_.bos_id, v_.eos_id})
            require(id >= 0 && id < n, "Tokenizer", "special token id " + std::to_string(id) + " outside the vocabulary");
        byte_ids_.fill(-1);
        for (int i = 0; i < n; ++i) {
            const PieceType t = v_.types[i];
            if (t == PieceType::normal || t == PieceType::user_defined || t == PieceType::unused) mergeable_.emplace(v_.pieces[i], i);
            if (t == PieceType::byte) {
                const std::string& p = v_.pieces[i];
                require(p.size() == 6 && p.starts_with("<0x"), "Tokenizer", "byte piece " + std::to_string(i) + " is not <0xXX>");
                byte_ids_[std::stoi(p.substr(3, 2), nullptr, 16)] = i;
            }
        }
    }

    // The piece index holds views into the vocabulary: moving keeps them valid, copying would not.
    Tokenizer(Tokenizer&&) = default;
    Tokenizer& operator=(Tokenizer&&) = default;
    Tokenizer(const Tokenizer&) = delete;
    Tokenizer& operator=(const Tokenizer&) = delete;

    static Tokenizer from_model_file(const std::filesystem::path& p) { return Tokenizer(read_sentencepiece_model(p)); }
    static Tokenizer from_llama2c_file(const std::filesystem::path& p, int vocab_size) {
        auto f = io::MappedFile::open(p);
        return Tokenizer(parse_llama2c_tokenizer(f->bytes(), vocab_size, f->path()));
    }

    int vocab_size() const { return int(v_.pieces.size()); }
    int unk_id() const { return v_.unk_id; }
    int bos_id() const { return v_.bos_id; }
    int eos_id() const { return v_.eos_id; }
    const Vocabulary& vocabulary() const { return v_; }
    const std::string& piece(int id) const { check_id(id); return v_.pieces[id]; }

    std::vector<int> encode(std::string_view text, bool add_bos) const {
        std::vector<int> ids;
        if (add_bos) ids.push_back(v_.bos_id);
        if (text.empty()) return ids;
        std::string norm;
        norm.reserve(text.size() + 8);
        if (v_.add_dummy_prefix) norm += kSpace;
        for (std::size_t i = 0; i < text.size();) {
            const std::size_t n = valid_utf8_length(text.substr(i));
            if (n == 0) { norm += kReplacement; ++i; continue; }  // malformed: U+FFFD, as SentencePiece does
            if (text[i] == ' ') norm += kSpace;
            else norm.append(text.substr(i, n));
            i += n;
        }
        bpe(norm, ids);
        return ids;
    }

    // The text of one token as it appears after `prev` in a stream (BOS strips the leading space).
    std::string decode_piece(int prev, int id) const {
        check_id(id);
        const PieceType t = v_.types[id];
        if (t == PieceType::control || t == PieceType::unknown) return t == PieceType::unknown ? " \xe2\x81\x87 " : "";
        if (t == PieceType::byte) return std::string(1, char(std::stoi(v_.pieces[id].substr(3, 2), nullptr, 16)));
        std::string out;
        std::string_view p = v_.pieces[id];
        for (std::size_t i = 0; i < p.size();) {
            if (p.substr(i, 3) == kSpace) { out += ' '; i += 3; }
            else out += p[i++];
        }
        if ((prev == v_.bos_id || prev < 0) && v_.add_dummy_prefix && !out.empty() && out[0] == ' ') out.erase(0, 1);
        return out;
    }

    std::string decode(std::span<const int> ids) const {
        std::string out;
        int prev = -1;
        for (int id : ids) {
            out += decode_piece(prev, id);
            prev = id;
        }
        return out;
    }

private:
    static constexpr std::string_view kSpace = "\xe2\x96\x81";
    static constexpr std::string_view kReplacement = "\xef\xbf\xbd";

    void check_id(int id) const {
        require(id >= 0 && id < vocab_size(), "Tokenizer",
                "token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(vocab_size()) + ")");
    }

    struct Symbol {
        int prev, next;
        std::size_t begin, size;  // byte range in the normalised text; size 0 = merged away
    };
    struct Pair {
        float score;
        int left, right;
        std::size_t size;  // merged byte length, to detect stale entries
        bool operator<(const Pair& o) const { return score < o.score || (score == o.score && left > o.left); }
    };

    void bpe(const std::string& text, std::vector<int>& ids) const {
        std::vector<Symbol> sym;
        for (std::size_t i = 0; i < text.size();) {
            std::size_t n = utf8_length(static_cast<unsigned char>(text[i]));
            n = std::min(n, text.size() - i);
            sym.push_back({int(sym.size()) - 1, int(sym.size()) + 1, i, n});
            i += n;
        }
        sym.back().next = -1;
        std::priority_queue<Pair> agenda;
        auto consider = [&](int l, int r) {
            if (l < 0 || r < 0) return;
            const std::string_view merged(text.data() + sym[l].begin, sym[l].size + sym[r].size);
            if (auto it = mergeable_.find(merged); it != mergeable_.end())
                agenda.push({v_.scores[it->second], l, r, merged.size()});
        };
        for (std::size_t i = 1; i < sym.size(); ++i) consider(int(i) - 1, int(i));
        while (!agenda.empty()) {
            const Pair p = agenda.top();
            agenda.pop();
            Symbol& l = sym[p.left];
            Symbol& r = sym[p.right];
            if (l.size == 0 || r.size == 0 || l.next != p.right || l.size + r.size != p.size) continue;  // stale
            l.size += r.size;
            r.size = 0;
            l.next = r.next;
            if (r.next >= 0) sym[r.next].prev = p.left;
            consider(l.prev, p.left);
            consider(p.left, l.next);
        }
        for (int i = 0; i >= 0 && i < int(sym.size()); i = sym[i].next) {
            const std::string_view s(text.data() + sym[i].begin, sym[i].size);
            if (auto it = mergeable_.find(s); it != mergeable_.end()) { ids.push_back(it->second); continue; }
            if (v_.byte_fallback) {
                for (unsigned char c : s) ids.push_back(byte_ids_[c] >= 0 ? byte_ids_[c] : v_.unk_id);
            } else {
                ids.push_back(v_.unk_id);
            }
        }
    }

    // Length of the well-formed UTF-8 character starting `s`, or 0 if it is malformed.
    static std::size_t valid_utf8_length(std::string_view s) {
        const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
        const std::size_t n = utf8_length(b(0));
        if (n == 1) return b(0) < 0x80 ? 1 : 0;
        if (s.size() < n) return 0;
        for (std::size_t i = 1; i < n; ++i)
            if ((b(i) & 0xc0) != 0x80) return 0;
        // Overlong forms, surrogates and values past U+10FFFF are malformed too.
        const std::uint32_t cp = n == 2 ? ((b(0) & 0x1fu) << 6 | (b(1) & 0x3fu))
                               : n == 3 ? ((b(0) & 0x0fu) << 12 | (b(1) & 0x3fu) << 6 | (b(2) & 0x3fu))
                                        : ((b(0) & 0x07u) << 18 | (b(1) & 0x3fu) << 12 | (b(2) & 0x3fu) << 6 | (b(3) & 0x3fu));
        const std::uint32_t min = n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        return n;
    }

    static std::size_t utf8_length(unsigned char lead) {
        if (lead < 0x80) return 1;
        if ((lead >> 5) == 0x6) return 2;
        if ((lead >> 4) == 0xe) return 3;
        if ((lead >> 3) == 0x1e) return 4;
        return 1;  // invalid lead byte: a symbol of its own, emitted through byte fallback
    }

    Vocabulary v_;
    std::unordered_map<std::string_view, int> mergeable_;
    std::array<int, 256> byte_ids_{};
};

}  // namespace elastilm
