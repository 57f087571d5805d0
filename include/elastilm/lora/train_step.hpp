// One distillation step of LoRA recovery training (ElastiLM §3.2): the sub-model at the adapter's
// width learns, through its LoRA pairs only, to match the full model's next-token distribution.
//
//   loss = mean over tokens of KL(p_teacher ‖ p_student),  p = softmax(logits)
//
// The forward runs one sequence (positions 0 .. n-1) through the sliced model with the adapter attached
// — y = W_slice·x + scale·B·(A·x) for every projection, anchor layers at full width — and keeps a tape
// of what the backward needs. The backward walks the layers in reverse and accumulates dA, dB; base
// weights, norms and embeddings are frozen. Every matrix product over the sequence is one linear() call
// (GEMM), the transposed products Wᵀ·dY included (see transposed()).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "elastilm/error.hpp"
#include "elastilm/model/lora_adapter.hpp"
#include "elastilm/lora/grad_ops.hpp"
#include "elastilm/model/model.hpp"
#include "elastilm/ops/rmsnorm.hpp"
#include "elastilm/ops/swiglu.hpp"

namespace elastilm {

// Zeroes every pair of a gradient in place (between optimizer steps).
inline void set_zero(LoraAdapter& grad) {
    for (LoraLayer& l : grad.layers)
        for (LoraPair& p : l.pairs) {
            std::fill(p.a.begin(), p.a.end(), 0.0f);
            std::fill(p.b.begin(), p.b.end(), 0.0f);
        }
}

// Forward + backward over one sequence, with its scratch kept between calls (allocated once for
// `max_tokens` tokens at full width; nothing is allocated per step after the first).
template <ModelConfig Cfg>
class DistillStep {
    using S = Shape<Cfg>;
    static constexpr int dim = Cfg::dim, vocab = Cfg::vocab_size, head_dim = Cfg::head_dim;

public:
    explicit DistillStep(const Model<Cfg>& model, int max_tokens = Cfg::context)
        : model_(&model), capacity_(max_tokens), layers_(Cfg::n_layers) {
        require(max_tokens >= 1 && max_tokens <= Cfg::context, "DistillStep",
                "max_tokens " + std::to_string(max_tokens) + " outside 1.." + std::to_string(Cfg::context));
        const std::size_t n = std::size_t(max_tokens);
        for (Tape& t : layers_) {
            t.x_attn.resize(n * dim);
            t.xb_attn.resize(n * dim);
            t.q.resize(n * S::q_dim);
            t.k.resize(n * S::kv_dim);
            t.v.resize(n * S::kv_dim);
            t.probs.resize(std::size_t(S::n_heads) * n * n);
            t.att.resize(n * S::q_dim);
            t.x_ffn.resize(n * dim);
            t.xb_ffn.resize(n * dim);
            t.gate.resize(n * S::hidden_dim);
            t.up.resize(n * S::hidden_dim);
            t.h.resize(n * S::hidden_dim);
        }
        x_.resize(n * dim);
        xb_.resize(n * dim);
        proj_.resize(n * dim);
        dx_.resize(n * dim);
        dxb_.resize(n * dim);
        tmp_.resize(n * dim);
        k_tok_.resize(n * S::kv_dim);
        v_tok_.resize(n * S::kv_dim);
        dq_.resize(n * S::q_dim);
        datt_.resize(n * S::q_dim);
        dk_.resize(n * S::kv_dim);
        dv_.resize(n * S::kv_dim);
        dk_tok_.resize(n * S::kv_dim);
        dv_tok_.resize(n * S::kv_dim);
        dh_.resize(n * S::hidden_dim);
        dgate_.resize(n * S::hidden_dim);
        dup_.resize(n * S::hidden_dim);
        dscores_.resize(std::size_t(S::n_heads) * n * n);
        logits_.resize(n * vocab);
        kl_.resize(n);
    }

    int capacity() const { return capacity_; }

