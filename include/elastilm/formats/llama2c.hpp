// llama2.c v0 checkpoints: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size — negative
// when the classifier is not shared —, seq_len), then fp32 tensors in a fixed order. The file size must
// be exactly what the header implies.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

#include "elastilm/io/mapped_file.hpp"
#include "elastilm/model/weights.hpp"

namespace elastilm::io {

struct Llama2cHeader {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    bool shared_classifier;
};

// Parses the header and checks the size; fills `w` with views into `bytes` (fp32, out_major).
inline Llama2cHeader parse_llama2c(std::span<const std::byte> bytes, const std::string& where, ModelWeights& w) {
    ByteReader r(bytes, where);
    Llama2cHeader h{};
    int* fields[] = {&h.dim, &h.hidden_dim, &h.n_layers, &h.n_heads, &h.n_kv_heads, &h.vocab_size, &h.seq_len};
    const char* names[] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; ++i) *fields[i] = r.read<std::int32_t>(names[i]);
    h.shared_classifier = h.vocab_size > 0;
    if (h.vocab_size < 0) h.vocab_size = -h.vocab_size;
    for (int i = 0; i < 7; ++i)
        require(*fields[i] > 0 && *fields[i] <= (1 << 20), where,
                std::string("header field ") + names[i] + " is " + std::to_string(*fields[i]) + " (not a llama2.c checkpoint?)");
    require(h.dim % h.n_heads == 0 && h.n_heads % h.n_kv_heads == 0, where, "dim, n_heads and n_kv_heads are inconsistent");
    const std::size_t dim = h.dim, hidden = h.hidden_dim, L = h.n_layers, V = h.vocab_size, hs = dim / h.n_heads;
    const std::size_t kv = hs * h.n_kv_heads;
    const std::size_t floats = V * dim + L * (2 * dim + 2 * dim * dim + 2 * dim * kv + 3 * dim * hidden) + dim +
                               std::size_t(h.seq_len) * hs + (h.shared_classifier ? 0 : V * dim);
    const std::size_t expected = 28 + floats * 4;
    require(bytes.size() == expected, where,
            "is " + std::to_string(bytes.size()) + " bytes, the header implies " + std::to_string(expected) +
                " (truncated or not a llama2.c v0 checkpoint)");

    const auto* p = reinterpret_cast<const float*>(bytes.data() + 28);
    auto take = [&](std::size_t n) { const float* q = p; p += n; return q; };
    auto matrix = [&](int rows, int cols) {
        return MatrixView{take(std::size_t(rows) * cols), DType::f32, Layout::out_major, rows, cols, std::size_t(cols)};
    };
    const int q_dim = h.dim, kv_dim = int(kv);
    w.hparams = {h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, int(hs), h.vocab_size, h.seq_len, 0, 0};
    w.rope_pairing = RopePairing::adjacent;
    w.embedding = matrix(h.vocab_size, h.dim);
    w.layers.resize(L);
    for (auto& l : w.layers) { const float* v = take(dim); l.attn_norm.assign(v, v + dim); }
    for (auto& l : w.layers) l.wq = matrix(q_dim, h.dim);
    for (auto& l : w.layers) l.wk = matrix(kv_dim, h.dim);
    for (auto& l : w.layers) l.wv = matrix(kv_dim, h.dim);
    for (auto& l : w.layers) l.wo = matrix(h.dim, q_dim);
    for (auto& l : w.layers) { const float* v = take(dim); l.ffn_norm.assign(v, v + dim); }
    for (auto& l : w.layers) l.w_gate = matrix(h.hidden_dim, h.dim);
    for (auto& l : w.layers) l.w_down = matrix(h.dim, h.hidden_dim);
    for (auto& l : w.layers) l.w_up = matrix(h.hidden_dim, h.dim);
    const float* fn = take(dim);
    w.final_norm.assign(fn, fn + dim);
    take(std::size_t(h.seq_len) * hs);  // freq_cis real + imag: RoPE is recomputed from theta
    w.lm_head = h.shared_classifier ? w.embedding : matrix(h.vocab_size, h.dim);
    return h;
}

}  // namespace elastilm::io
