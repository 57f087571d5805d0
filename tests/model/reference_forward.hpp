// An independent, deliberately naive forward pass in double precision: the oracle the engine's
// variants are tested against. It slices the width explicitly from the full weights (first kv_heads
// KV groups, first `hidden` neurons) instead of using prefix views, and recomputes every position from
// scratch (no KV cache), so it shares no code path with the engine but the weight views.
#pragma once

#include <cmath>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/model/weights.hpp"
#include "elastilm/simd/f16.hpp"

namespace elastilm::test {

inline double weight_at(const MatrixView& W, int i, int j) {
    const std::size_t k = W.layout == Layout::out_major ? std::size_t(i) * W.ld + j : std::size_t(j) * W.ld + i;
    return W.dtype == DType::f32 ? static_cast<const float*>(W.data)[k] : f16_to_f32(static_cast<const f16_bits*>(W.data)[k]);
}

struct RefWidth {
    int kv_heads, heads, hidden;
    bool skip = false;  // the layer is dropped: the residual stream passes it unchanged
};

// Per-layer widths (anchors at full width): logits of the last token of `tokens`.
template <ModelConfig Cfg>
std::vector<double> reference_logits(const ModelWeights& w, const std::vector<int>& tokens, const std::vector<RefWidth>& widths) {
    const int dim = Cfg::dim, hd = Cfg::head_dim, group = Cfg::n_heads / Cfg::n_kv_heads, T = int(tokens.size());
    auto matvec = [](const MatrixView& W, int rows, int cols, const std::vector<double>& x) {
        std::vector<double> y(rows, 0.0);
        for (int i = 0; i < rows; ++i)
            for (int j = 0; j < cols; ++j) y[i] += weight_at(W, i, j) * x[j];
        return y;
    };
    auto rmsnorm = [&](const std::vector<double>& x, const std::vector<float>& g) {
        double ss = 0;
        for (double v : x) ss += v * v;
        const double s = 1.0 / std::sqrt(ss / x.size() + Cfg::norm_eps);
        std::vector<double> o(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) o[i] = x[i] * s * g[i];
        return o;
    };
    auto rope = [&](std::vector<double>& v, int n_heads, int pos) {
        for (int h = 0; h < n_heads; ++h)
            for (int i = 0; i < hd / 2; ++i) {
                const double f = std::pow(double(Cfg::rope_theta), -2.0 * i / hd), c = std::cos(pos * f), s = std::sin(pos * f);
                const int a = h * hd + (w.rope_pairing == RopePairing::adjacent ? 2 * i : i);
                const int b = h * hd + (w.rope_pairing == RopePairing::adjacent ? 2 * i + 1 : i + hd / 2);
                const double x0 = v[a], x1 = v[b];
                v[a] = x0 * c - x1 * s;
                v[b] = x0 * s + x1 * c;
            }
    };

    std::vector<std::vector<double>> x(T, std::vector<double>(dim));
    for (int t = 0; t < T; ++t)
        for (int i = 0; i < dim; ++i) x[t][i] = weight_at(w.embedding, tokens[t], i);
    for (int l = 0; l < Cfg::n_layers; ++l) {
        const LayerWeights& L = w.layers[l];
        const RefWidth wd = widths[l];
        if (wd.skip) continue;
        const int q_dim = wd.heads * hd, kv_dim = wd.kv_heads * hd;
        std::vector<std::vector<double>> q(T), k(T), v(T);
        for (int t = 0; t < T; ++t) {
            const auto xn = rmsnorm(x[t], L.attn_norm);
            q[t] = matvec(L.wq, q_dim, dim, xn);
            k[t] = matvec(L.wk, kv_dim, dim, xn);
            v[t] = matvec(L.wv, kv_dim, dim, xn);
            rope(q[t], wd.heads, t);
            rope(k[t], wd.kv_heads, t);
        }
        for (int t = 0; t < T; ++t) {
            std::vector<double> att(q_dim, 0.0);
            for (int h = 0; h < wd.heads; ++h) {
                const int kvh = h / group;
                std::vector<double> s(t + 1);
                double mx = -1e300, sum = 0;
                for (int p = 0; p <= t; ++p) {
                    double d = 0;
                    for (int e = 0; e < hd; ++e) d += q[t][h * hd + e] * k[p][kvh * hd + e];
                    s[p] = d / std::sqrt(double(hd));
                    mx = std::max(mx, s[p]);
                }
                for (double& e : s) sum += e = std::exp(e - mx);
                for (int p = 0; p <= t; ++p)
                    for (int e = 0; e < hd; ++e) att[h * hd + e] += s[p] / sum * v[p][kvh * hd + e];
            }
            const auto o = matvec(L.wo, dim, q_dim, att);
            for (int i = 0; i < dim; ++i) x[t][i] += o[i];
            const auto xn = rmsnorm(x[t], L.ffn_norm);
            auto g = matvec(L.w_gate, wd.hidden, dim, xn);
            const auto u = matvec(L.w_up, wd.hidden, dim, xn);
            for (int i = 0; i < wd.hidden; ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
            const auto d = matvec(L.w_down, dim, wd.hidden, g);
            for (int i = 0; i < dim; ++i) x[t][i] += d[i];
        }
    }
    const auto xn = rmsnorm(x[T - 1], w.final_norm);
    return matvec(w.lm_head, Cfg::vocab_size, dim, xn);
}

// The widths Width<Cfg, Percent> uses, per layer, with `anchors` at full width.
template <ModelConfig Cfg, int Percent>
std::vector<RefWidth> widths_of(const std::vector<int>& anchors = {}) {
    std::vector<RefWidth> out(Cfg::n_layers, {Width<Cfg, Percent>::kv_heads, Width<Cfg, Percent>::heads, Width<Cfg, Percent>::hidden});
    for (int l : anchors) out[l] = {Cfg::n_kv_heads, Cfg::n_heads, Cfg::hidden_dim};
    return out;
}

}  // namespace elastilm::test