    // Forward, loss and backward. ACCUMULATES dLoss/dA, dLoss/dB into `grad` (shaped like `adapter`,
    // see lora_zeros_like) and returns the loss: the mean KL over the tokens.
    // teacher_logits: tokens.size() × vocab (e.g. Session::append_all_logits at 100%).
    double step(const LoraAdapter& adapter, std::span<const int> tokens, std::span<const float> teacher_logits, LoraAdapter& grad,
                ThreadPool& pool) {
        check_gradient(adapter, grad);
        const double loss = this->loss(adapter, tokens, teacher_logits, pool);
        backward(adapter, int(tokens.size()), grad, pool);
        return loss;
    }

    // Forward and loss only (evaluation). Leaves dLoss/dlogits in the scratch.
    double loss(const LoraAdapter& adapter, std::span<const int> tokens, std::span<const float> teacher_logits, ThreadPool& pool) {
        const int n = int(tokens.size());
        require(teacher_logits.size() == tokens.size() * std::size_t(vocab), "DistillStep",
                "teacher logits hold " + std::to_string(teacher_logits.size()) + " floats, expected tokens (" +
                    std::to_string(n) + ") × vocab (" + std::to_string(vocab) + ")");
        forward(adapter, tokens, pool);
        const float inv_n = 1.0f / float(n);
        pool.parallel_for(n, [&](int t0, int t1) {
            for (int t = t0; t < t1; ++t) {
                float* z = logits_.data() + std::size_t(t) * vocab;
                kl_[t] = distill_kl(z, z, teacher_logits.data() + std::size_t(t) * vocab, vocab, inv_n);
            }
        });
        double sum = 0;
        for (int t = 0; t < n; ++t) sum += kl_[t];
        return sum / n;
    }

    // The student's logits (tokens.size() × vocab) with the adapter attached; valid until the next call.
    std::span<const float> forward(const LoraAdapter& adapter, std::span<const int> tokens, ThreadPool& pool) {
        check_inputs(adapter, tokens);
        const int n = int(tokens.size());
        const Model<Cfg>& m = *model_;
        const float scale = adapter.scale();
        for (int t = 0; t < n; ++t) m.embed(tokens[t], x_.data() + std::size_t(t) * dim);
        for (int l = 0; l < Cfg::n_layers; ++l) forward_layer(l, adapter, scale, n, pool);
        for (int t = 0; t < n; ++t)
            rmsnorm(xb_.data() + std::size_t(t) * dim, x_.data() + std::size_t(t) * dim, m.weights().final_norm.data(), dim,
                    Cfg::norm_eps);
        linear(logits_.data(), vocab, lm_head(), xb_.data(), dim, n, pool);
        return {logits_.data(), std::size_t(n) * vocab};
    }

private:
    // What one layer's backward needs. Activations are token-major at the layer's sliced widths, except
    // k and v: [kv_head][token][head_dim], the layout attend() reads.
    struct Tape {
        std::vector<float> x_attn, xb_attn;              // [n, dim] residual in, normalised
        std::vector<float> q, k, v;                      // after RoPE (q, k)
        std::vector<float> probs;                        // [heads][n][n]
        std::vector<float> att;                          // [n, q_dim] attention output (Wo's input)
        std::vector<float> x_ffn, xb_ffn;                // [n, dim]
        std::vector<float> gate, up, h;                  // [n, hidden] before / after silu_mul
        std::array<std::vector<float>, kLayerMatrixCount> u;  // [n, rank] = A·x of each pair
    };

    struct Dims {
        int q_dim, kv_dim, hidden, heads, kv_heads;
    };
    Dims dims(int l, int percent) const {
        const LayerExtents e = layer_extents<Cfg>(percent, model_->is_anchor(l));
        return {e.q_dim, e.kv_dim, e.hidden, e.q_dim / head_dim, e.kv_dim / head_dim};
    }
    MatrixView lm_head() const { return model_->weights().lm_head.prefix(vocab, dim); }

