// Causal multi-head attention with grouped KV heads over a KV cache, for one query position.
//
// Cache layout per layer: [kv_head][position][head_dim], so a KV head's keys are contiguous over
// positions and keeping the first k KV heads (a width ratio) reads a prefix of the layer's cache.
#pragma once

#include <cmath>
#include <cstddef>

#include "elastilm/ops/softmax.hpp"

namespace elastilm {

struct KvLayerView {
    const float* k = nullptr;      // [kv_head][position][head_dim]
    const float* v = nullptr;
    std::size_t head_stride = 0;   // floats between consecutive KV heads (= context * head_dim)
};

// out[h*head_dim ...] = Σ_p softmax_p(q_h·k_p / sqrt(head_dim)) v_p for each query head h < n_heads,
// with query head h reading KV head h / group_size, over positions [0, n_pos).
// `scores` is scratch of at least n_pos floats.
inline void attend(float* out, const float* q, int n_heads, int group_size, int head_dim, const KvLayerView& kv,
                   int n_pos, float* scores) {
    const float scale = 1.0f / std::sqrt(float(head_dim));
    for (int h = 0; h < n_heads; ++h) {
        const float* qh = q + std::size_t(h) * head_dim;
        const std::size_t kv_off = std::size_t(h / group_size) * kv.head_stride;
        const float* kh = kv.k + kv_off;
        const float* vh = kv.v + kv_off;
        for (int p = 0; p < n_pos; ++p) {
            float dot = 0;
            for (int d = 0; d < head_dim; ++d) dot += qh[d] * kh[std::size_t(p) * head_dim + d];
            scores[p] = dot * scale;
        }
        softmax(scores, n_pos);
        float* oh = out + std::size_t(h) * head_dim;
        for (int d = 0; d < head_dim; ++d) oh[d] = 0;
        for (int p = 0; p < n_pos; ++p)
            for (int d = 0; d < head_dim; ++d) oh[d] += scores[p] * vh[std::size_t(p) * head_dim + d];
    }
}

}  // namespace elastilm
