// The weights of one LLaMA model, as views into a memory-mapped file.
//
// Large matrices are never copied: a MatrixView points into the mapping, and a width ratio reads a
// prefix of it. Only the small norm vectors are converted to owned fp32 (a few KB per layer).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/model/elastic_metadata.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm {

struct LayerWeights {
    std::vector<float> attn_norm;   // [dim]
    MatrixView wq, wk, wv;          // [q_dim | kv_dim, dim], rows in head order
    MatrixView wo;                  // [dim, q_dim]
    std::vector<float> ffn_norm;    // [dim]
    MatrixView w_gate, w_up;        // [hidden, dim], rows in neuron order
    MatrixView w_down;              // [dim, hidden]
};

// The tensors of a layer, described once: where each lives in LayerWeights, its names in GGUF and in
// Hugging Face checkpoints, and its shape. Loaders and writers walk this table.
enum class Extent : std::uint8_t { dim, q_dim, kv_dim, hidden };

struct LayerMatrix {
    MatrixView LayerWeights::*field;
    const char* gguf;  // after "blk.N."
    const char* hf;    // after "model.layers.N."
    Extent rows, cols;
    bool output;       // an output projection (Wo, W_down): stored input-major in elastic files
};

inline constexpr LayerMatrix kLayerMatrices[] = {
    {&LayerWeights::wq, "attn_q.weight", "self_attn.q_proj.weight", Extent::q_dim, Extent::dim, false},
    {&LayerWeights::wk, "attn_k.weight", "self_attn.k_proj.weight", Extent::kv_dim, Extent::dim, false},
    {&LayerWeights::wv, "attn_v.weight", "self_attn.v_proj.weight", Extent::kv_dim, Extent::dim, false},
    {&LayerWeights::wo, "attn_output.weight", "self_attn.o_proj.weight", Extent::dim, Extent::q_dim, true},
    {&LayerWeights::w_gate, "ffn_gate.weight", "mlp.gate_proj.weight", Extent::hidden, Extent::dim, false},
    {&LayerWeights::w_up, "ffn_up.weight", "mlp.up_proj.weight", Extent::hidden, Extent::dim, false},
    {&LayerWeights::w_down, "ffn_down.weight", "mlp.down_proj.weight", Extent::dim, Extent::hidden, true},
};

struct LayerNorm {
    std::vector<float> LayerWeights::*field;
    const char* gguf;
    const char* hf;
};

inline constexpr LayerNorm kLayerNorms[] = {
    {&LayerWeights::attn_norm, "attn_norm.weight", "input_layernorm.weight"},
    {&LayerWeights::ffn_norm, "ffn_norm.weight", "post_attention_layernorm.weight"},
};

// Hyper-parameters as read from a file, compared field by field against a compiled config.
struct FileHyperParams {
    int dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, vocab_size = 0;
    int context = 0;       // 0 when the file does not say
    float rope_theta = 0;  // 0 when the file does not say
    float norm_eps = 0;    // 0 when the file does not say
};

inline int extent(Extent e, const FileHyperParams& h) {
    switch (e) {
        case Extent::dim: return h.dim;
        case Extent::q_dim: return h.n_heads * h.head_dim;
        case Extent::kv_dim: return h.n_kv_heads * h.head_dim;
        case Extent::hidden: return h.hidden_dim;
    }
    return 0;
}

struct ModelWeights {
    std::string source;                  // file path, for messages
    std::string format;                  // "gguf", "safetensors", "llama2c"
    FileHyperParams hparams;
    RopePairing rope_pairing = RopePairing::adjacent;
    MatrixView embedding;                // [vocab, dim]
    std::vector<LayerWeights> layers;
    std::vector<float> final_norm;       // [dim]
    MatrixView lm_head;                  // [vocab, dim]; may alias `embedding` (tied)
    bool is_elastic = false;             // units importance-ordered by the elasticizer
    ElasticMetadata elastic;             // ratios, anchors, importances (when is_elastic)
    std::shared_ptr<const void> keepalive;  // the mapping (or owned buffer) every view points into
};

}  // namespace elastilm
