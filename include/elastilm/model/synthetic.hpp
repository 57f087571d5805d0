// Deterministic synthetic weights at any config's shape, for benchmarks and demos when no real model
// of that size is at hand. Values are small uniform noise scaled like a trained LLaMA's (~1/sqrt(fan_in))
// so activations stay finite through many layers; they carry no knowledge.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/model/weights.hpp"
#include "elastilm/simd/f16.hpp"

namespace elastilm {

struct SyntheticOptions {
    DType dtype = DType::f16;
    std::uint64_t seed = 1;
    // Elastic files store Wo and W_down input-major so a ratio's columns are one contiguous prefix.
    Layout output_layout = Layout::out_major;
};

namespace detail {
// splitmix64: a fast, well-mixed deterministic stream.
inline std::uint64_t splitmix64(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
}  // namespace detail

template <ModelConfig Cfg>
ModelWeights synthetic_weights(const SyntheticOptions& o = {}) {
    using S = Shape<Cfg>;
    const std::size_t esize = dtype_size(o.dtype);
    const std::size_t per_layer = std::size_t(S::q_dim + 2 * S::kv_dim) * S::dim + std::size_t(S::dim) * S::q_dim +
                                  3 * std::size_t(S::hidden_dim) * S::dim;
    const std::size_t total = std::size_t(Cfg::vocab_size) * S::dim * 2 + per_layer * Cfg::n_layers;
    auto storage = std::make_shared<std::vector<std::byte>>(total * esize);
    std::byte* cursor = storage->data();
    std::uint64_t state = o.seed;

    auto matrix = [&](int rows, int cols, Layout layout) {
        const std::size_t n = std::size_t(rows) * cols;
        const float scale = 1.0f / std::sqrt(float(cols));
        for (std::size_t i = 0; i < n; ++i) {
            const float u = float(detail::splitmix64(state) >> 40) * (2.0f / float(1 << 24)) - 1.0f;  // [-1, 1)
            if (o.dtype == DType::f32) reinterpret_cast<float*>(cursor)[i] = u * scale;
            else reinterpret_cast<f16_bits*>(cursor)[i] = f32_to_f16(u * scale);
        }
        MatrixView m{cursor, o.dtype, layout, rows, cols, std::size_t(layout == Layout::out_major ? cols : rows)};
        cursor += n * esize;
        return m;
    };

    ModelWeights w;
    w.source = "synthetic:" + std::string(Cfg::name);
    w.format = "synthetic";
    w.hparams = {S::dim, S::hidden_dim, Cfg::n_layers, S::n_heads, S::n_kv_heads, S::head_dim, Cfg::vocab_size,
                 Cfg::context, Cfg::rope_theta, Cfg::norm_eps};
    w.rope_pairing = Cfg::rope_pairing;
    w.embedding = matrix(Cfg::vocab_size, S::dim, Layout::out_major);
    w.layers.resize(Cfg::n_layers);
    for (LayerWeights& l : w.layers) {
        l.attn_norm.assign(S::dim, 1.0f);
        l.ffn_norm.assign(S::dim, 1.0f);
        l.wq = matrix(S::q_dim, S::dim, Layout::out_major);
        l.wk = matrix(S::kv_dim, S::dim, Layout::out_major);
        l.wv = matrix(S::kv_dim, S::dim, Layout::out_major);
        l.wo = matrix(S::dim, S::q_dim, o.output_layout);
        l.w_gate = matrix(S::hidden_dim, S::dim, Layout::out_major);
        l.w_up = matrix(S::hidden_dim, S::dim, Layout::out_major);
        l.w_down = matrix(S::dim, S::hidden_dim, o.output_layout);
    }
    w.final_norm.assign(S::dim, 1.0f);
    w.lm_head = matrix(Cfg::vocab_size, S::dim, Layout::out_major);
    w.keepalive = storage;
    return w;
}

// Bytes of weights one decode step at width W reads (the roofline numerator): every sliced matrix's
// prefix plus the LM head; embeddings are one row and norms are negligible.
template <ModelConfig Cfg, int Percent>
constexpr std::size_t decode_weight_bytes(DType dtype, int n_anchors = 0) {
    using W = Width<Cfg, Percent>;
    using F = Width<Cfg, 100>;
    auto layer = [](int q_dim, int kv_dim, int hidden) {
        return std::size_t(2 * q_dim + 2 * kv_dim) * Cfg::dim + 3 * std::size_t(hidden) * Cfg::dim;
    };
    const std::size_t elems = layer(W::q_dim, W::kv_dim, W::hidden) * (Cfg::n_layers - n_anchors) +
                              layer(F::q_dim, F::kv_dim, F::hidden) * n_anchors + std::size_t(Cfg::vocab_size) * Cfg::dim;
    return elems * dtype_size(dtype);
}

// Multiply-adds ×2 per token through the weights at width W (the prefill GFLOP/s numerator;
// attention's O(n²) part is excluded and small at 512 tokens).
template <ModelConfig Cfg, int Percent>
constexpr double flops_per_token() {
    return 2.0 * double(decode_weight_bytes<Cfg, Percent>(DType::f32)) / 4.0;
}

}  // namespace elastilm
