// One transformer block of the sub-model at `Percent`% width (LLaMA: pre-norm attention with GQA and
// RoPE, then a pre-norm SwiGLU FFN, each added to the residual stream).
//
// Every sliced size is a constexpr of Width<Cfg, Percent>: the block reads the first q_dim rows of Wq,
// the first kv_dim rows of Wk/Wv, the first q_dim inputs of Wo, and the first `hidden` neurons of the
// FFN. Because elastic models store units in descending importance, these prefixes are the most
// important units (ElastiLM §3.1). The hidden size `dim` is never sliced. When the running ratio has a
// LoRA adapter, each group of projections that share an input first forms its low-rank inputs, then
// every projection adds its correction (model/lora_apply.hpp); otherwise the only cost is one null test per
// projection.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/model/lora_apply.hpp"
#include "elastilm/model/activations.hpp"
#include "elastilm/model/kv_cache.hpp"
#include "elastilm/model/linear.hpp"
#include "elastilm/model/model.hpp"
#include "elastilm/ops/attention.hpp"
#include "elastilm/ops/attention_tiled.hpp"
#include "elastilm/ops/rmsnorm.hpp"
#include "elastilm/ops/rope.hpp"
#include "elastilm/ops/swiglu.hpp"

namespace elastilm {

template <ModelConfig Cfg, int Percent>
struct Block {
    using W = Width<Cfg, Percent>;
    static constexpr int dim = Cfg::dim;
    static constexpr int head_dim = Cfg::head_dim;

    // Tokens [pos0, pos0 + n) whose residual streams are a.x[0 .. n).
    static void run(const Model<Cfg>& m, int l, KvCache<Cfg>& cache, int pos0, int n, Activations<Cfg>& a, ThreadPool& pool,
                    LayerLora lora = {}) {
        attention(m, l, cache, pos0, n, a, pool, lora);
        ffn(m.layer(l), l, n, a, pool, lora);
    }

    // x += Wo · attend(rope(Wq·norm(x)), cache ∪ rope(Wk·norm(x)), cache ∪ Wv·norm(x))
    static void attention(const Model<Cfg>& m, int l, KvCache<Cfg>& cache, int pos0, int n, Activations<Cfg>& a,
                          ThreadPool& pool, LayerLora lora = {}) {
        const LayerWeights& w = m.layer(l);
        normalize(w.attn_norm, n, a);
        lora_inputs_of(lora_group::qkv, lora, a.xb.data(), dim, n, a, pool);
        if (n == 1 && !lora) {  // decode without an adapter: the three products of one input as one
            float* const y[] = {a.q.data(), a.k.data(), a.v.data()};
            const MatrixView wqkv[] = {w.wq.prefix(W::q_dim, dim), w.wk.prefix(W::kv_dim, dim), w.wv.prefix(W::kv_dim, dim)};
            matvecs(y, wqkv, a.xb.data(), &pool);
        } else {
            project(a.q.data(), W::q_dim, w.wq.prefix(W::q_dim, dim), lora, lora_slot::q, a.xb.data(), dim, n, a, pool);
            project(a.k.data(), W::kv_dim, w.wk.prefix(W::kv_dim, dim), lora, lora_slot::k, a.xb.data(), dim, n, a, pool);
            project(a.v.data(), W::kv_dim, w.wv.prefix(W::kv_dim, dim), lora, lora_slot::v, a.xb.data(), dim, n, a, pool);
        }

        for (int t = 0; t < n; ++t) {
            float* q = a.q.data() + std::size_t(t) * W::q_dim;
            float* k = a.k.data() + std::size_t(t) * W::kv_dim;
            const float* v = a.v.data() + std::size_t(t) * W::kv_dim;
            apply_rope(q, W::heads, head_dim, pos0 + t, m.rope(), m.rope_pairing());
            apply_rope(k, W::kv_heads, head_dim, pos0 + t, m.rope(), m.rope_pairing());
            for (int h = 0; h < W::kv_heads; ++h) cache.store(l, h, pos0 + t, k + h * head_dim, v + h * head_dim);
        }

        const auto t0 = std::chrono::steady_clock::now();
        if (cache.dtype() == DType::f16) attend_all(cache.template layer<f16_bits>(l), pos0, n, a, pool);
        else attend_all(cache.template layer<float>(l), pos0, n, a, pool);
        a.attention_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

        if (a.observer) a.observer->attention_heads(l, a.att_out.data(), n, W::q_dim);
        lora_inputs_of(lora_group::o, lora, a.att_out.data(), W::q_dim, n, a, pool);
        project(a.proj.data(), dim, w.wo.prefix(dim, W::q_dim), lora, lora_slot::o, a.att_out.data(), W::q_dim, n, a, pool);
        add_residual(n, a);
    }

