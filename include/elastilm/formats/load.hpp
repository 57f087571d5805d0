// Loading a model file into ModelWeights: GGUF, Hugging Face (config.json + model.safetensors) or a
// llama2.c .bin, detected from the file. Weights stay in the memory mapping (or its copy on huge pages,
// io::Residency); only norms are converted.
//
//   load_weights(path)      any LLaMA file, checked for internal consistency (tool inspection)
//   check_against<Cfg>(w)   the file's hyper-parameters against a compiled config, field by field
//   load_model<Cfg>(path)   both
#pragma once

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "elastilm/formats/elastic_keys.hpp"
#include "elastilm/io/gguf.hpp"
#include "elastilm/formats/hf_config.hpp"
#include "elastilm/formats/llama2c.hpp"
#include "elastilm/io/safetensors.hpp"
#include "elastilm/formats/registry.hpp"
#include "elastilm/model/weights.hpp"
#include "elastilm/simd/bf16.hpp"
#include "elastilm/simd/f16.hpp"
#include "elastilm/simd/quant_interleaved.hpp"

namespace elastilm {

namespace detail {

using io::shape_string;

// Buffers a loader made (BF16 matrices narrowed to F16) kept alive with the file mapping.
struct LoadedBuffers {
    std::shared_ptr<const void> file;
    std::vector<std::vector<f16_bits>> converted;
};

// A BF16 tensor's elements as F16. BF16 has fp32's exponent range: a finite value beyond fp16's ±65504
// cannot be kept, and the tensor is refused rather than silently clipped.
inline std::vector<f16_bits> bf16_to_f16(const std::byte* data, std::size_t n, const std::string& where, const std::string& name) {
    std::vector<f16_bits> out(n);
    for (std::size_t i = 0; i < n; ++i) {
        bf16_bits b;
        std::memcpy(&b, data + 2 * i, 2);
        const float v = bf16_to_f32(b);
        require(std::isfinite(v) && std::fabs(v) <= 65504.0f, where,
                "tensor " + name + " (BF16) holds " + std::to_string(v) + " at element " + std::to_string(i) +
                    ", outside the F16 range elastilm computes in");
        out[i] = f32_to_f16(v);
    }
    return out;
}

// Looks tensors up by name in either container and turns them into views, checking shapes.
template <class File>
struct TensorSource {
    const File& file;
    std::string where;
    std::shared_ptr<LoadedBuffers> buffers = std::make_shared<LoadedBuffers>();

