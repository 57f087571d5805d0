// The KV cache: full-width keys and values of every past position, per layer.
//
// Layout per layer: [kv_head][position][head_dim]. A width ratio keeps the first k KV heads, so it reads
// a prefix of each layer's cache; attention for one head streams its positions contiguously.
// Entries are fp16 by default — half the memory of fp32 (Llama-2-7B at 4096 tokens: 2.1 GB instead of
// 4.3 GB) and half the bytes attention streams per decoded token; K and V are computed in fp32 and
// rounded once as they are stored. An fp32 cache remains available (exact reference comparisons).
// The cache holds values only; which width computed each position is Session's record (ElastiLM's prefill
// and decode may run at different ratios; see Session for the switching rules).
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/error.hpp"
#include "elastilm/ops/attention.hpp"
#include "elastilm/simd/f16_widen.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm {

template <ModelConfig Cfg>
class KvCache {
public:
    // `context` may be smaller than the model's to save memory (a 3B model's full fp16 cache is ~0.9 GB).
    explicit KvCache(int context = Cfg::context, DType dtype = DType::f16) : context_(context), dtype_(dtype) {
        require(context > 0 && context <= Cfg::context, "KvCache",
                "context " + std::to_string(context) + " outside 1.." + std::to_string(Cfg::context));
        const std::size_t n = std::size_t(Cfg::n_layers) * Cfg::n_kv_heads * context * Cfg::head_dim;
        if (dtype == DType::f16) k16_.resize(n), v16_.resize(n);
        else k32_.resize(n), v32_.resize(n);
    }

    int context() const { return context_; }
    DType dtype() const { return dtype_; }

    std::size_t head_stride() const { return std::size_t(context_) * Cfg::head_dim; }
    std::size_t layer_stride() const { return head_stride() * Cfg::n_kv_heads; }

    // Stores the head_dim keys and values of one (layer, KV head, position), rounding to the cache's type.
    void store(int layer, int kv_head, int pos, const float* k, const float* v) {
        const std::size_t at = offset(layer, kv_head, pos);
        if (dtype_ == DType::f16) {
            simd::store_f16(k16_.data() + at, k, Cfg::head_dim);
            simd::store_f16(v16_.data() + at, v, Cfg::head_dim);
        } else {
            std::copy_n(k, Cfg::head_dim, k32_.data() + at);
            std::copy_n(v, Cfg::head_dim, v32_.data() + at);
        }
    }

    // Layer l's keys and values as T (the cache's own type: float for f32, f16_bits for f16).
    template <class T>
    KvView<T> layer(int l) const {
        const std::size_t at = std::size_t(l) * layer_stride();
        if constexpr (std::is_same_v<T, f16_bits>) {
            require(dtype_ == DType::f16, "KvCache", "read as F16 but holds F32");
            return {k16_.data() + at, v16_.data() + at, head_stride()};
        } else {
            require(dtype_ == DType::f32, "KvCache", "read as F32 but holds F16");
            return {k32_.data() + at, v32_.data() + at, head_stride()};
        }
    }

    std::size_t bytes() const { return (k32_.size() + v32_.size()) * sizeof(float) + (k16_.size() + v16_.size()) * sizeof(f16_bits); }

private:
    std::size_t offset(int layer, int kv_head, int pos) const {
        return std::size_t(layer) * layer_stride() + std::size_t(kv_head) * head_stride() + std::size_t(pos) * Cfg::head_dim;
    }

    int context_;
    DType dtype_;
    std::vector<float> k32_, v32_;
    std::vector<f16_bits> k16_, v16_;
};

}  // namespace elastilm