    // x += W_down · (silu(W_gate·norm(x)) ⊙ W_up·norm(x))
    static void ffn(const LayerWeights& w, int l, int n, Activations<Cfg>& a, ThreadPool& pool, LayerLora lora = {}) {
        normalize(w.ffn_norm, n, a);
        lora_inputs_of(lora_group::gate_up, lora, a.xb.data(), dim, n, a, pool);
        if (n == 1 && !lora) {
            float* const y[] = {a.gate.data(), a.up.data()};
            const MatrixView wgu[] = {w.w_gate.prefix(W::hidden, dim), w.w_up.prefix(W::hidden, dim)};
            matvecs(y, wgu, a.xb.data(), &pool);
        } else {
            project(a.gate.data(), W::hidden, w.w_gate.prefix(W::hidden, dim), lora, lora_slot::gate, a.xb.data(), dim, n, a, pool);
            project(a.up.data(), W::hidden, w.w_up.prefix(W::hidden, dim), lora, lora_slot::up, a.xb.data(), dim, n, a, pool);
        }
        silu_mul(a.gate.data(), a.up.data(), n * W::hidden);
        if (a.observer) a.observer->ffn_hidden(l, a.gate.data(), n, W::hidden);
        lora_inputs_of(lora_group::down, lora, a.gate.data(), W::hidden, n, a, pool);
        project(a.proj.data(), dim, w.w_down.prefix(dim, W::hidden), lora, lora_slot::down, a.gate.data(), W::hidden, n, a, pool);
        add_residual(n, a);
    }

private:
    // att_out = attention of every (token, query head) over the cache; causal: token t sees positions
    // [0, pos0 + t]. Decode (one token) runs attend() per head; prefill runs the tiled kernel per
    // (head, block of tokens), unless the per-query path is selected for comparison.
    template <class T>
    static void attend_all(const KvView<T>& kv, int pos0, int n, Activations<Cfg>& a, ThreadPool& pool) {
        if (n > 1 && prefill_attention() == PrefillAttention::tiled) attend_tiled(kv, pos0, n, a, pool);
        else attend_per_query(kv, pos0, n, a, pool);
    }
    // Work items are (head, query block). Under the causal mask block b reads pos0 + (b + 1)·query_block
    // keys, so items cost unequal triangles: the threads take them from a shared counter, latest block
    // (dearest) first, which leaves them at most one small item apart when the counter runs out.
    template <class T>
    static void attend_tiled(const KvView<T>& kv, int pos0, int n, Activations<Cfg>& a, ThreadPool& pool) {
        constexpr int QB = tiled::query_block;
        const int blocks = (n + QB - 1) / QB, items = blocks * W::heads;
        std::atomic<int> next{0};
        pool.parallel_for(pool.size(), [&](int, int) {
            thread_local AttentionTiles tiles;
            for (int i = next.fetch_add(1, std::memory_order_relaxed); i < items; i = next.fetch_add(1, std::memory_order_relaxed)) {
                const int b = blocks - 1 - i / W::heads, h = i % W::heads;
                const int t0 = b * QB, nq = std::min(QB, n - t0);
                const std::size_t off = std::size_t(t0) * W::q_dim + std::size_t(h) * head_dim;
                const std::size_t kv_off = std::size_t(h / Shape<Cfg>::group_size) * kv.head_stride;
                attend_causal(a.att_out.data() + off, W::q_dim, a.q.data() + off, W::q_dim, nq, pos0 + t0, head_dim, kv.k + kv_off,
                              kv.v + kv_off, tiles);
            }
        });
    }
    // Every (token, query head) pair is independent; a thread's pairs go to attend() in runs of one
    // token's heads that read one KV head, which it scores and sums together (ops/attention.hpp).
    template <class T>
    static void attend_per_query(const KvView<T>& kv, int pos0, int n, Activations<Cfg>& a, ThreadPool& pool) {
        constexpr int group = Shape<Cfg>::group_size;
        pool.parallel_for(n * W::heads, [&](int begin, int end) {
            thread_local std::vector<float> scores;
            if (scores.size() < std::size_t(group) * Cfg::context) scores.resize(std::size_t(group) * Cfg::context);
            for (int i = begin; i < end;) {
                const int t = i / W::heads, h = i % W::heads;
                const int run = std::min({end - i, W::heads - h, group - h % group});  // to the end of the range, token or group
                const std::size_t off = std::size_t(t) * W::q_dim + std::size_t(h) * head_dim;
                KvView<T> head = kv;
                head.k += std::size_t(h / group) * kv.head_stride;
                head.v += std::size_t(h / group) * kv.head_stride;
                attend(a.att_out.data() + off, a.q.data() + off, run, run, head_dim, head, pos0 + t + 1, scores.data());
                i += run;
            }
        });
    }
    // The adapter's low-rank inputs for the projections of `group`, which all read X.
    static void lora_inputs_of(std::size_t group, LayerLora lora, const float* X, int ldx, int n, Activations<Cfg>& a,
                               ThreadPool& pool) {
        if (lora) lora_inputs(a.lora, *lora.layer, group, lora.scale, X, ldx, n, pool);
    }
    // Y = X·W_sliceᵀ, plus the adapter's low-rank correction when this ratio has one. Prefill's bf16 GEMM
    // may round the gate and up projections' weights (half its dots), measured to cost the least accuracy
    // of any matrix (simd/gemm_bf16.hpp); every other W is read exactly.
    static void project(float* Y, int ldy, const MatrixView& W, LayerLora lora, std::size_t slot, const float* X, int ldx,
                        int n, Activations<Cfg>& a, ThreadPool& pool) {
        const GemmWeights weights = slot == lora_slot::gate || slot == lora_slot::up ? GemmWeights::may_round : GemmWeights::exact;
        if (lora) linear_with_lora(Y, ldy, W, lora.layer->pairs[slot], X, ldx, n, a.lora, pool, weights);
        else linear(Y, ldy, W, X, ldx, n, pool, weights);
    }
    static void normalize(const std::vector<float>& weight, int n, Activations<Cfg>& a) {
        for (int t = 0; t < n; ++t)
            rmsnorm(a.xb.data() + std::size_t(t) * dim, a.x.data() + std::size_t(t) * dim, weight.data(), dim, Cfg::norm_eps);
    }
    static void add_residual(int n, Activations<Cfg>& a) {
        for (std::size_t i = 0, end = std::size_t(n) * dim; i < end; ++i) a.x[i] += a.proj[i];
    }
};

}  // namespace elastilm
