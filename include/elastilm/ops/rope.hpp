// Rotary position embedding (Su et al. 2021). The cos/sin of every (position, frequency) pair is
// computed once per model so the per-token cost is one multiply-add per element.
#pragma once

#include <cmath>
#include <vector>

#include "elastilm/config.hpp"

namespace elastilm {

class RopeTable {
public:
    RopeTable(int context, int head_dim, float theta) : half_(head_dim / 2), cos_(std::size_t(context) * half_), sin_(cos_.size()) {
        for (int p = 0; p < context; ++p)
            for (int i = 0; i < half_; ++i) {
                const double freq = std::pow(double(theta), -2.0 * i / head_dim);
                cos_[std::size_t(p) * half_ + i] = float(std::cos(p * freq));
                sin_[std::size_t(p) * half_ + i] = float(std::sin(p * freq));
            }
    }
    int half() const { return half_; }
    const float* cos(int pos) const { return cos_.data() + std::size_t(pos) * half_; }
    const float* sin(int pos) const { return sin_.data() + std::size_t(pos) * half_; }

private:
    int half_;
    std::vector<float> cos_, sin_;
};

// Rotates each of n_heads heads (head_dim floats each, contiguous) of `v` for position `pos`.
inline void apply_rope(float* v, int n_heads, int head_dim, int pos, const RopeTable& table, RopePairing pairing) {
    const float* c = table.cos(pos);
    const float* s = table.sin(pos);
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; ++h) {
        float* x = v + std::size_t(h) * head_dim;
        for (int i = 0; i < half; ++i) {
            const int a = pairing == RopePairing::adjacent ? 2 * i : i;
            const int b = pairing == RopePairing::adjacent ? 2 * i + 1 : i + half;
            const float x0 = x[a], x1 = x[b];
            x[a] = x0 * c[i] - x1 * s[i];
            x[b] = x0 * s[i] + x1 * c[i];
        }
    }
}

}  // namespace elastilm
