// Causal multi-head attention with grouped KV heads over a KV cache, for one query position.
//
// Cache layout per layer: [kv_head][position][head_dim], so a KV head's keys are contiguous over
// positions and keeping the first k KV heads (a width ratio) reads a prefix of the layer's cache.
// The cache holds fp32 or fp16 (half the memory; model/kv_cache.hpp): the same SIMD code reads both,
// widening fp16 as it loads (simd/f16_widen.hpp), on every architecture.
#pragma once

#include <cmath>
#include <cstddef>

#include "elastilm/ops/softmax.hpp"
#include "elastilm/simd/f16_widen.hpp"

namespace elastilm {

template <class T>
struct KvView {
    const T* k = nullptr;          // [kv_head][position][head_dim]
    const T* v = nullptr;
    std::size_t head_stride = 0;   // elements between consecutive KV heads (= context * head_dim)
};
using KvLayerView = KvView<float>;

namespace detail {
// Σ_d a[d]·b[d] over n elements.
template <class T>
float dot(const float* a, const T* b, int n) {
    using simd::fbatch;
    constexpr int S = simd::lanes;
    fbatch acc0{}, acc1{};
    int d = 0;
    for (; d + 2 * S <= n; d += 2 * S) {
        acc0 = xsimd::fma(simd::load(a + d), simd::load(b + d), acc0);
        acc1 = xsimd::fma(simd::load(a + d + S), simd::load(b + d + S), acc1);
    }
    for (; d + S <= n; d += S) acc0 = xsimd::fma(simd::load(a + d), simd::load(b + d), acc0);
    float sum = xsimd::hadd(acc0 + acc1);
    for (; d < n; ++d) sum += a[d] * simd::to_float(b[d]);
    return sum;
}
// y[0 .. n) = Σ_p w[p]·x[p·n .. p·n + n) over p < rows: the attention-weighted sum of the values. Up to
// four vectors of y stay in registers across all rows; adding each row into y in memory instead made
// every row wait for the store of the row before. The sum per element runs in the same order (p
// ascending, one fused multiply-add each) either way.
template <class T>
void weighted_rows(float* y, const float* w, const T* x, int rows, int n) {
    using simd::fbatch;
    constexpr int S = simd::lanes;
    int d = 0;
    for (; d + 4 * S <= n; d += 4 * S) {
        fbatch a0{}, a1{}, a2{}, a3{};
        for (int p = 0; p < rows; ++p) {
            const fbatch wp(w[p]);
            const T* xp = x + std::size_t(p) * n + d;
            a0 = xsimd::fma(wp, simd::load(xp), a0);
            a1 = xsimd::fma(wp, simd::load(xp + S), a1);
            a2 = xsimd::fma(wp, simd::load(xp + 2 * S), a2);
            a3 = xsimd::fma(wp, simd::load(xp + 3 * S), a3);
        }
        a0.store_unaligned(y + d), a1.store_unaligned(y + d + S), a2.store_unaligned(y + d + 2 * S), a3.store_unaligned(y + d + 3 * S);
    }
    for (; d + S <= n; d += S) {
        fbatch a{};
        for (int p = 0; p < rows; ++p) a = xsimd::fma(fbatch(w[p]), simd::load(x + std::size_t(p) * n + d), a);
        a.store_unaligned(y + d);
    }
    for (; d < n; ++d) {
        float a = 0;
        for (int p = 0; p < rows; ++p) a = std::fma(w[p], simd::to_float(x[std::size_t(p) * n + d]), a);
        y[d] = a;
    }
}
}  // namespace detail

// out[h*head_dim ...] = Σ_p softmax_p(q_h·k_p / sqrt(head_dim)) v_p for each query head h < n_heads,
// with query head h reading KV head h / group_size, over positions [0, n_pos).
// `scores` is scratch of at least n_pos floats (it holds the probabilities afterwards).
template <class T>
void attend(float* out, const float* q, int n_heads, int group_size, int head_dim, const KvView<T>& kv, int n_pos, float* scores) {
    const float scale = 1.0f / std::sqrt(float(head_dim));
    for (int h = 0; h < n_heads; ++h) {
        const float* qh = q + std::size_t(h) * head_dim;
        const std::size_t kv_off = std::size_t(h / group_size) * kv.head_stride;
        const T* kh = kv.k + kv_off;
        const T* vh = kv.v + kv_off;
        for (int p = 0; p < n_pos; ++p) scores[p] = detail::dot(qh, kh + std::size_t(p) * head_dim, head_dim) * scale;
        softmax(scores, n_pos);
        detail::weighted_rows(out + std::size_t(h) * head_dim, scores, vh, n_pos, head_dim);
    }
}

}  // namespace elastilm
