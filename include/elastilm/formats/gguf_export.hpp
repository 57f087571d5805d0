// Writes a loaded model as a LLaMA GGUF that llama.cpp and elastilm both read: llama.* hyper-parameters,
// the tokenizer.ggml.* vocabulary, F32 norms, matrices in the model's dtype, and — for elastic models —
// the elastilm.* metadata (formats/elastic_keys.hpp).
//
// Hugging Face weights rotate head halves; GGUF rotates adjacent pairs. As llama.cpp's converter does,
// Q and K rows are permuted on the way out (GGUF row h·d + 2i + s = HF row h·d + s·d/2 + i), so both
// conventions compute the same attention.
#pragma once

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "elastilm/formats/elastic_keys.hpp"
#include "elastilm/io/gguf_writer.hpp"
#include "elastilm/model/weights.hpp"
#include "elastilm/tokenizer/gguf_keys.hpp"

namespace elastilm::io {

struct GgufExportOptions {
    std::string name = "elastilm";
    // Store Wo and W_down input-major so every ratio's columns are one contiguous prefix. Such a file
    // is for elastilm only: llama.cpp expects them output-major.
    bool outputs_in_major = false;
};

namespace detail {

// Row permutation taking HF's half-rotation Q/K layout to GGUF's adjacent-pair layout.
inline std::vector<int> rope_rows_to_adjacent(int n_heads, int head_dim) {
    std::vector<int> src(std::size_t(n_heads) * head_dim);
    for (int h = 0; h < n_heads; ++h)
        for (int i = 0; i < head_dim / 2; ++i)
            for (int s = 0; s < 2; ++s) src[h * head_dim + 2 * i + s] = h * head_dim + s * (head_dim / 2) + i;
    return src;
}

// Streams W(i, j) to the file as [rows, cols] (or [cols, rows] when transposed), rows taken in
// `row_order` (empty = natural).
inline GgufWriter::Filler matrix_filler(const MatrixView& W, std::vector<int> row_order, bool transposed) {
    return [W, row_order = std::move(row_order), transposed](std::FILE* f) {
        const std::size_t es = dtype_size(W.dtype);
        const auto* base = static_cast<const std::byte*>(W.data);
        auto element = [&](int i, int j) { return base + W.offset(i, j) * es; };
        const int outer = transposed ? W.cols : W.rows, inner = transposed ? W.rows : W.cols;
        std::vector<std::byte> line(std::size_t(inner) * es);
        for (int a = 0; a < outer; ++a) {
            const int r = transposed ? a : (row_order.empty() ? a : row_order[a]);
            const bool contiguous = !transposed && W.layout == Layout::out_major;
            if (contiguous) {
                std::fwrite(element(r, 0), 1, line.size(), f);
                continue;
            }
            for (int b = 0; b < inner; ++b)
                std::memcpy(line.data() + std::size_t(b) * es, transposed ? element(b, a) : element(r, b), es);
            std::fwrite(line.data(), 1, line.size(), f);
        }
    };
}

}  // namespace detail

inline void export_gguf(const ModelWeights& w, const Vocabulary* vocab, const std::filesystem::path& path,
                        const GgufExportOptions& opt = {}) {
    const FileHyperParams& h = w.hparams;
    const bool f16 = w.embedding.dtype == DType::f16;
    GgufWriter g;
    g.set_string("general.architecture", "llama");
    g.set_string("general.name", opt.name);
    g.set_u32("general.file_type", f16 ? 1 : 0);
    g.set_u32("llama.context_length", std::uint32_t(h.context > 0 ? h.context : 2048));
    g.set_u32("llama.embedding_length", std::uint32_t(h.dim));
    g.set_u32("llama.block_count", std::uint32_t(h.n_layers));
    g.set_u32("llama.feed_forward_length", std::uint32_t(h.hidden_dim));
    g.set_u32("llama.rope.dimension_count", std::uint32_t(h.head_dim));
    g.set_u32("llama.attention.head_count", std::uint32_t(h.n_heads));
    g.set_u32("llama.attention.head_count_kv", std::uint32_t(h.n_kv_heads));
    if (h.head_dim * h.n_heads != h.dim) {
        g.set_u32("llama.attention.key_length", std::uint32_t(h.head_dim));
        g.set_u32("llama.attention.value_length", std::uint32_t(h.head_dim));
    }
    g.set_f32("llama.attention.layer_norm_rms_epsilon", h.norm_eps > 0 ? h.norm_eps : 1e-5f);
    g.set_f32("llama.rope.freq_base", h.rope_theta > 0 ? h.rope_theta : 10000.0f);
    g.set_u32("llama.vocab_size", std::uint32_t(h.vocab_size));
    if (vocab) write_vocabulary(g, *vocab);
    if (w.is_elastic) write_elastic_metadata(g, w.elastic);
    write_output_layout(g, opt.outputs_in_major ? Layout::in_major : Layout::out_major);

    const bool halves = w.rope_pairing == RopePairing::halves;
    const auto q_order = halves ? detail::rope_rows_to_adjacent(h.n_heads, h.head_dim) : std::vector<int>{};
    const auto k_order = halves ? detail::rope_rows_to_adjacent(h.n_kv_heads, h.head_dim) : std::vector<int>{};
    const std::vector<int> no_order;
    auto matrix = [&](const std::string& name, const MatrixView& m, const std::vector<int>& order = {}, bool transposed = false) {
        const std::vector<std::int64_t> shape = transposed ? std::vector<std::int64_t>{m.cols, m.rows}
                                                           : std::vector<std::int64_t>{m.rows, m.cols};
        g.add_tensor(name, shape, m.dtype, detail::matrix_filler(m, order, transposed));
    };
    auto vector = [&](const std::string& name, const std::vector<float>& v) {
        g.add_tensor(name, {std::int64_t(v.size())}, DType::f32, v.data());
    };
    matrix("token_embd.weight", w.embedding);
    for (int l = 0; l < h.n_layers; ++l) {
        const LayerWeights& L = w.layers[l];
        const std::string p = "blk." + std::to_string(l) + ".";
        for (const LayerNorm& n : kLayerNorms) vector(p + n.gguf, L.*n.field);
        for (const LayerMatrix& m : kLayerMatrices) {
            const std::vector<int>& order = m.field == &LayerWeights::wq ? q_order : m.field == &LayerWeights::wk ? k_order : no_order;
            matrix(p + m.gguf, L.*m.field, order, m.output && opt.outputs_in_major);
        }
    }
    vector("output_norm.weight", w.final_norm);
    if (w.lm_head.data != w.embedding.data) matrix("output.weight", w.lm_head);
    g.write(path);
}

}  // namespace elastilm::io
