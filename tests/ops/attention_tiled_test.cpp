// attend_causal (tiled prefill attention) and attend (one query at a time, decode's) against each other
// and a double-precision reference, on random data at odd sizes: query counts that are not multiples of
// the query or register block, a cache prefix before the block (pos0 > 0), GQA groups of 1, 2 and 4,
// head sizes that are not whole vectors, fp32 and fp16 caches. Bound: 1e-5 of the largest |output| (outputs are convex
// combinations of values in [-1, 1]).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "elastilm/ops/attention_tiled.hpp"
#include "elastilm/simd/f16.hpp"

namespace elastilm {
namespace {

struct Case {
    int n_q, pos0, n_heads, group_size, head_dim;
    float q_scale;  // scores of order q_scale²·√head_dim: large ones test the running max
};

// Cache layout [kv_head][position][head_dim] with `context` positions per head, like KvCache's.
template <class T>
struct Cache {
    std::vector<T> k, v;
    std::vector<float> k32, v32;  // the same values as fp32 (what T holds, widened)
    std::size_t head_stride;
};

template <class T>
T store(float x) {
    if constexpr (std::is_same_v<T, f16_bits>) return f32_to_f16(x);
    else return x;
}
float widen(float x) { return x; }
float widen(f16_bits x) { return f16_to_f32(x); }

template <class T>
Cache<T> make_cache(int n_kv, int context, int head_dim, int present, std::mt19937_64& rng) {
    std::uniform_real_distribution<float> u(-1, 1);
    Cache<T> c;
    c.head_stride = std::size_t(context) * head_dim;
    const std::size_t n = std::size_t(n_kv) * c.head_stride;
    c.k.resize(n), c.v.resize(n), c.k32.resize(n), c.v32.resize(n);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (int h = 0; h < n_kv; ++h)
        for (int p = 0; p < context; ++p)
            for (int e = 0; e < head_dim; ++e) {
                const std::size_t i = h * c.head_stride + std::size_t(p) * head_dim + e;
                // Positions no query may see hold NaN: reading one would poison the output.
                const float kx = p < present ? u(rng) : nan, vx = p < present ? u(rng) : nan;
                c.k[i] = store<T>(kx), c.v[i] = store<T>(vx);
                c.k32[i] = widen(c.k[i]), c.v32[i] = widen(c.v[i]);
            }
    return c;
}

template <class T>
void check(const Case& cs, std::uint64_t seed, AttentionTiles* shared = nullptr) {
    SCOPED_TRACE(testing::Message() << "n_q " << cs.n_q << " pos0 " << cs.pos0 << " heads " << cs.n_heads << " group "
                                    << cs.group_size << " head_dim " << cs.head_dim << " q_scale " << cs.q_scale
                                    << (std::is_same_v<T, f16_bits> ? " f16" : " f32"));
    std::mt19937_64 rng(seed);
    const int d = cs.head_dim, n_kv = cs.n_heads / cs.group_size, q_dim = cs.n_heads * d;
    const int present = cs.pos0 + cs.n_q, context = present + 5;
    const Cache<T> c = make_cache<T>(n_kv, context, d, present, rng);
    std::uniform_real_distribution<float> u(-cs.q_scale, cs.q_scale);
    std::vector<float> q(std::size_t(cs.n_q) * q_dim);
    for (float& x : q) x = u(rng);

    std::vector<float> tiled_out(q.size(), -7.0f), query_out(q.size(), -7.0f), scores(std::size_t(cs.group_size) * context);
    AttentionTiles own;
    AttentionTiles& tiles = shared ? *shared : own;
    for (int h = 0; h < cs.n_heads; ++h) {
        const std::size_t kv_off = std::size_t(h / cs.group_size) * c.head_stride;
        attend_causal(tiled_out.data() + h * d, q_dim, q.data() + h * d, q_dim, cs.n_q, cs.pos0, d, c.k.data() + kv_off,
                      c.v.data() + kv_off, tiles);
    }
    const KvView<T> kv{c.k.data(), c.v.data(), c.head_stride};
    for (int t = 0; t < cs.n_q; ++t)
        attend(query_out.data() + std::size_t(t) * q_dim, q.data() + std::size_t(t) * q_dim, cs.n_heads, cs.group_size, d, kv,
               cs.pos0 + t + 1, scores.data());

    double max_abs = 0, max_tiled_vs_query = 0, max_tiled_vs_exact = 0, max_query_vs_exact = 0;
    std::vector<double> s(context), o(d);
    for (int t = 0; t < cs.n_q; ++t)
        for (int h = 0; h < cs.n_heads; ++h) {
            // softmax(q·k/√d)·v in double over positions [0, pos0 + t].
            const std::size_t kv_off = std::size_t(h / cs.group_size) * c.head_stride;
            const float* qh = q.data() + std::size_t(t) * q_dim + h * d;
            const int n_pos = cs.pos0 + t + 1;
            double mx = -1e300, sum = 0;
            for (int p = 0; p < n_pos; ++p) {
                double dot = 0;
                for (int e = 0; e < d; ++e) dot += double(qh[e]) * c.k32[kv_off + std::size_t(p) * d + e];
                s[p] = dot / std::sqrt(double(d));
                mx = std::max(mx, s[p]);
            }
            std::fill(o.begin(), o.end(), 0.0);
            for (int p = 0; p < n_pos; ++p) {
                const double w = std::exp(s[p] - mx);
                sum += w;
                for (int e = 0; e < d; ++e) o[e] += w * c.v32[kv_off + std::size_t(p) * d + e];
            }
            for (int e = 0; e < d; ++e) {
                const std::size_t i = std::size_t(t) * q_dim + h * d + e;
                const double exact = o[e] / sum;
                ASSERT_TRUE(std::isfinite(tiled_out[i])) << "token " << t << " head " << h << " dim " << e;
                ASSERT_TRUE(std::isfinite(query_out[i])) << "token " << t << " head " << h << " dim " << e;
                max_abs = std::max(max_abs, std::abs(exact));
                max_tiled_vs_query = std::max(max_tiled_vs_query, std::abs(double(tiled_out[i]) - query_out[i]));
                max_tiled_vs_exact = std::max(max_tiled_vs_exact, std::abs(double(tiled_out[i]) - exact));
                max_query_vs_exact = std::max(max_query_vs_exact, std::abs(double(query_out[i]) - exact));
            }
        }
    std::printf("n_q %4d pos0 %4d group %d head_dim %3d %s: |tiled - attend| %.2e, |tiled - exact| %.2e, |attend - exact| %.2e of max |out| %.3f\n",
                cs.n_q, cs.pos0, cs.group_size, d, std::is_same_v<T, f16_bits> ? "f16" : "f32", max_tiled_vs_query,
                max_tiled_vs_exact, max_query_vs_exact, max_abs);
    EXPECT_LE(max_tiled_vs_query, 1e-5 * max_abs);
    EXPECT_LE(max_tiled_vs_exact, 1e-5 * max_abs);
    EXPECT_LE(max_query_vs_exact, 1e-5 * max_abs);
}

// clang-format off
const Case cases[] = {
    {1, 0, 2, 1, 64, 1},       // one query, no prefix
    {5, 0, 4, 2, 48, 1},       // fewer queries than a register block … twice
    {67, 0, 4, 4, 64, 1},      // one query block and 3 more; group of 4
    {130, 3, 2, 1, 64, 2},     // three query blocks over a tiny prefix
    {37, 70, 4, 2, 48, 1},     // a prefix longer than a key tile, the block starting mid-tile
    {64, 128, 2, 2, 64, 4},    // block-aligned everything, large scores
    {19, 200, 2, 1, 100, 1},   // head_dim 100 (OpenLLaMA-3B): not a whole number of vectors
    {9, 11, 8, 4, 8, 1},       // head_dim 8 (stories260K): less than one AVX-512 vector
    {1, 130, 16, 8, 64, 1},    // decode with TinyLlama's groups of 8: two KV heads, blocks of positions and a tail
    {2, 45, 12, 6, 32, 2},     // groups of 6 (not a multiple of the value kernel's heads at once), head_dim 32
};
// clang-format on

TEST(AttentionTiled, MatchesPerQueryAttentionFp32Cache) {
    std::uint64_t seed = 1;
    for (const Case& c : cases) check<float>(c, seed++);
}

TEST(AttentionTiled, MatchesPerQueryAttentionFp16Cache) {
    std::uint64_t seed = 100;
    for (const Case& c : cases) check<f16_bits>(c, seed++);
}

// Scratch made for one head size serves another: the tiles resize.
TEST(AttentionTiled, ScratchFollowsTheHeadSize) {
    AttentionTiles tiles;
    check<float>({10, 4, 2, 1, 48, 1}, 7, &tiles);
    check<float>({70, 4, 2, 1, 64, 1}, 8, &tiles);
    check<float>({10, 4, 2, 1, 8, 1}, 9, &tiles);
}

TEST(AttentionTiled, PrefillPathIsSelectable) {
    EXPECT_EQ(prefill_attention(), PrefillAttention::tiled);
    set_prefill_attention(PrefillAttention::per_query);
    EXPECT_EQ(prefill_attention(), PrefillAttention::per_query);
    set_prefill_attention(PrefillAttention::tiled);
}

}  // namespace
}  // namespace elastilm
