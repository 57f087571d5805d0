// The weights of one LLaMA model, as views into a memory-mapped file.
//
// Large matrices are never copied: a MatrixView points into the mapping, and a width ratio reads a
// prefix of it. Only the small norm vectors are converted to owned fp32 (a few KB per layer).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/elastic/metadata.hpp"
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

// Hyper-parameters as read from a file, compared field by field against a compiled config.
struct FileHyperParams {
    int dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, vocab_size = 0;
    int context = 0;       // 0 when the file does not say
    float rope_theta = 0;  // 0 when the file does not say
    float norm_eps = 0;    // 0 when the file does not say
};

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