    void forward_layer(int l, const LoraAdapter& ad, float scale, int n, ThreadPool& pool) {
        const Model<Cfg>& m = *model_;
        const LayerWeights& w = m.layer(l);
        const Dims d = dims(l, ad.percent);
        const auto& pairs = ad.layers[l].pairs;
        Tape& tp = layers_[l];
        for (std::size_t i = 0; i < kLayerMatrixCount; ++i) tp.u[i].resize(std::size_t(capacity_) * pairs[i].rank);
        auto U = [&](std::size_t slot) { return tp.u[slot].data(); };

        // x += Wo · attend(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x))
        std::copy_n(x_.data(), std::size_t(n) * dim, tp.x_attn.data());
        normalize(tp.xb_attn.data(), w.attn_norm, tp.x_attn.data(), n);
        lora_linear(tp.q.data(), d.q_dim, w.wq.prefix(d.q_dim, dim), pairs[lora_slot::q], scale, tp.xb_attn.data(), dim,
                    U(lora_slot::q), n, pool);
        lora_linear(k_tok_.data(), d.kv_dim, w.wk.prefix(d.kv_dim, dim), pairs[lora_slot::k], scale, tp.xb_attn.data(), dim,
                    U(lora_slot::k), n, pool);
        lora_linear(v_tok_.data(), d.kv_dim, w.wv.prefix(d.kv_dim, dim), pairs[lora_slot::v], scale, tp.xb_attn.data(), dim,
                    U(lora_slot::v), n, pool);
        for (int t = 0; t < n; ++t) {
            apply_rope(tp.q.data() + std::size_t(t) * d.q_dim, d.heads, head_dim, t, m.rope(), m.rope_pairing());
            apply_rope(k_tok_.data() + std::size_t(t) * d.kv_dim, d.kv_heads, head_dim, t, m.rope(), m.rope_pairing());
        }
        to_head_major(tp.k.data(), k_tok_.data(), n, d.kv_heads);
        to_head_major(tp.v.data(), v_tok_.data(), n, d.kv_heads);
        causal_attention(tp.att.data(), tp.q.data(), kv_view(tp.k.data(), tp.v.data(), n), tp.probs.data(), n, d.heads,
                         S::group_size, head_dim, &pool);
        lora_linear(proj_.data(), dim, w.wo.prefix(dim, d.q_dim), pairs[lora_slot::o], scale, tp.att.data(), d.q_dim,
                    U(lora_slot::o), n, pool);
        add(x_.data(), proj_.data(), std::size_t(n) * dim);

        // x += W_down · (silu(W_gate·norm(x)) ⊙ W_up·norm(x))
        std::copy_n(x_.data(), std::size_t(n) * dim, tp.x_ffn.data());
        normalize(tp.xb_ffn.data(), w.ffn_norm, tp.x_ffn.data(), n);
        lora_linear(tp.gate.data(), d.hidden, w.w_gate.prefix(d.hidden, dim), pairs[lora_slot::gate], scale, tp.xb_ffn.data(),
                    dim, U(lora_slot::gate), n, pool);
        lora_linear(tp.up.data(), d.hidden, w.w_up.prefix(d.hidden, dim), pairs[lora_slot::up], scale, tp.xb_ffn.data(), dim,
                    U(lora_slot::up), n, pool);
        const std::size_t hn = std::size_t(n) * d.hidden;
        std::copy_n(tp.gate.data(), hn, tp.h.data());
        silu_mul(tp.h.data(), tp.up.data(), int(hn));
        lora_linear(proj_.data(), dim, w.w_down.prefix(dim, d.hidden), pairs[lora_slot::down], scale, tp.h.data(), d.hidden,
                    U(lora_slot::down), n, pool);
        add(x_.data(), proj_.data(), std::size_t(n) * dim);
    }

    // Reverse of forward(); dLoss/dlogits is in logits_ (written by loss()), the final residual still in x_.
    void backward(const LoraAdapter& ad, int n, LoraAdapter& grad, ThreadPool& pool) {
        const Model<Cfg>& m = *model_;
        const float scale = ad.scale();
        linear(dxb_.data(), dim, transposed(lm_head()), logits_.data(), vocab, n, pool);
        std::fill_n(dx_.data(), std::size_t(n) * dim, 0.0f);
        for (int t = 0; t < n; ++t)
            rmsnorm_backward(dx_.data() + std::size_t(t) * dim, dxb_.data() + std::size_t(t) * dim, x_.data() + std::size_t(t) * dim,
                             m.weights().final_norm.data(), dim, Cfg::norm_eps);
        for (int l = Cfg::n_layers - 1; l >= 0; --l) backward_layer(l, ad, scale, n, grad, pool);
    }