    const auto& get(const std::string& name) const {
        const auto* t = file.find(name);
        require(t != nullptr, where, "tensor " + name + " is missing");
        return *t;
    }
    // A matrix with `rows` outputs and `cols` inputs, stored [rows, cols] (out_major) or [cols, rows].
    // Block-quantized matrices are always [rows, cols]: their blocks run along the inputs.
    MatrixView matrix(const std::string& name, int rows, int cols, Layout layout = Layout::out_major) const {
        const auto& t = get(name);
        if (is_quantized(t.dtype)) layout = Layout::out_major;
        const std::vector<std::int64_t> want = layout == Layout::out_major ? std::vector<std::int64_t>{rows, cols}
                                                                           : std::vector<std::int64_t>{cols, rows};
        require(t.shape == want, where,
                "tensor " + name + " has shape " + shape_string(t.shape) + ", expected " + shape_string(want));
        const std::size_t ld = std::size_t(layout == Layout::out_major ? cols : rows);
        io::check_block_scales(name, t.dtype, t.data, t.nbytes, where);
        if (t.dtype == DType::bf16) {
            auto& h = buffers->converted.emplace_back(bf16_to_f16(t.data, std::size_t(rows) * cols, where, name));
            return MatrixView{h.data(), DType::f16, layout, rows, cols, ld};
        }
        return MatrixView{t.data, t.dtype, layout, rows, cols, ld};
    }
    std::vector<float> vector(const std::string& name, int n) const {
        const auto& t = get(name);
        require(t.shape == std::vector<std::int64_t>{n}, where,
                "tensor " + name + " has shape " + shape_string(t.shape) + ", expected [" + std::to_string(n) + "]");
        require(!is_quantized(t.dtype), where, "tensor " + name + " is " + std::string(to_string(t.dtype)) + ", a vector must be F32, F16 or BF16");
        const std::vector<float> out = t.to_floats();
        for (float v : out) require(std::isfinite(v), where, "tensor " + name + " holds a NaN or infinity");
        return out;
    }
    // Every tensor of layer `l`, named by `prefix` + the GGUF or Hugging Face name from the layer table.
    LayerWeights layer(const std::string& prefix, bool hf_names, const FileHyperParams& h, Layout outputs) const {
        LayerWeights L;
        for (const LayerNorm& n : kLayerNorms) L.*n.field = vector(prefix + (hf_names ? n.hf : n.gguf), h.dim);
        for (const LayerMatrix& m : kLayerMatrices)
            L.*m.field = matrix(prefix + (hf_names ? m.hf : m.gguf), extent(m.rows, h), extent(m.cols, h),
                                m.output ? outputs : Layout::out_major);
        return L;
    }
};

// Where this build's decode kernel reads interleaved blocks (simd/quant_interleaved.hpp) and the file
// is a copy in this process's memory (--no-mmap), the layers' quantized matrices and a separate output
// head are rearranged in place into that order, a row at a time. The embedding keeps GGUF's order (it is
// read by rows, not multiplied), and so does an output head that is the embedding. A mapping is never
// written: mapped models decode with the GGUF-order kernel.
inline void interleave_for_decode(ModelWeights& w, const io::GgufFile& g) {
    if (!interleaved::kInterleavedDecode || g.file() == nullptr || !interleaved::interleave_on_load_setting().load()) return;
    std::vector<MatrixView*> matrices;
    for (LayerWeights& L : w.layers)
        for (const LayerMatrix& m : kLayerMatrices) matrices.push_back(&(L.*m.field));
    if (w.lm_head.data != w.embedding.data) matrices.push_back(&w.lm_head);
    std::erase_if(matrices, [](const MatrixView* W) { return !is_quantized(W->dtype) || W->order == BlockOrder::interleaved; });
    if (matrices.empty()) return;
    const std::byte* file = g.file()->bytes().data();
    const bool done = g.file()->rewrite([&](std::byte* writable) {
        for (MatrixView* W : matrices) {
            std::byte* at = writable + (static_cast<const std::byte*>(W->data) - file);
            interleaved::interleave_rows(at, W->dtype, std::size_t(W->rows), int(W->ld / kQuantBlock));
        }
    });
    if (done)
        for (MatrixView* W : matrices) W->order = BlockOrder::interleaved;
}

inline ModelWeights load_gguf(const io::GgufFile& g) {
    const std::string& where = g.where();
    if (g.has("general.architecture")) {
        const std::string& arch = g.get_string("general.architecture");
        require(arch == "llama", where, "architecture is " + arch + ", only llama is supported");
    }
    ModelWeights w;
    w.source = where;
    w.format = "gguf";
    FileHyperParams& h = w.hparams;
    h.dim = int(g.get_uint("llama.embedding_length"));
    h.hidden_dim = int(g.get_uint("llama.feed_forward_length"));
    h.n_layers = int(g.get_uint("llama.block_count"));
    h.n_heads = int(g.get_uint("llama.attention.head_count"));
    h.n_kv_heads = g.has("llama.attention.head_count_kv") ? int(g.get_uint("llama.attention.head_count_kv")) : h.n_heads;
    require(h.dim > 0 && h.n_heads > 0 && h.n_kv_heads > 0 && h.n_layers > 0 && h.n_layers < 100000, where,
            "hyper-parameters must be positive");
    h.head_dim = g.has("llama.attention.key_length") ? int(g.get_uint("llama.attention.key_length")) : h.dim / h.n_heads;
    h.context = g.has("llama.context_length") ? int(g.get_uint("llama.context_length")) : 0;
    h.rope_theta = g.has("llama.rope.freq_base") ? float(g.get_float("llama.rope.freq_base")) : 10000.0f;
    h.norm_eps = g.has("llama.attention.layer_norm_rms_epsilon") ? float(g.get_float("llama.attention.layer_norm_rms_epsilon")) : 0;
    const auto* emb = g.find("token_embd.weight");
    require(emb && emb->shape.size() == 2, where, "tensor token_embd.weight is missing or not a matrix");
    h.vocab_size = int(emb->shape[0]);
    w.rope_pairing = RopePairing::adjacent;  // GGUF stores Q/K rows for adjacent-pair rotation

    // Elastic files may store Wo and W_down input-major (see model/elastic_metadata.hpp).
    const Layout out_layout = read_output_layout(g);
    const TensorSource<io::GgufFile> src{g, where};
    w.embedding = src.matrix("token_embd.weight", h.vocab_size, h.dim);
    for (int l = 0; l < h.n_layers; ++l) w.layers.push_back(src.layer("blk." + std::to_string(l) + ".", false, h, out_layout));
    w.final_norm = src.vector("output_norm.weight", h.dim);
    w.lm_head = g.find("output.weight") ? src.matrix("output.weight", h.vocab_size, h.dim) : w.embedding;
    src.buffers->file = g.keepalive();

    if (auto e = read_elastic_metadata(g)) {
        w.is_elastic = true;
        w.elastic = std::move(*e);
    }
    w.keepalive = src.buffers;
    interleave_for_decode(w, g);
    return w;
}

inline ModelWeights load_gguf(const std::filesystem::path& path, io::Residency residency = io::Residency::mapped) {
    return load_gguf(io::GgufFile::open(path, residency));
}

inline ModelWeights load_safetensors(const std::filesystem::path& path, io::Residency residency = io::Residency::mapped) {
    const auto dir = std::filesystem::is_directory(path) ? path : path.parent_path();
    const auto file = std::filesystem::is_directory(path) ? path / "model.safetensors" : path;
    const io::HfConfig cfg = io::read_hf_config(dir / "config.json");
    const io::SafetensorsFile st = io::SafetensorsFile::open(file, residency);
    ModelWeights w;
    w.source = st.where();
    w.format = "safetensors";
    w.hparams = cfg.hparams;
    w.rope_pairing = RopePairing::halves;  // Hugging Face rotates the two halves of each head
    const FileHyperParams& h = w.hparams;
    const TensorSource<io::SafetensorsFile> src{st, st.where()};
    w.embedding = src.matrix("model.embed_tokens.weight", h.vocab_size, h.dim);
    for (int l = 0; l < h.n_layers; ++l)
        w.layers.push_back(src.layer("model.layers." + std::to_string(l) + ".", true, h, Layout::out_major));
    w.final_norm = src.vector("model.norm.weight", h.dim);
    if (st.find("lm_head.weight")) w.lm_head = src.matrix("lm_head.weight", h.vocab_size, h.dim);
    else {
        require(cfg.tied_embeddings, st.where(), "tensor lm_head.weight is missing and config.json does not tie embeddings");
        w.lm_head = w.embedding;
    }
    src.buffers->file = st.keepalive();
    w.keepalive = src.buffers;
    return w;
}

inline ModelWeights load_llama2c(const std::filesystem::path& path, io::Residency residency = io::Residency::mapped) {
    auto file = io::MappedFile::open(path, residency);
    ModelWeights w;
    w.source = file->path();
    w.format = "llama2c";
    io::parse_llama2c(file->bytes(), file->path(), w);
    w.keepalive = file;
    return w;
}

}  // namespace detail

// Any supported LLaMA file: a .gguf, a Hugging Face folder or .safetensors (config.json beside it),
// or a llama2.c .bin. `residency`: mapped (zero-copy) or copied into huge pages (io/mapped_file.hpp).
inline ModelWeights load_weights(const std::filesystem::path& path, io::Residency residency = io::Residency::mapped) {
    require(std::filesystem::exists(path), path.string(), "no such file or directory");
    if (std::filesystem::is_directory(path) || path.extension() == ".safetensors") return detail::load_safetensors(path, residency);
    char magic[4] = {};
    std::ifstream(path, std::ios::binary).read(magic, 4);
    if (std::memcmp(magic, "GGUF", 4) == 0) return detail::load_gguf(path, residency);
    if (path.extension() == ".bin") return detail::load_llama2c(path, residency);
    throw Error(path.string(), "unrecognised model file: not GGUF (magic \"GGUF\"), not .safetensors, not a llama2.c .bin");
}

// Throws, naming the field and both values, unless the file's hyper-parameters are Cfg's.
template <ModelConfig Cfg>
void check_against(const ModelWeights& w) {
    const std::string why = first_mismatch<Cfg>(w.hparams);
    require(why.empty(), w.source, why);
    if (w.is_elastic) validate<Cfg>(w.elastic, w.source);
}

template <ModelConfig Cfg>
ModelWeights load_model(const std::filesystem::path& path) {
    ModelWeights w = load_weights(path);
    check_against<Cfg>(w);
    return w;
}

// An elastic model (written by elasticize): a plain file is an error here, not a silent fallback.
template <ModelConfig Cfg>
ModelWeights load_elastic_model(const std::filesystem::path& path) {
    ModelWeights w = load_model<Cfg>(path);
    require(w.is_elastic, w.source, "is not an elastic model (no elastilm.elastic metadata): run elasticize on it first");
    return w;
}

}  // namespace elastilm
