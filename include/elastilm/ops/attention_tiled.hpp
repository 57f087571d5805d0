// Causal attention for a block of consecutive queries of one head, tiled for prefill (FlashAttention's
// schedule, Dao et al. 2022, §3.1): a block of queries meets the keys one tile at a time, and an online
// softmax (running max m and sum l per query, fp32) rescales what earlier tiles accumulated, so no
// query ever holds all its scores.
//
// Why: attend() (ops/attention.hpp) reads a query's whole K and V history on its own and reduces every
// q·k dot horizontally, so at n prompt tokens it streams K and V n times and its share of prefill grows
// with the prompt (~40 % of docs-95M's TTFT at 1024 tokens). Here each tile of keys and values is widened
// once into fp32 scratch (K transposed), and every K or V row a register loads serves `query_rows`
// queries: scores are an outer-product micro-kernel (query rows × 2 vectors of keys, no horizontal adds),
// and O += P·V another (query rows × 2 vectors of head_dim).
//
// Numbers match attend() up to rounding: the same widened K/V, the same fp32 products, summed in another
// order, and exp() from xsimd instead of std::exp.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "elastilm/ops/attention.hpp"
#include "elastilm/simd/f16_widen.hpp"

namespace elastilm {

namespace tiled {
inline constexpr int query_rows = 4;    // queries sharing each K/V row a register holds
inline constexpr int key_block = 64;    // keys per tile: a multiple of 2 vectors on every target (≤ 16 lanes)
inline constexpr int query_block = 64;  // queries sharing one widened tile; also the work item of a prefill split
static_assert(key_block % (2 * simd::lanes) == 0);
}  // namespace tiled

// One thread's scratch for attend_causal, sized for a head_dim on first use (never on the token path after).
struct AttentionTiles {
    int head_dim = 0;
    int row = 0;                 // head_dim rounded up to whole vectors: the stride of v and o
    std::vector<float> kt;       // [head_dim][key_block]: the tile's keys, transposed, fp32
    std::vector<float> v;        // [key_block][row]: the tile's values, fp32, zero-padded
    std::vector<float> s;        // [query_rows][key_block]: scores, then probabilities, of one register block
    std::vector<float> o;        // [query_block + query_rows][row]: unnormalised outputs (the extra rows
                                 // absorb the register block's padding rows)
    std::vector<float> m, l;     // [query_block]: running max and sum of exp(score - m)