    void backward_layer(int l, const LoraAdapter& ad, float scale, int n, LoraAdapter& grad, ThreadPool& pool) {
        const Model<Cfg>& m = *model_;
        const LayerWeights& w = m.layer(l);
        const Dims d = dims(l, ad.percent);
        const auto& pairs = ad.layers[l].pairs;
        auto& gpairs = grad.layers[l].pairs;
        Tape& tp = layers_[l];
        int max_rank = 0;
        for (const LoraPair& p : pairs) max_rank = std::max(max_rank, p.rank);
        du_.resize(std::size_t(capacity_) * max_rank);
        auto back = [&](float* dX, int lddx, const MatrixView& W, std::size_t slot, const float* X, int ldx, const float* dY, int ldy) {
            lora_linear_backward(dX, lddx, gpairs[slot], W, pairs[slot], scale, X, ldx, tp.u[slot].data(), dY, ldy, du_.data(), n, pool);
        };
        const std::size_t nd = std::size_t(n) * dim;

        // FFN: dx (the residual's gradient) is dY of W_down; the norm's backward adds its branch to dx.
        back(dh_.data(), d.hidden, w.w_down.prefix(dim, d.hidden), lora_slot::down, tp.h.data(), d.hidden, dx_.data(), dim);
        swiglu_backward(dgate_.data(), dup_.data(), dh_.data(), tp.gate.data(), tp.up.data(), n * d.hidden);
        back(dxb_.data(), dim, w.w_gate.prefix(d.hidden, dim), lora_slot::gate, tp.xb_ffn.data(), dim, dgate_.data(), d.hidden);
        back(tmp_.data(), dim, w.w_up.prefix(d.hidden, dim), lora_slot::up, tp.xb_ffn.data(), dim, dup_.data(), d.hidden);
        add(dxb_.data(), tmp_.data(), nd);
        denormalize(w.ffn_norm, tp.x_ffn.data(), n);

        // Attention.
        back(datt_.data(), d.q_dim, w.wo.prefix(dim, d.q_dim), lora_slot::o, tp.att.data(), d.q_dim, dx_.data(), dim);
        causal_attention_backward(dq_.data(), dk_.data(), dv_.data(), datt_.data(), tp.q.data(), kv_view(tp.k.data(), tp.v.data(), n),
                                  tp.probs.data(), n, d.heads, S::group_size, head_dim, dscores_.data(), &pool);
        to_token_major(dk_tok_.data(), dk_.data(), n, d.kv_heads);
        to_token_major(dv_tok_.data(), dv_.data(), n, d.kv_heads);
        for (int t = 0; t < n; ++t) {
            rope_backward(dq_.data() + std::size_t(t) * d.q_dim, d.heads, head_dim, t, m.rope(), m.rope_pairing());
            rope_backward(dk_tok_.data() + std::size_t(t) * d.kv_dim, d.kv_heads, head_dim, t, m.rope(), m.rope_pairing());
        }
        // Below layer 0 is the frozen embedding: its input gradient is not needed, only dA, dB.
        const bool need_dx = l > 0;
        back(need_dx ? dxb_.data() : nullptr, dim, w.wq.prefix(d.q_dim, dim), lora_slot::q, tp.xb_attn.data(), dim, dq_.data(), d.q_dim);
        back(need_dx ? tmp_.data() : nullptr, dim, w.wk.prefix(d.kv_dim, dim), lora_slot::k, tp.xb_attn.data(), dim,
             dk_tok_.data(), d.kv_dim);
        if (need_dx) add(dxb_.data(), tmp_.data(), nd);
        back(need_dx ? tmp_.data() : nullptr, dim, w.wv.prefix(d.kv_dim, dim), lora_slot::v, tp.xb_attn.data(), dim,
             dv_tok_.data(), d.kv_dim);
        if (need_dx) {
            add(dxb_.data(), tmp_.data(), nd);
            denormalize(w.attn_norm, tp.x_attn.data(), n);
        }
    }

