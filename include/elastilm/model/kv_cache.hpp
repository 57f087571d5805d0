// The KV cache: full-width keys and values of every past position, per layer.
//
// Layout per layer: [kv_head][position][head_dim]. A width ratio keeps the first k KV heads, so it reads
// a prefix of each layer's cache; attention for one head streams its positions contiguously.
// The cache holds values only; which width computed each position is Session's record (ElastiLM's prefill
// and decode may run at different ratios; see Session for the switching rules).
#pragma once

#include <cstddef>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/error.hpp"
#include "elastilm/ops/attention.hpp"

namespace elastilm {

template <ModelConfig Cfg>
class KvCache {
public:
    // `context` may be smaller than the model's to save memory (a 3B model's full cache is ~1.7 GB).
    explicit KvCache(int context = Cfg::context)
        : context_(context),
          k_(std::size_t(Cfg::n_layers) * Cfg::n_kv_heads * context * Cfg::head_dim),
          v_(k_.size()) {
        require(context > 0 && context <= Cfg::context, "KvCache",
                "context " + std::to_string(context) + " outside 1.." + std::to_string(Cfg::context));
    }

    int context() const { return context_; }

    std::size_t head_stride() const { return std::size_t(context_) * Cfg::head_dim; }
    std::size_t layer_stride() const { return head_stride() * Cfg::n_kv_heads; }

    float* key(int layer, int kv_head, int pos) { return k_.data() + offset(layer, kv_head, pos); }
    float* value(int layer, int kv_head, int pos) { return v_.data() + offset(layer, kv_head, pos); }

    KvLayerView layer(int l) const {
        return {k_.data() + std::size_t(l) * layer_stride(), v_.data() + std::size_t(l) * layer_stride(), head_stride()};
    }

    std::size_t bytes() const { return (k_.size() + v_.size()) * sizeof(float); }

private:
    std::size_t offset(int layer, int kv_head, int pos) const {
        return std::size_t(layer) * layer_stride() + std::size_t(kv_head) * head_stride() + std::size_t(pos) * Cfg::head_dim;
    }

    int context_;
    std::vector<float> k_, v_;
};

}  // namespace elastilm
