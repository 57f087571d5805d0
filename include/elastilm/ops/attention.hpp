// Causal multi-head attention with grouped KV heads over a KV cache, for one query position.
//
// Cache layout per layer: [kv_head][position][head_dim], so a KV head's keys are contiguous over
// positions and keeping the first k KV heads (a width ratio) reads a prefix of the layer's cache.
// The cache holds fp32 or fp16 (half the memory; model/kv_cache.hpp): the same SIMD code reads both,
// widening fp16 as it loads (simd/f16_widen.hpp), on every architecture.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "elastilm/ops/softmax.hpp"
#include "elastilm/simd/f16_widen.hpp"
#include "elastilm/simd/lane_sums.hpp"

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
// scores[h·n_pos + p] = scale · q_h·k_p for `heads` query heads that read one KV head (q_h = q + h·head_dim),
// over positions p < n_pos. `lanes` positions at a time: each head's dot products with a block of keys
// end in `lanes` batches of partial sums, reduced together (simd/lane_sums.hpp) rather than one
// horizontal add per position, and the block's keys, widened from the cache as they load, stay in L1
// for every head of the group. Positions past the last whole block, and heads that are not a whole
// number of vectors, take one dot() each.
template <class T>
void score_positions(float* scores, const float* q, int heads, int head_dim, const T* k, int n_pos, float scale) {
    using simd::fbatch;
    constexpr int S = simd::lanes;
    int p0 = 0;
    if (head_dim % S == 0)
        for (; p0 + S <= n_pos; p0 += S)
            for (int h = 0; h < heads; ++h) {
                const float* qh = q + std::size_t(h) * head_dim;
                const T* kb = k + std::size_t(p0) * head_dim;
                fbatch acc[S];
                for (fbatch& a : acc) a = fbatch(0.0f);
                for (int d = 0; d < head_dim; d += S) {
                    const fbatch qd = simd::load(qh + d);
                    for (int j = 0; j < S; ++j) acc[j] = xsimd::fma(qd, simd::load(kb + std::size_t(j) * head_dim + d), acc[j]);
                }
                (simd::lane_sums(acc) * fbatch(scale)).store_unaligned(scores + std::size_t(h) * n_pos + p0);
            }
    for (int h = 0; h < heads; ++h)
        for (int p = p0; p < n_pos; ++p)
            scores[std::size_t(h) * n_pos + p] = dot(q + std::size_t(h) * head_dim, k + std::size_t(p) * head_dim, head_dim) * scale;
}

// y[h·n .. h·n + n) = Σ_p w[h·w_stride + p]·x[p·n .. p·n + n) over p < rows, for Heads weight rows at
// once: the attention-weighted sums of the values for Heads query heads that read the same values,
// each value row loaded (and widened) once for all of them. Up to four vectors of each head's y stay in
// registers across all rows; adding each row into y in memory instead made every row wait for the
// store of the row before. The sum per element runs in the same order (p ascending, one fused
// multiply-add each) whatever Heads is.
template <int Heads, class T>
void weighted_rows(float* y, const float* w, std::size_t w_stride, const T* x, int rows, int n) {
    using simd::fbatch;
    constexpr int S = simd::lanes;
    int d = 0;
    for (; d + 4 * S <= n; d += 4 * S) {
        fbatch a[Heads][4];
        for (auto& head : a)
            for (fbatch& v : head) v = fbatch(0.0f);
        for (int p = 0; p < rows; ++p) {
            const T* xp = x + std::size_t(p) * n + d;
            const fbatch x0 = simd::load(xp), x1 = simd::load(xp + S), x2 = simd::load(xp + 2 * S), x3 = simd::load(xp + 3 * S);
            for (int h = 0; h < Heads; ++h) {
                const fbatch wp(w[h * w_stride + p]);
                a[h][0] = xsimd::fma(wp, x0, a[h][0]);
                a[h][1] = xsimd::fma(wp, x1, a[h][1]);
                a[h][2] = xsimd::fma(wp, x2, a[h][2]);
                a[h][3] = xsimd::fma(wp, x3, a[h][3]);
            }
        }
        for (int h = 0; h < Heads; ++h)
            for (int c = 0; c < 4; ++c) a[h][c].store_unaligned(y + std::size_t(h) * n + d + c * S);
    }
    for (; d + S <= n; d += S) {
        fbatch a[Heads];
        for (fbatch& v : a) v = fbatch(0.0f);
        for (int p = 0; p < rows; ++p) {
            const fbatch xp = simd::load(x + std::size_t(p) * n + d);
            for (int h = 0; h < Heads; ++h) a[h] = xsimd::fma(fbatch(w[h * w_stride + p]), xp, a[h]);
        }
        for (int h = 0; h < Heads; ++h) a[h].store_unaligned(y + std::size_t(h) * n + d);
    }
    for (; d < n; ++d)
        for (int h = 0; h < Heads; ++h) {
            float a = 0;
            for (int p = 0; p < rows; ++p) a = std::fma(w[h * w_stride + p], simd::to_float(x[std::size_t(p) * n + d]), a);
            y[std::size_t(h) * n + d] = a;
        }
}

// Query heads whose value sums weighted_rows forms together: four heads' accumulators (16 vectors) and
// a row of values (4) fit AVX-512's 32 registers; AVX2's 16 hold two heads' without spilling.
inline constexpr int kValueHeadsAtOnce = simd::lanes >= 16 ? 4 : 2;
}  // namespace detail

// out[h*head_dim ...] = Σ_p softmax_p(q_h·k_p / sqrt(head_dim)) v_p for each query head h < n_heads,
// with query head h reading KV head h / group_size, over positions [0, n_pos). The heads of one KV head
// run together: their scores a block of positions at a time, their weighted sums a row of values at a
// time (bench/kernels.cpp, attention_decode/…).
// `scores` is scratch of at least min(n_heads, group_size) · n_pos floats; with one head it holds that
// head's probabilities afterwards (lora/grad_ops.hpp keeps them).
template <class T>
void attend(float* out, const float* q, int n_heads, int group_size, int head_dim, const KvView<T>& kv, int n_pos, float* scores) {
    constexpr int H = detail::kValueHeadsAtOnce;
    const float scale = 1.0f / std::sqrt(float(head_dim));
    for (int h0 = 0; h0 < n_heads;) {
        const int kv_head = h0 / group_size, heads = std::min(n_heads, (kv_head + 1) * group_size) - h0;
        const T* k = kv.k + std::size_t(kv_head) * kv.head_stride;
        const T* v = kv.v + std::size_t(kv_head) * kv.head_stride;
        detail::score_positions(scores, q + std::size_t(h0) * head_dim, heads, head_dim, k, n_pos, scale);
        for (int h = 0; h < heads; ++h) softmax(scores + std::size_t(h) * n_pos, n_pos);
        float* o = out + std::size_t(h0) * head_dim;
        int h = 0;
        for (; h + H <= heads; h += H)
            detail::weighted_rows<H>(o + std::size_t(h) * head_dim, scores + std::size_t(h) * n_pos, std::size_t(n_pos), v, n_pos,
                                     head_dim);
        for (; h < heads; ++h)
            detail::weighted_rows<1>(o + std::size_t(h) * head_dim, scores + std::size_t(h) * n_pos, std::size_t(n_pos), v, n_pos,
                                     head_dim);
        h0 += heads;
    }
}

}  // namespace elastilm
