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
#include "elastilm/model/variant_table.hpp"
#include "elastilm/model/weights.hpp"
#include "elastilm/simd/f16.hpp"
#include "elastilm/simd/quant_blocks.hpp"
#include "elastilm/simd/quant_interleaved.hpp"
#include "elastilm/tokenizer/gguf_keys.hpp"

namespace elastilm::io {

struct GgufExportOptions {
    std::string name = "elastilm";
    // Store Wo and W_down input-major so every ratio's columns are one contiguous prefix. Such a file
    // is for elastilm only: llama.cpp expects them output-major.
    bool outputs_in_major = false;
    // Q8_0 or Q4_0: quantize the layer matrices to this block format (anything else: keep their dtype).
    // Block formats store every matrix output-major, blocks along the inputs, so a ratio reads a prefix
    // of whole blocks in each row — provided every input width a ratio slices is a multiple of 32:
    // a matrix whose slices are not (listed in q_dim_slices for Wo, hidden_slices for W_down) keeps its
    // dtype. The embedding and LM head are quantized to Q8_0 (they are never sliced; the LM head's
    // logits are the most sensitive to error, as llama.cpp keeps its output tensor above Q4_0).
    DType quantize = DType::f32;
    std::vector<int> q_dim_slices = {}, hidden_slices = {};
};

// The input widths of Wo and W_down that Cfg's ratios read, for GgufExportOptions.
template <ModelConfig Cfg>
void set_ratio_slices(GgufExportOptions& opt) {
    opt.q_dim_slices.clear();
    opt.hidden_slices.clear();
    for (const WidthInfo& r : width_table<Cfg>) {
        opt.q_dim_slices.push_back(r.heads * Cfg::head_dim);
        opt.hidden_slices.push_back(r.hidden);
    }
}

// What export_gguf wrote: the tensors left in their dtype although a block format was asked for.
struct GgufExportSummary {
    std::vector<std::string> kept;
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

// Row r of W (either layout, any dtype) as fp32.
inline void row_as_f32(float* out, const MatrixView& W, int r) {
    const auto* base = static_cast<const std::byte*>(W.data);
    if (is_quantized(W.dtype)) {
        thread_local std::vector<std::byte> blocks;  // the row in GGUF's block order
        blocks.resize(bytes_for(W.dtype, W.ld));
        interleaved::gguf_row(blocks.data(), W, r);
        dequantize_row(out, W.dtype, blocks.data(), W.cols);
        return;
    }
    const std::size_t es = dtype_size(W.dtype);
    for (int j = 0; j < W.cols; ++j) {
        const std::size_t k = W.offset(r, j);
        if (W.dtype == DType::f32) std::memcpy(&out[j], base + k * es, 4);
        else {
            f16_bits h;
            std::memcpy(&h, base + k * es, 2);
            out[j] = f16_to_f32(h);
        }
    }
}

// Streams W(i, j) to the file as [rows, cols] (or [cols, rows] when transposed), rows taken in
// `row_order` (empty = natural), quantized to `to` when that is a block format.
inline GgufWriter::Filler matrix_filler(const MatrixView& W, std::vector<int> row_order, bool transposed, DType to) {
    return [W, row_order = std::move(row_order), transposed, to](std::FILE* f) {
        if (is_quantized(to) || is_quantized(W.dtype)) {  // out_major rows, through fp32 unless copied as is
            std::vector<float> row(W.cols);
            std::vector<std::byte> line(bytes_for(to, std::size_t(W.cols)));
            for (int a = 0; a < W.rows; ++a) {
                const int r = row_order.empty() ? a : row_order[a];
                if (W.dtype == to) {  // the row's first blocks as they are, in GGUF's order
                    std::vector<std::byte> blocks(bytes_for(to, W.ld));
                    interleaved::gguf_row(blocks.data(), W, r);
                    std::fwrite(blocks.data(), 1, line.size(), f);
                    continue;
                }
                row_as_f32(row.data(), W, r);
                if (is_quantized(to)) quantize_row(line.data(), to, row.data(), W.cols);
                else if (to == DType::f32) std::memcpy(line.data(), row.data(), line.size());
                else
                    for (int j = 0; j < W.cols; ++j) {
                        const f16_bits h = f32_to_f16(row[j]);
                        std::memcpy(line.data() + 2 * j, &h, 2);
                    }
                std::fwrite(line.data(), 1, line.size(), f);
            }
            return;
        }
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

inline bool whole_blocks(int n) { return n % kQuantBlock == 0; }
inline bool all_whole_blocks(const std::vector<int>& ns) {
    for (int n : ns)
        if (!whole_blocks(n)) return false;
    return true;
}

}  // namespace detail

inline GgufExportSummary export_gguf(const ModelWeights& w, const Vocabulary* vocab, const std::filesystem::path& path,
                                     const GgufExportOptions& opt = {}) {
    const FileHyperParams& h = w.hparams;
    const bool quantize = is_quantized(opt.quantize);
    const bool f16 = w.embedding.dtype == DType::f16;
    GgufExportSummary summary;
    GgufWriter g;
    g.set_string("general.architecture", "llama");
    g.set_string("general.name", opt.name);
    // llama.cpp's file type ids: 0 all F32, 1 mostly F16, 2 mostly Q4_0, 7 mostly Q8_0.
    g.set_u32("general.file_type", opt.quantize == DType::q4_0 ? 2 : opt.quantize == DType::q8_0 ? 7 : f16 ? 1 : 0);
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
    // `to`: the dtype asked for this matrix; a block format when its inputs are not whole blocks keeps
    // the matrix's dtype (a block-format source is widened to F16 then).
    auto matrix = [&](const std::string& name, const MatrixView& m, const std::vector<int>& order = {}, bool transposed = false,
                      DType to = DType::f32, bool slices_whole = true) {
        if (!is_quantized(to)) to = m.dtype;
        if (is_quantized(to) && !(detail::whole_blocks(m.cols) && slices_whole)) {
            if (quantize) summary.kept.push_back(name);
            to = m.dtype;
        }
        if (is_quantized(to) || is_quantized(m.dtype)) transposed = false;  // blocks run along the inputs
        const std::vector<std::int64_t> shape = transposed ? std::vector<std::int64_t>{m.cols, m.rows}
                                                           : std::vector<std::int64_t>{m.rows, m.cols};
        g.add_tensor(name, shape, to, detail::matrix_filler(m, order, transposed, to));
    };
    auto vector = [&](const std::string& name, const std::vector<float>& v) {
        g.add_tensor(name, {std::int64_t(v.size())}, DType::f32, v.data());
    };
    const DType head_type = quantize ? DType::q8_0 : DType::f32;
    matrix("token_embd.weight", w.embedding, {}, false, head_type);
    for (int l = 0; l < h.n_layers; ++l) {
        const LayerWeights& L = w.layers[l];
        const std::string p = "blk." + std::to_string(l) + ".";
        for (const LayerNorm& n : kLayerNorms) vector(p + n.gguf, L.*n.field);
        for (const LayerMatrix& m : kLayerMatrices) {
            const std::vector<int>& order = m.field == &LayerWeights::wq ? q_order : m.field == &LayerWeights::wk ? k_order : no_order;
            const bool slices_whole = m.field == &LayerWeights::wo       ? detail::all_whole_blocks(opt.q_dim_slices)
                                      : m.field == &LayerWeights::w_down ? detail::all_whole_blocks(opt.hidden_slices)
                                                                         : true;
            matrix(p + m.gguf, L.*m.field, order, m.output && opt.outputs_in_major, opt.quantize, slices_whole);
        }
    }
    vector("output_norm.weight", w.final_norm);
    if (w.lm_head.data != w.embedding.data) matrix("output.weight", w.lm_head, {}, false, head_type);
    g.write(path);
    return summary;
}

}  // namespace elastilm::io
