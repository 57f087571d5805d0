// Importance of every permutation-consistent unit, measured on calibration text (ElastiLM §3.1).
//
// A unit's importance is the root-mean-square norm of what it adds to the residual stream:
//   FFN neuron j of layer l:  sqrt(E_t[h_j(t)²]) · ‖W_down[:, j]‖         (h = silu(gate) ⊙ up)
//   KV group g of layer l:    sqrt(E_t[Σ_{h ∈ g} ‖W_o[:, h] · att_h(t)‖²])  (its query heads' outputs)
// Dropping a unit removes exactly that vector from the residual stream, so this is the first-order size
// of the damage its removal does, measured on real activations rather than on weights alone (weight
// norms miss neurons that rarely fire; activation norms miss neurons with tiny output weights).
//
// A layer's importance is its block influence: E_t[1 − cos(x_in(t), x_out(t))], how much the layer
// turns the residual stream (Men et al. 2024, "ShortGPT"). Layers that change it most become anchors.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "elastilm/model/model.hpp"
#include "elastilm/model/observer.hpp"
#include "elastilm/simd/f16.hpp"

namespace elastilm {

struct UnitImportance {
    std::vector<std::vector<float>> kv_group;  // [layer][kv_head]
    std::vector<std::vector<float>> neuron;    // [layer][hidden]
    std::vector<float> layer;                  // [layer] block influence
    long long tokens = 0;                      // calibration tokens seen
};

inline float matrix_at(const MatrixView& W, int i, int j) {
    const std::size_t k = W.offset(i, j);
    return W.dtype == DType::f32 ? static_cast<const float*>(W.data)[k] : f16_to_f32(static_cast<const f16_bits*>(W.data)[k]);
}

// Accumulates unit statistics over full-width forward passes (attach with Session::set_observer).
template <ModelConfig Cfg>
class ImportanceCollector : public ForwardObserver {
public:
    static constexpr int dim = Cfg::dim, head_dim = Cfg::head_dim, n_heads = Cfg::n_heads;

    static_assert(head_dim <= 512, "the Gram accumulation keeps one head column on the stack");

    explicit ImportanceCollector(const Model<Cfg>& m)
        : head_sq_(Cfg::n_layers, std::vector<double>(n_heads)),
          neuron_sq_(Cfg::n_layers, std::vector<double>(Cfg::hidden_dim)),
          influence_(Cfg::n_layers), tokens_(Cfg::n_layers), down_norm_(Cfg::n_layers), gram_(Cfg::n_layers) {
        // ‖W_o[:, h]·a‖² = aᵀ (W_o[:, h]ᵀ W_o[:, h]) a: one head_dim² Gram matrix per head makes the
        // per-token cost head_dim² instead of dim·head_dim.
        for (int l = 0; l < Cfg::n_layers; ++l) {
            const LayerWeights& w = m.layer(l);
            gram_[l].assign(std::size_t(n_heads) * head_dim * head_dim, 0.0);
            for (int h = 0; h < n_heads; ++h)
                for (int r = 0; r < dim; ++r) {
                    double col[512];
                    for (int a = 0; a < head_dim; ++a) col[a] = matrix_at(w.wo, r, h * head_dim + a);
                    double* g = gram_[l].data() + std::size_t(h) * head_dim * head_dim;
                    for (int a = 0; a < head_dim; ++a)
                        for (int b = 0; b < head_dim; ++b) g[a * head_dim + b] += col[a] * col[b];
                }
            down_norm_[l].assign(Cfg::hidden_dim, 0.0);
            for (int r = 0; r < dim; ++r)
                for (int j = 0; j < Cfg::hidden_dim; ++j) {
                    const double v = matrix_at(w.w_down, r, j);
                    down_norm_[l][j] += v * v;
                }
            for (double& v : down_norm_[l]) v = std::sqrt(v);
        }
        input_.resize(std::size_t(dim) * 512);
    }

    void layer_input(int, const float* x, int n) override {
        input_.assign(x, x + std::size_t(n) * dim);
    }
    void attention_heads(int l, const float* att, int n, int q_dim) override {
        for (int t = 0; t < n; ++t)
            for (int h = 0; h < q_dim / head_dim; ++h) {
                const float* a = att + std::size_t(t) * q_dim + std::size_t(h) * head_dim;
                const double* g = gram_[l].data() + std::size_t(h) * head_dim * head_dim;
                double q = 0;
                for (int i = 0; i < head_dim; ++i) {
                    double row = 0;
                    for (int j = 0; j < head_dim; ++j) row += g[i * head_dim + j] * a[j];
                    q += a[i] * row;
                }
                head_sq_[l][h] += q;
            }
    }
    void ffn_hidden(int l, const float* h, int n, int hidden) override {
        for (int t = 0; t < n; ++t)
            for (int j = 0; j < hidden; ++j) {
                const double v = h[std::size_t(t) * hidden + j];
                neuron_sq_[l][j] += v * v;
            }
    }
    void layer_output(int l, const float* x, int n) override {
        for (int t = 0; t < n; ++t) {
            const float* a = input_.data() + std::size_t(t) * dim;
            const float* b = x + std::size_t(t) * dim;
            double ab = 0, aa = 0, bb = 0;
            for (int i = 0; i < dim; ++i) { ab += double(a[i]) * b[i]; aa += double(a[i]) * a[i]; bb += double(b[i]) * b[i]; }
            influence_[l] += 1.0 - ab / std::sqrt(std::max(aa * bb, 1e-30));
        }
        tokens_[l] += n;
    }

    UnitImportance result() const {
        UnitImportance r;
        r.tokens = tokens_.empty() ? 0 : tokens_[0];
        const double T = std::max<long long>(1, r.tokens);
        constexpr int group = Cfg::n_heads / Cfg::n_kv_heads;
        for (int l = 0; l < Cfg::n_layers; ++l) {
            std::vector<float> groups(Cfg::n_kv_heads, 0.0f);
            for (int g = 0; g < Cfg::n_kv_heads; ++g) {
                double s = 0;
                for (int h = g * group; h < (g + 1) * group; ++h) s += head_sq_[l][h];
                groups[g] = float(std::sqrt(s / T));
            }
            std::vector<float> neurons(Cfg::hidden_dim);
            for (int j = 0; j < Cfg::hidden_dim; ++j) neurons[j] = float(std::sqrt(neuron_sq_[l][j] / T) * down_norm_[l][j]);
            r.kv_group.push_back(std::move(groups));
            r.neuron.push_back(std::move(neurons));
            r.layer.push_back(float(influence_[l] / T));
        }
        return r;
    }

private:
    std::vector<std::vector<double>> head_sq_, neuron_sq_;
    std::vector<double> influence_;
    std::vector<long long> tokens_;
    std::vector<std::vector<double>> down_norm_, gram_;
    std::vector<float> input_;
};

// Indices of `score` by descending value (stable: ties keep their original order).
inline std::vector<int> descending_order(const std::vector<float>& score) {
    std::vector<int> order(score.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score[a] > score[b]; });
    return order;
}

// The `count` layers of highest block influence, ascending by index.
inline std::vector<int> choose_anchors(const std::vector<float>& layer_importance, int count) {
    auto order = descending_order(layer_importance);
    order.resize(std::min<std::size_t>(std::max(count, 0), order.size()));
    std::sort(order.begin(), order.end());
    return order;
}

}  // namespace elastilm