    void fit(int d) {
        if (d == head_dim) return;
        head_dim = d;
        row = (d + simd::lanes - 1) / simd::lanes * simd::lanes;
        kt.assign(std::size_t(d) * tiled::key_block, 0.0f);
        v.assign(std::size_t(tiled::key_block) * row, 0.0f);
        s.assign(std::size_t(tiled::query_rows) * tiled::key_block, 0.0f);
        o.assign(std::size_t(tiled::query_block + tiled::query_rows) * row, 0.0f);
        m.assign(tiled::query_block, 0.0f);
        l.assign(tiled::query_block, 0.0f);
    }
};

namespace detail {
constexpr float minus_inf = -std::numeric_limits<float>::infinity();

// The largest lane (xsimd 8.1 has no reduce_max).
inline float max_lane(simd::fbatch x) {
    alignas(64) float lane[simd::lanes];
    x.store_aligned(lane);
    return *std::max_element(lane, lane + simd::lanes);
}

// Keys and values [kb, kb + nk) of one KV head into the tiles as fp32; keys past nk become zeros (their
// scores are masked), so the micro-kernels always run on whole vectors.
template <class T>
void widen_tile(AttentionTiles& t, const T* k, const T* v, int kb, int nk) {
    constexpr int KB = tiled::key_block;
    const int d = t.head_dim;
    for (int j = 0; j < nk; ++j) {
        const T* kr = k + std::size_t(kb + j) * d;
        const T* vr = v + std::size_t(kb + j) * d;
        float* vo = t.v.data() + std::size_t(j) * t.row;
        int e = 0;
        for (; e + simd::lanes <= d; e += simd::lanes) simd::load(vr + e).store_unaligned(vo + e);
        for (; e < d; ++e) vo[e] = simd::to_float(vr[e]);
        for (e = 0; e < d; ++e) t.kt[std::size_t(e) * KB + j] = simd::to_float(kr[e]);
    }
    for (int e = 0; e < d; ++e) std::fill_n(t.kt.data() + std::size_t(e) * KB + nk, KB - nk, 0.0f);
}

// s[i][c .. c + V·lanes) = scale · q_i · k_c.. for the register block's rows: each key vector loaded from
// the transposed tile is multiplied by query_rows broadcast query elements.
template <int V>
void score_columns(float* s, const float* const* q, const float* kt, int head_dim, int c, float scale) {
    using simd::fbatch;
    constexpr int R = tiled::query_rows, S = simd::lanes, KB = tiled::key_block;
    fbatch acc[R][V] = {};
    for (int e = 0; e < head_dim; ++e) {
        fbatch kv[V];
        for (int u = 0; u < V; ++u) kv[u] = fbatch::load_unaligned(kt + std::size_t(e) * KB + c + u * S);
        for (int i = 0; i < R; ++i) {
            const fbatch qb(q[i][e]);
            for (int u = 0; u < V; ++u) acc[i][u] = xsimd::fma(qb, kv[u], acc[i][u]);
        }
    }
    const fbatch sb(scale);
    for (int i = 0; i < R; ++i)
        for (int u = 0; u < V; ++u) (acc[i][u] * sb).store_unaligned(s + i * KB + c + u * S);
}

// o_i[c .. c + V·lanes) = corr_i · o_i + Σ_j p_i[j] · v_j for j < nv: each value vector loaded serves
// query_rows rows.
template <int V>
void accumulate_columns(float* const* o, const float* p, const float* corr, const float* v, int row, int nv, int c) {
    using simd::fbatch;
    constexpr int R = tiled::query_rows, S = simd::lanes, KB = tiled::key_block;
    fbatch acc[R][V];
    for (int i = 0; i < R; ++i)
        for (int u = 0; u < V; ++u) acc[i][u] = fbatch::load_unaligned(o[i] + c + u * S) * fbatch(corr[i]);
    for (int j = 0; j < nv; ++j) {
        fbatch vv[V];
        for (int u = 0; u < V; ++u) vv[u] = fbatch::load_unaligned(v + std::size_t(j) * row + c + u * S);
        for (int i = 0; i < R; ++i) {
            const fbatch pb(p[i * KB + j]);
            for (int u = 0; u < V; ++u) acc[i][u] = xsimd::fma(pb, vv[u], acc[i][u]);
        }
    }
    for (int i = 0; i < R; ++i)
        for (int u = 0; u < V; ++u) acc[i][u].store_unaligned(o[i] + c + u * S);
}
}  // namespace detail

// out row t (stride ldo) = Σ_{p ≤ pos0 + t} softmax_p(q_t·k_p / √head_dim) v_p for the n_q queries of one
// query head at positions pos0 .. pos0 + n_q - 1 (q row t at stride ldq): the causal attention attend()
// gives each of them, for a whole block. k and v are that head's KV head, [position][head_dim], holding
// at least positions [0, pos0 + n_q) (the cache prefix and the block's own keys).
template <class T>
void attend_causal(float* out, int ldo, const float* q, int ldq, int n_q, int pos0, int head_dim, const T* k, const T* v,
                   AttentionTiles& t) {
    using simd::fbatch;
    constexpr int R = tiled::query_rows, S = simd::lanes, KB = tiled::key_block;
    t.fit(head_dim);
    const float scale = 1.0f / std::sqrt(float(head_dim));
    const int row = t.row;

    for (int t0 = 0; t0 < n_q; t0 += tiled::query_block) {
        const int nq = std::min(tiled::query_block, n_q - t0);
        std::fill_n(t.o.data(), std::size_t(nq) * row, 0.0f);
        std::fill_n(t.m.data(), nq, detail::minus_inf);
        std::fill_n(t.l.data(), nq, 0.0f);
        const int n_keys = pos0 + t0 + nq;  // the block's last query sees keys [0, n_keys)

        for (int kb = 0; kb < n_keys; kb += KB) {
            const int nk = std::min(KB, n_keys - kb);
            detail::widen_tile(t, k, v, kb, nk);

            for (int r0 = 0; r0 < nq; r0 += R) {
                const int nr = std::min(R, nq - r0);
                const int first = pos0 + t0 + r0;  // position of the register block's first query
                const int last = first + nr - 1;
                if (kb > last) continue;  // the whole tile lies in these queries' future
                // Rows past nr repeat the last query and write to scratch rows past the block.
                const float* qr[R];
                float* orow[R];
                for (int i = 0; i < R; ++i) {
                    qr[i] = q + std::size_t(t0 + r0 + std::min(i, nr - 1)) * ldq;
                    orow[i] = t.o.data() + std::size_t(i < nr ? r0 + i : tiled::query_block + i) * row;
                }
                // Keys of this tile any row sees, rounded up to the score kernel's 2 vectors.
                const int visible = std::min(nk, last - kb + 1);
                const int cols = (visible + 2 * S - 1) / (2 * S) * (2 * S);
                for (int c = 0; c < cols; c += 2 * S) detail::score_columns<2>(t.s.data(), qr, t.kt.data(), head_dim, c, scale);

                // Online softmax per row: mask the future, then m' = max(m, max s), p = exp(s - m'),
                // l' = l·exp(m - m') + Σ p, and o is rescaled by exp(m - m') as P·V is added.
                float corr[R];
                for (int i = 0; i < R; ++i) {
                    float* s = t.s.data() + i * KB;
                    const int seen = i < nr ? std::min(nk, first + i - kb + 1) : 0;  // ≤ 0: none in this tile
                    if (seen <= 0) {
                        std::fill_n(s, cols, 0.0f);
                        corr[i] = 1.0f;
                        continue;
                    }
                    std::fill(s + seen, s + cols, detail::minus_inf);
                    fbatch mx(detail::minus_inf);
                    for (int c = 0; c < cols; c += S) mx = xsimd::max(mx, fbatch::load_unaligned(s + c));
                    float& m = t.m[r0 + i];
                    const float m_new = std::max(m, detail::max_lane(mx));
                    corr[i] = std::exp(m - m_new);  // 0 on the first tile (m = -inf)
                    fbatch sum(0.0f);
                    for (int c = 0; c < cols; c += S) {
                        const fbatch p = xsimd::exp(fbatch::load_unaligned(s + c) - fbatch(m_new));
                        p.store_unaligned(s + c);
                        sum += p;
                    }
                    t.l[r0 + i] = t.l[r0 + i] * corr[i] + xsimd::hadd(sum);
                    m = m_new;
                }
                int c = 0;
                for (; c + 2 * S <= row; c += 2 * S) detail::accumulate_columns<2>(orow, t.s.data(), corr, t.v.data(), row, visible, c);
                for (; c < row; c += S) detail::accumulate_columns<1>(orow, t.s.data(), corr, t.v.data(), row, visible, c);
            }
        }
        for (int i = 0; i < nq; ++i) {
            const float inv = 1.0f / t.l[i];
            const float* o = t.o.data() + std::size_t(i) * row;
            float* y = out + std::size_t(t0 + i) * ldo;
            for (int e = 0; e < head_dim; ++e) y[e] = o[e] * inv;
        }
    }
}

// Which attention prefill (more than one new token) runs: the tiled one above, or one attend() per
// (token, head) — the path before tiling, kept selectable so a bench can time both in one run. A
// process-wide setting, like GemmPrecision, because it belongs to the experiment, not to a call.
enum class PrefillAttention { tiled, per_query };

inline std::atomic<PrefillAttention>& prefill_attention_setting() {
    static std::atomic<PrefillAttention> p{PrefillAttention::tiled};
    return p;
}
inline PrefillAttention prefill_attention() { return prefill_attention_setting().load(std::memory_order_relaxed); }
inline void set_prefill_attention(PrefillAttention p) { prefill_attention_setting().store(p, std::memory_order_relaxed); }

}  // namespace elastilm