    static void normalize(float* out, const std::vector<float>& weight, const float* x, int n) {
        for (int t = 0; t < n; ++t)
            rmsnorm(out + std::size_t(t) * dim, x + std::size_t(t) * dim, weight.data(), dim, Cfg::norm_eps);
    }
    // dx += RMSNorm's backward of dxb_ at the residual x.
    void denormalize(const std::vector<float>& weight, const float* x, int n) {
        for (int t = 0; t < n; ++t)
            rmsnorm_backward(dx_.data() + std::size_t(t) * dim, dxb_.data() + std::size_t(t) * dim, x + std::size_t(t) * dim,
                             weight.data(), dim, Cfg::norm_eps);
    }
    static void add(float* y, const float* x, std::size_t count) {
        for (std::size_t i = 0; i < count; ++i) y[i] += x[i];
    }
    static KvLayerView kv_view(const float* k, const float* v, int n) { return {k, v, std::size_t(n) * head_dim}; }
    // [n][kv_heads·head_dim] ↔ [kv_heads][n][head_dim]
    static void to_head_major(float* dst, const float* src, int n, int kv_heads) {
        for (int t = 0; t < n; ++t)
            for (int g = 0; g < kv_heads; ++g)
                std::copy_n(src + (std::size_t(t) * kv_heads + g) * head_dim, head_dim, dst + (std::size_t(g) * n + t) * head_dim);
    }
    static void to_token_major(float* dst, const float* src, int n, int kv_heads) {
        for (int g = 0; g < kv_heads; ++g)
            for (int t = 0; t < n; ++t)
                std::copy_n(src + (std::size_t(g) * n + t) * head_dim, head_dim, dst + (std::size_t(t) * kv_heads + g) * head_dim);
    }

    void check_inputs(const LoraAdapter& adapter, std::span<const int> tokens) const {
        const int n = int(tokens.size());
        require(n >= 1 && n <= capacity_, "DistillStep",
                std::to_string(n) + " tokens; a step takes 1.." + std::to_string(capacity_) + " (its max_tokens)");
        for (int id : tokens)
            require(id >= 0 && id < vocab, "DistillStep",
                    "token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
        validate<Cfg>(adapter, model_->anchors());
    }
    static void check_gradient(const LoraAdapter& adapter, const LoraAdapter& grad) {
        require(grad.layers.size() == adapter.layers.size(), "DistillStep", "gradient and adapter differ in layer count");
        for (std::size_t l = 0; l < adapter.layers.size(); ++l)
            for (std::size_t i = 0; i < kLayerMatrixCount; ++i) {
                const LoraPair &p = adapter.layers[l].pairs[i], &g = grad.layers[l].pairs[i];
                require(p.rank == g.rank && p.rows == g.rows && p.cols == g.cols && g.a.size() == p.a.size() && g.b.size() == p.b.size(),
                        "DistillStep", LoraAdapter::tensor_name(int(l), i) + ": gradient is not shaped like the adapter (use lora_zeros_like)");
            }
    }

    const Model<Cfg>* model_;
    int capacity_;
    std::vector<Tape> layers_;
    std::vector<float> x_, xb_, proj_, dx_, dxb_, tmp_, k_tok_, v_tok_, dq_, datt_, dk_, dv_, dk_tok_, dv_tok_, dh_, dgate_, dup_,
        dscores_, du_, logits_;
    std::vector<double> kl_;
};

// One step with fresh scratch (convenient; a training loop should keep a DistillStep instead).
template <ModelConfig Cfg>
double distill_step(const Model<Cfg>& model, const LoraAdapter& adapter, std::span<const int> tokens,
                    std::span<const float> teacher_logits, LoraAdapter& grad, ThreadPool& pool) {
    DistillStep<Cfg> step(model, std::max(1, std::min(int(tokens.size()), Cfg::context)));
    return step.step(adapter, tokens, teacher_logits, grad, pool);
}

}  // namespace elastilm
